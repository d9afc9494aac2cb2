"""``strop eval``: run any method on any task and backend, the same way, resumably.

One JSON line per (problem, sample) is appended to ``records.jsonl`` as soon
as it is verified, so killing the run loses at most the attempt in flight;
re-running the same command skips what is recorded and finishes the rest.
Each attempt's randomness comes from (seed, problem index, sample), so a
resumed run draws what an uninterrupted one would (exactly, one attempt at a
time; up to float rounding when attempts are batched, see ``evaluate``).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strop.backends.base import Backend
from strop.backends.chat import user_turn
from strop.errors import StropError
from strop.evaluation.metrics import majority_correct, pass_at_k, wilson_interval
from strop.methods import run_problem_method
from strop.methods.base import MethodResult
from strop.methods.basic import SINGLE_DRAW_METHODS, single_draw_params, single_draw_result
from strop.tasks.base import Problem, Task

RECORDS = "records.jsonl"


@dataclass(frozen=True)
class EvalSpec:
    """Everything that defines a run; a folder holds one spec (resuming with another is refused)."""

    task: str
    method: str
    backend: str
    model: str | None
    samples: int = 1
    limit: int | None = None
    seed: int = 0
    data: str | None = None
    system: str | None = None
    method_config: dict[str, Any] = field(default_factory=dict)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete JSON-lines records; a line cut by a kill is dropped and cut from the file so appends stay valid."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        with path.open("r+b") as f:
            f.truncate(len(raw))
    out = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def evaluate(
    spec: EvalSpec,
    task: Task,
    problems: list[Problem],
    backend: Backend,
    out: Path,
    *,
    method_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Run (or finish) the evaluation in ``out``; returns the metrics (also saved as metrics.json).

    On a backend that batches (``hf``), ``greedy``, ``sample`` and ``rc``
    attempts are decoded ``batch_size`` at a time across problems (RC: each
    turn's reasoning steps in one batch, then their summaries). Each row still draws from
    its own (seed, problem, sample) rng, so the random streams are those of a
    one-at-a-time run; batched float32 rounding can still flip a token whose
    draw lands next to a boundary (a few percent of 32-token samples).
    """
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "run.json"
    mine = json.loads(json.dumps(asdict(spec), default=str))
    if spec_file.exists():
        theirs = json.loads(spec_file.read_text())
        # --limit may change: a run can grow (or be summarised on fewer problems) without redoing work.
        diff = sorted(k for k in set(mine) | set(theirs) if k != "limit" and mine.get(k) != theirs.get(k))
        if diff:
            raise StropError(f"{out} holds a different run (differs in: {', '.join(diff)}); pass another --out")
    spec_file.write_text(json.dumps(mine, indent=2))
    path = out / RECORDS
    records = read_records(path)
    done = {(r["id"], r["sample"]) for r in records}
    total = len(problems) * spec.samples
    finished = sum(1 for p in problems for s in range(spec.samples) if (p.id, s) in done)
    if progress:
        progress(finished, total)
    todo = [(i, prob, s) for i, prob in enumerate(problems) for s in range(spec.samples) if (prob.id, s) not in done]
    batched = backend.batches and spec.method in (*SINGLE_DRAW_METHODS, "rc") and batch_size > 1
    with path.open("a", encoding="utf-8") as f:
        step = batch_size if batched else 1
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            if batched and spec.method == "rc":
                recs = batched_rc_attempts(spec, task, chunk, backend, method_kwargs or {})
            elif batched:
                recs = batched_attempts(spec, task, chunk, backend, method_kwargs or {})
            else:
                (i, prob, s), = chunk
                recs = [attempt(spec, task, prob, i, s, backend, method_kwargs or {})]
            for rec in recs:
                f.write(json.dumps(rec, default=str) + "\n")
                records.append(rec)
            f.flush()
            finished += len(recs)
            if progress:
                progress(finished, total)
    ids = {p.id for p in problems}
    metrics = compute_metrics([r for r in records if r["id"] in ids], spec.samples)
    metrics["spec"] = mine
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _attempt_rng(spec: EvalSpec, index: int, sample: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, index, sample])


def attempt(spec: EvalSpec, task: Task, prob: Problem, index: int, sample: int, backend: Backend, method_kwargs: dict[str, Any]) -> dict[str, Any]:
    """One (problem, sample): run the method, verify, and return the record."""
    started = time.perf_counter()
    result = run_problem_method(spec.method, backend, task, prob, _attempt_rng(spec, index, sample), system=spec.system, **method_kwargs)
    return _record(spec, task, prob, sample, result, time.perf_counter() - started)


def batched_attempts(spec: EvalSpec, task: Task, chunk: list[tuple[int, Problem, int]], backend: Backend,
                     method_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Several one-draw attempts (greedy / sample) decoded in one batch; each record is charged its share of the time."""
    params = single_draw_params(spec.method, method_kwargs.get("params"))
    prompts = [backend.chat_prompt(user_turn(task.prompt(prob), spec.system)) for _, prob, _ in chunk]
    started = time.perf_counter()
    gens = backend.generate_batch(prompts, params, [_attempt_rng(spec, i, s) for i, _, s in chunk])
    share = (time.perf_counter() - started) / len(chunk)
    return [_record(spec, task, prob, s, single_draw_result(spec.method, params, g, started), share)
            for (_, prob, s), g in zip(chunk, gens)]


def batched_rc_attempts(spec: EvalSpec, task: Task, chunk: list[tuple[int, Problem, int]], backend: Backend,
                        method_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """RC attempts decoded together, turn by turn (``rc_batch``), each from its own per-attempt rng."""
    from strop.methods.rc import rc_batch

    results = rc_batch(backend, [task.prompt(prob) for _, prob, _ in chunk], [_attempt_rng(spec, i, s) for i, _, s in chunk],
                       system=spec.system, **method_kwargs)
    return [_record(spec, task, prob, s, r, r.stats["elapsed_s"]) for (_, prob, s), r in zip(chunk, results)]


def _record(spec: EvalSpec, task: Task, prob: Problem, sample: int, result: MethodResult, seconds: float) -> dict[str, Any]:
    question = task.prompt(prob)
    v = task.check(prob, result.text)
    rec: dict[str, Any] = {
        "id": prob.id, "sample": sample, "category": prob.category, "method": spec.method, "config": spec.method_config,
        "prompt": question, "output": result.text, "answer": v.extracted if v.extracted is not None else result.answer,
        "gold": prob.gold if isinstance(prob.gold, (int, float, str)) else str(prob.gold),
        "verdict": v.verdict.value, "correct": v.correct, "detail": v.detail[:300],
        "tokens": result.decoded_tokens, "prompt_tokens": result.candidates[result.chosen].prompt_tokens,
        "seconds": seconds, "pid": os.getpid(),
    }
    turns = result.stats.get("turns")
    if turns:
        # RC-style methods: verify every turn's answer (reasoning text) on its own.
        cum = 0
        rec["turns"] = []
        for t in turns:
            cum += t.get("reasoning_tokens", 0) + t.get("summary_tokens", 0)
            tv = task.check(prob, t["reasoning"])
            rec["turns"].append({"turn": t["turn"], "answer": tv.extracted, "correct": tv.correct, "cumulative_tokens": cum})
    stats = {k: v for k, v in result.stats.items() if k not in ("turns", "scores")}
    rec["stats"] = stats
    return rec


def compute_metrics(records: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """Accuracy (95% Wilson), pass@k, majority@k, tokens and time; overall, per category, per RC turn."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_problem[r["id"]].append(r)
    for rs in by_problem.values():
        rs.sort(key=lambda r: r["sample"])

    def block(recs: list[dict[str, Any]]) -> dict[str, Any]:
        n, c = len(recs), sum(r["correct"] for r in recs)
        lo, hi = wilson_interval(c, n)
        probs = defaultdict(list)
        for r in recs:
            probs[r["id"]].append(r)
        full = [rs for rs in probs.values() if len(rs) == samples]
        out = {"attempts": n, "problems": len(probs), "accuracy": c / n if n else None, "ci95": [lo, hi],
               "mean_tokens_per_attempt": float(np.mean([r["tokens"] for r in recs])) if recs else None,
               "mean_seconds_per_attempt": float(np.mean([r["seconds"] for r in recs])) if recs else None,
               "mean_tokens_per_problem": float(np.mean([sum(r["tokens"] for r in rs) for rs in probs.values()])) if probs else None,
               "mean_seconds_per_problem": float(np.mean([sum(r["seconds"] for r in rs) for rs in probs.values()])) if probs else None,
               "verdicts": {v: sum(r["verdict"] == v for r in recs) for v in sorted({r["verdict"] for r in recs})}}
        if full:
            out["pass_at_k"] = {str(k): float(np.mean([pass_at_k(samples, sum(r["correct"] for r in rs), k) for rs in full]))
                                for k in range(1, samples + 1)}
            out["majority_at_k"] = {str(k): float(np.mean([majority_correct([r["answer"] for r in rs[:k]], [r["correct"] for r in rs[:k]])
                                                           for rs in full])) for k in range(1, samples + 1)}
        ttrl = [r["stats"] for r in recs if "solved_during" in r.get("stats", {})]
        if ttrl:
            # Test-time variant RL: the answer before training, after it, and "any verified attempt correct" (the paper's count).
            out["ttrl"] = {"before": float(np.mean([s["correct_before"] for s in ttrl])),
                           "after": float(np.mean([s["correct_after"] for s in ttrl])),
                           "any_verified_correct": float(np.mean([s["solved_during"] for s in ttrl])),
                           "mean_steps": float(np.mean([s["steps"] for s in ttrl])),
                           "mean_variants": float(np.mean([s["variants"] for s in ttrl]))}
        turned = [r for r in recs if r.get("turns")]
        if turned:
            n_turns = max(len(r["turns"]) for r in turned)
            out["per_turn"] = []
            for t in range(n_turns):
                rows = [r["turns"][t] for r in turned if len(r["turns"]) > t]
                k = sum(x["correct"] for x in rows)
                out["per_turn"].append({"turn": t + 1, "accuracy": k / len(rows), "ci95": list(wilson_interval(k, len(rows))),
                                        "mean_cumulative_tokens": float(np.mean([x["cumulative_tokens"] for x in rows]))})
        return out

    metrics = {"overall": block(records), "samples": samples}
    cats = sorted({r["category"] for r in records if r.get("category") is not None})
    if cats:
        metrics["per_category"] = {c: block([r for r in records if r.get("category") == c]) for c in cats}
    return metrics
