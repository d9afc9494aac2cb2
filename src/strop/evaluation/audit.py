"""Where strop's grading differs from the usual graders, on the records of an eval run (``strop report --audit RUN``).

For every record of the run:
- strop's verdict now: the run's task check applied again to the record's output (so a run graded by an older
  strop is re-graded by this one; ``recorded_differs`` counts where the stored verdict changed);
- the other grader's verdict on the same output and gold: Math-Verify's default ``parse`` / ``verify`` (the
  whole output parsed with its default extraction, the gold parsed as math), or, for the integral tasks, the
  numeric check (``--verifier ladder``). Code and countdown tasks have no other grader: only their extraction
  failures are counted (a code answer is the program that ran: none when the output holds no code).

Outputs: ``audit.jsonl`` in the run folder (one line per disagreement), an ``audit`` entry in its
``metrics.json`` (the counts), and a table. With ``regrade``, the verdicts and answers of strop's check as it is now
also replace the recorded ones (each changed record keeps the old ones under ``regraded_from``) and ``metrics.json`` is
recomputed from them, so a run graded by an older strop reports what a fresh run would; an RC record's per-turn
verdicts stay as recorded (a record keeps only the end of each turn's text). Extraction failures (no answer found) are split by why the
generation stopped: at the token cap ("length") or ended by the model ("eos", "stop").
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strop.backends.thinking import THINK, strip_thinking
from strop.errors import StropError
from strop.evaluation.harness import compute_metrics
from strop.records import read_records, writer_lock
from strop.tasks import Problem, Task, resolve_task
from strop.verifiers.base import Verification
from strop.verifiers.isolation import parallel_map
from strop.verifiers.math_answer import math_verify_default

AUDIT_FILE = "audit.jsonl"
INTEGRAL_TASKS = ("integrals", "mit-integration-bee-2025")
NO_OTHER_GRADER = ("humaneval", "countdown")


@dataclass(frozen=True)
class Audit:
    run: str
    other: str | None  # the other grader's name, None where there is none
    counts: dict[str, Any]
    disagreements: list[dict[str, Any]]


def _problems(spec: dict[str, Any], task: Task, records: list[dict[str, Any]]) -> dict[str, Problem]:
    """The run's problems by id: reloaded from the task's source where possible (the checks of code, countdown and
    integral tasks need more than the gold answer) when it is a local file or built in, else rebuilt from the records
    (math answers need only the gold)."""
    by_id: dict[str, Problem] = {}
    data = spec.get("data")
    # Only a local source: an audit never downloads (a hub dataset's gold answers are in the records already).
    local = Path(data).is_file() if data and not str(data).startswith("hub:") else task.builtin is not None
    if spec["task"] != "jsonl" and local:
        try:
            by_id = {p.id: p for p in task.load(spec.get("data"), limit=spec.get("limit"), seed=spec.get("seed", 0),
                                                categories=spec.get("categories"))}
        except Exception:  # noqa: BLE001 - the source may be gone (another machine): the records still hold the gold
            by_id = {}
    for r in records:
        by_id.setdefault(r["id"], Problem(r["id"], r.get("prompt", ""), r["gold"], r.get("category")))
    return by_id


def _answer(r: dict[str, Any], mine: Verification) -> Any:
    """The answer a fresh run would record: what today's check reads, else the method's own (as the harness does).
    Votes group records by it, so a regrade that left an older strop's reading would vote on stale answers."""
    return mine.extracted if mine.extracted is not None else r.get("answer")


def _not_a_run(folder: Path) -> StropError:
    return StropError(f"{folder} is not an eval run with records (no run.json or records.jsonl)")


def audit_run(folder: str | Path, *, regrade: bool = False) -> Audit:
    """Audit one eval run folder (see the module docstring); writes ``audit.jsonl`` and ``metrics.json``'s ``audit``;
    with ``regrade``, today's verdicts and answers into the records and the metrics recomputed from them.

    An audit only reads the records, so it may run beside the eval still writing them; a regrade rewrites
    them, so it takes the folder's writer lock and is refused while an eval holds it."""
    folder = Path(folder)
    if not (folder / "run.json").exists() or not (folder / "records.jsonl").exists():
        raise _not_a_run(folder)
    if not regrade:
        return _audit(folder, regrade=False)
    with writer_lock(folder, "strop report --audit --regrade"):
        return _audit(folder, regrade=True)


def _audit(folder: Path, *, regrade: bool) -> Audit:
    spec_file, records = folder / "run.json", read_records(folder / "records.jsonl")
    if not records:
        raise _not_a_run(folder)
    spec = json.loads(spec_file.read_text())
    # A jsonl task's check reads only the gold answer: its field mapping (not in run.json) does not matter here.
    fields = {"question": "question", "answer": "answer"} if spec["task"] == "jsonl" else None
    task = resolve_task(spec["task"], fields, spec.get("verifier"), spec.get("data") or "records")
    tags = tuple(spec["think_tags"]) if spec.get("think_tags") else THINK
    problems = _problems(spec, task, records)
    if spec["task"] in INTEGRAL_TASKS:
        other_name, other = "numeric check (--verifier ladder)", resolve_task(spec["task"], None, "ladder", spec.get("data"))
        grade_other = lambda p, text: other.check(p, text)  # noqa: E731
    elif spec["task"] in NO_OTHER_GRADER:
        other_name, grade_other = None, None
    else:
        other_name = "math-verify (default parse/verify)"
        grade_other = lambda p, text: math_verify_default(str(p.gold), text)  # noqa: E731

    def both(r: dict[str, Any]) -> tuple[Verification, Verification | None]:
        p, text = problems[r["id"]], strip_thinking(r["output"], tags)
        return task.check(p, text), (grade_other(p, text) if grade_other else None)

    verdicts = parallel_map(both, records)
    no_answer: Counter[str] = Counter()
    rows, changed, recorded_differs, agree = [], [], 0, 0
    for r, (mine, theirs) in zip(records, verdicts):
        if mine.extracted is None:
            no_answer[r.get("finish_reason") or "unknown"] += 1
        recorded_differs += mine.correct != bool(r["correct"])
        answer = _answer(r, mine)
        if mine.verdict.value != r["verdict"] or answer != r.get("answer"):
            changed.append((r, mine, answer))
        if theirs is None:
            continue
        if mine.correct == theirs.correct:
            agree += 1
            continue
        rows.append({"id": r["id"], "sample": r["sample"], "gold": r["gold"], "finish_reason": r.get("finish_reason"),
                     "strop": {"verdict": mine.verdict.value, "answer": mine.extracted, "detail": mine.detail[:200]},
                     "other": {"verdict": theirs.verdict.value, "answer": theirs.extracted, "detail": theirs.detail[:200]},
                     "output_tail": r["output"][-300:]})
    n = len(records)
    counts = {
        "records": n, "other_grader": other_name,
        "no_answer": sum(no_answer.values()), "no_answer_rate": sum(no_answer.values()) / n,
        "no_answer_by_finish": dict(no_answer),
        "disagreements": len(rows) if other_name else None,
        "strop_correct_other_not": sum(x["strop"]["verdict"] == "correct" for x in rows),
        "other_correct_strop_not": sum(x["other"]["verdict"] == "correct" for x in rows),
        "agree": agree if other_name else None,
        "recorded_differs": recorded_differs,
    }
    if regrade:
        counts["regraded"] = len(changed)
    if regrade and changed:
        for r, mine, answer in changed:
            r["regraded_from"] = {"verdict": r["verdict"], "detail": r.get("detail", ""), "answer": r.get("answer")}
            r.update(verdict=mine.verdict.value, correct=mine.correct, detail=mine.detail, answer=answer)
        # Written whole and swapped in, so a kill leaves the old records or the new ones, never a mix.
        tmp = folder / "records.jsonl.regrade"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(tmp, folder / "records.jsonl")
    with open(folder / AUDIT_FILE, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    metrics_file = folder / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        if regrade and changed:
            samples = metrics.get("samples", 1)
            fresh = compute_metrics([r for r in records if r["sample"] < samples], samples,
                                    vote=metrics.get("vote", "equivalence"))
            metrics = {**fresh, **{k: v for k, v in metrics.items() if k not in fresh}}
        metrics["audit"] = counts
        metrics_file.write_text(json.dumps(metrics, indent=2))
    return Audit(str(folder), other_name, counts, rows)


def audit_table(audits: list[Audit], *, rows: int = 40) -> list[str]:
    """Lines to print: per run, its counts, then its disagreements (up to ``rows``)."""
    out = []
    for a in audits:
        c, regraded = a.counts, a.counts.get("regraded")
        fin = ", ".join(f"{k} {v}" for k, v in sorted(c["no_answer_by_finish"].items())) or "none"
        out.append(f"{a.run}: {c['records']} records; no answer found: {c['no_answer']} ({c['no_answer_rate']:.1%}; by finish: {fin}); "
                   f"verdict now differs from the recorded one: {c['recorded_differs']}"
                   + ("" if regraded is None else f"; regraded: {regraded} records rewritten, metrics recomputed" if regraded
                      else "; regraded: nothing to change"))
        if a.other is None:
            out.append("  no other grader for this task (code and countdown are checked by running them)")
            continue
        out.append(f"  against {a.other}: {c['agree']} agree, {c['disagreements']} differ "
                   f"(strop correct, other not: {c['strop_correct_other_not']}; other correct, strop not: {c['other_correct_strop_not']}); "
                   f"written to {Path(a.run) / AUDIT_FILE}")
        if a.disagreements:
            out.append("  | id | sample | gold | strop: verdict, answer | other: verdict, answer | finish |")
            out.append("  |---|---|---|---|---|---|")
            for d in a.disagreements[:rows]:
                out.append(f"  | {d['id']} | {d['sample']} | {_cell(d['gold'])} | {d['strop']['verdict']}, {_cell(d['strop']['answer'])} | "
                           f"{d['other']['verdict']}, {_cell(d['other']['answer'])} | {d['finish_reason']} |")
            if len(a.disagreements) > rows:
                out.append(f"  ... {len(a.disagreements) - rows} more in {Path(a.run) / AUDIT_FILE}")
    return out


def _cell(x: Any) -> str:
    s = str(x).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= 40 else s[:37] + "..."
