"""``strop eval``: run any method on any task and backend, the same way, resumably.

One JSON line per (problem, sample) is appended to ``records.jsonl`` as soon
as it is verified, so killing the run loses at most the attempts in flight
(being decoded or verified);
re-running the same command skips what is recorded and finishes the rest.
Each attempt's randomness comes from (seed, problem index, sample), so a
resumed run draws what an uninterrupted one would (exactly, one attempt at a
time; up to float rounding when attempts are batched, see ``evaluate``).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strop.backends.base import Backend
from strop.backends.thinking import THINK, ThinkTags, strip_thinking
from strop.engine import Engine
from strop.errors import StropError
from strop.evaluation.metrics import majority_correct_at_k, pass_at_k, wilson_interval
from strop.evaluation.solvers import is_solver, solver
from strop.methods import make_steps
from strop.methods.base import MethodResult
from strop.methods.basic import mean_logprob
from strop.records import read_records, writer_lock
from strop.tasks.base import Problem, Task
from strop.verifiers.isolation import default_size, parallel_map
from strop.verifiers.voting import Same, check_vote, identical, vote_relation

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
    categories: list[str] | None = None
    # How the model writes, when not strop's defaults (<think>...</think>, no chat-template variables): they change
    # the prompts and what is verified, so a run folder holds one setting.
    think_tags: list[str] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    # The task's check when not its default (--verifier: integrals ladder/ttrl, jsonl exact/number): verdicts by
    # another check are not comparable, so a run folder holds one.
    verifier: str | None = None


def evaluate(
    spec: EvalSpec,
    task: Task,
    problems: list[Problem],
    backend: Backend,
    out: Path,
    *,
    method_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    vote: str = "equivalence",
) -> dict[str, Any]:
    """Run (or finish) the evaluation in ``out``; returns the metrics (also saved as metrics.json).

    ``vote`` decides which answers are one vote in majority@k
    (``compute_metrics``), unless the task decides (``Task.vote``: HumanEval's
    programs are one vote when identical); it is not part of the run's spec,
    since the records do not depend on it.

    Every method runs through the engine (``strop.engine``): ``batch_size``
    attempts (default: the backend's ``max_batch``) are in flight at once, and
    each round their pending requests are decoded together, whatever the
    method (power chains, RC turns, best-of-n samples). Each attempt still
    draws from its own (seed, problem, sample) rng, so its random stream is a
    one-at-a-time run's; batched float rounding can still flip a token whose
    draw lands next to a boundary. A record is written as soon as its attempt
    finishes; its ``seconds`` is the wall time since the previous record, so
    the records' seconds add up to the run's wall time. Problem-level solvers
    (``strop.evaluation.solvers``, e.g. ttrl) run one attempt at a time.

    One process writes a run folder at a time (``writer_lock``): a second ``strop eval`` on it, or a regrade
    of it, is refused with a message while this one runs.
    """
    check_vote(vote)
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, "strop eval"):
        return _evaluate(spec, task, problems, backend, out, method_kwargs, progress, batch_size, vote)


def _evaluate(spec: EvalSpec, task: Task, problems: list[Problem], backend: Backend, out: Path, method_kwargs: dict[str, Any] | None,
              progress: Callable[[int, int], None] | None, batch_size: int | None, vote: str) -> dict[str, Any]:
    """``evaluate``'s work, under the folder's lock. Long because resuming, writing and verifying share one
    file handle, one lock and one count, which its short nested callbacks close over."""
    spec_file = out / "run.json"
    mine = json.loads(json.dumps(asdict(spec), default=str))
    if spec_file.exists():
        theirs = json.loads(spec_file.read_text())
        # --limit and --samples may change: a run can grow (or be summarised on fewer problems or samples) without
        # redoing work; attempt (i, s) draws from the same rng whatever the totals.
        diff = sorted(k for k in set(mine) | set(theirs) if k not in ("limit", "samples") and mine.get(k) != theirs.get(k))
        if diff:
            raise StropError(f"{out} holds a different run (differs in: {', '.join(diff)}); pass another --out")
    spec_file.write_text(json.dumps(mine, indent=2))
    path = out / RECORDS
    records = read_records(path, repair=True)
    done = {(r["id"], r["sample"]) for r in records}
    total = len(problems) * spec.samples
    finished = sum(1 for p in problems for s in range(spec.samples) if (p.id, s) in done)
    if progress:
        progress(finished, total)
    todo = [(i, prob, s) for i, prob in enumerate(problems) for s in range(spec.samples) if (prob.id, s) not in done]
    kwargs = method_kwargs or {}
    in_flight = max(1, batch_size or backend.max_batch)
    with path.open("a", encoding="utf-8") as f:
        last = time.perf_counter()

        def write(rec: dict[str, Any]) -> None:
            nonlocal finished, last
            now = time.perf_counter()
            rec["seconds"], last = now - last, now
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            records.append(rec)
            finished += 1
            if progress:
                progress(finished, total)

        if is_solver(spec.method):
            for i, prob, s in todo:
                result = solver(spec.method)(backend, task, prob, _attempt_rng(spec, i, s), system=spec.system, **kwargs)
                write(_record(spec, task, prob, s, result, backend.think_tags))
        else:
            # A sliding window of attempts: as one finishes the next starts, so the backend's batch stays full.
            # Finished attempts are verified on other threads (checker processes, code sandboxes) while decoding
            # goes on; each record is written as soon as its verdict is in.
            machines = (make_steps(spec.method, backend, task.prompt(prob), _attempt_rng(spec, i, s), system=spec.system, **kwargs)
                        for i, prob, s in todo)
            lock = threading.Lock()
            pending: list[Future] = []
            failures: list[BaseException] = []

            def verified(fut: Future) -> None:
                # Runs on a verifier thread: an error here (verifying or writing) must fail the run, not vanish
                # into concurrent.futures' callback logging.
                try:
                    rec = fut.result()
                    with lock:
                        write(rec)
                except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread below
                    failures.append(e)

            with ThreadPoolExecutor(max_workers=default_size(), thread_name_prefix="strop-verify") as verifier:

                def attempt_done(k: int, result: MethodResult) -> None:
                    fut = verifier.submit(_record, spec, task, todo[k][1], todo[k][2], result, backend.think_tags)
                    fut.add_done_callback(verified)
                    pending.append(fut)

                Engine(backend).run(machines, in_flight=in_flight, on_result=attempt_done)
            if failures:
                raise failures[0]
    ids = {p.id for p in problems}
    metrics = compute_metrics([r for r in records if r["id"] in ids and r["sample"] < spec.samples], spec.samples,
                              vote=task.vote or vote)
    metrics["spec"] = mine
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no -inf: an empty generation has no score


def _attempt_rng(spec: EvalSpec, index: int, sample: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, index, sample])


def _record(spec: EvalSpec, task: Task, prob: Problem, sample: int, result: MethodResult, tags: ThinkTags = THINK) -> dict[str, Any]:
    question = task.prompt(prob)
    # Verifiers read the visible text: the model's reasoning blocks (its own tags, not only strop's default) are not its answer.
    v = task.check(prob, strip_thinking(result.text, tags))
    rec: dict[str, Any] = {
        "id": prob.id, "sample": sample, "category": prob.category, "method": spec.method, "config": spec.method_config,
        **({"verifier": task.verifier} if task.verifier is not None else {}),
        "prompt": question, "output": result.text, "answer": v.extracted if v.extracted is not None else result.answer,
        "gold": prob.gold if isinstance(prob.gold, (int, float, str)) else str(prob.gold),
        "verdict": v.verdict.value, "correct": v.correct, "detail": v.detail[:300],
        "tokens": result.decoded_tokens, "thinking_tokens": result.stats.get("thinking_tokens", 0),
        "prompt_tokens": result.candidates[result.chosen].prompt_tokens,
        # Why the answer's generation stopped ("eos", "length" = the token cap, "stop"): an answer cut by the cap is
        # a budget problem, not a reasoning one.
        "finish_reason": result.candidates[result.chosen].finish_reason, "seconds": None, "pid": os.getpid(),
        # best-of-n's default score of the answer's generation: samples of one problem can be ranked afterwards
        # (best-of-k from a sampling run's k samples, at no extra decoding).
        "mean_logprob": _finite(mean_logprob(result.candidates[result.chosen])),
    }
    turns = result.stats.get("turns")
    if turns:
        # RC-style methods: verify every turn's answer (reasoning text) on its own.
        cum = 0
        rec["turns"] = []
        for t, tv in zip(turns, parallel_map(lambda t: task.check(prob, strip_thinking(t["reasoning"], tags)), turns)):
            cum += t.get("reasoning_tokens", 0) + t.get("summary_tokens", 0)
            # The transcript's gist, to read why accuracy moves over turns: what the summary carried to the next turn
            # (at most the summary budget) and how the turn's reasoning ended; each part's tokens, so a reasoning or a
            # summary cut by its cap (H_R, H_S) can be told from one that ended.
            rec["turns"].append({"turn": t["turn"], "answer": tv.extracted, "correct": tv.correct, "cumulative_tokens": cum,
                                 **{k: t[k] for k in ("reasoning_tokens", "summary_tokens", "summary") if k in t},
                                 "reasoning_tail": t["reasoning"][-600:]})
    stats = {k: v for k, v in result.stats.items() if k not in ("turns", "scores")}
    rec["stats"] = stats
    return rec


def compute_metrics(records: list[dict[str, Any]], samples: int, *, vote: str = "equivalence") -> dict[str, Any]:
    """Accuracy (95% Wilson), pass@k, majority@k, tokens and time; overall, per category, per RC turn.

    majority@k votes over the records' extracted answers; ``vote`` decides
    which answers are one vote (``strop.verifiers.voting``): "equivalence"
    (math-verify in checker processes, each distinct pair of answers checked
    once for the whole call) or "string" (identical strings).
    """
    same = vote_relation(vote)
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
        # In sample order: records are written as their verdicts arrive, and majority@k votes over the first k samples.
        full = [sorted(rs, key=lambda r: r["sample"]) for rs in probs.values() if len(rs) == samples]
        out = {"attempts": n, "problems": len(probs), "accuracy": c / n if n else None, "ci95": [lo, hi],
               "mean_tokens_per_attempt": float(np.mean([r["tokens"] for r in recs])) if recs else None,
               "mean_seconds_per_attempt": float(np.mean([r["seconds"] for r in recs])) if recs else None,
               "mean_tokens_per_problem": float(np.mean([sum(r["tokens"] for r in rs) for rs in probs.values()])) if probs else None,
               "mean_seconds_per_problem": float(np.mean([sum(r["seconds"] for r in rs) for rs in probs.values()])) if probs else None,
               "verdicts": {v: sum(r["verdict"] == v for r in recs) for v in sorted({r["verdict"] for r in recs})}}
        if full:
            out["pass_at_k"] = {str(k): float(np.mean([pass_at_k(samples, sum(r["correct"] for r in rs), k) for rs in full]))
                                for k in range(1, samples + 1)}
            out["majority_at_k"] = _majority_at_k(full, samples, same)
        ttrl = [r["stats"] for r in recs if "solved_during" in r.get("stats", {})]
        if ttrl:
            # Test-time variant RL: the answer before training, after it, and "any verified attempt correct" (the paper's count).
            out["ttrl"] = {"before": float(np.mean([s["correct_before"] for s in ttrl])),
                           "after": float(np.mean([s["correct_after"] for s in ttrl])),
                           "any_verified_correct": float(np.mean([s["solved_during"] for s in ttrl])),
                           "mean_steps": float(np.mean([s["steps"] for s in ttrl])),
                           "mean_variants": float(np.mean([s["variants"] for s in ttrl]))}
            sampled = [s for s in ttrl if s.get("pass_samples")]
            if sampled:  # temperature samples of each test problem before and after its training: pass@1 and pass@n
                out["ttrl"].update({
                    "pass_samples": int(sampled[0]["pass_samples"]),
                    "pass1_before": float(np.mean([s["sample_correct_before"] / s["pass_samples"] for s in sampled])),
                    "pass1_after": float(np.mean([s["sample_correct_after"] / s["pass_samples"] for s in sampled])),
                    "passn_before": float(np.mean([s["sample_correct_before"] > 0 for s in sampled])),
                    "passn_after": float(np.mean([s["sample_correct_after"] > 0 for s in sampled])),
                    "variant_solved": float(np.mean([s.get("variant_solved", False) for s in sampled]))})
                # pass@k at the reference's k (1, 5, 10, 20) up to n, unbiased estimator from the n samples
                n = int(sampled[0]["pass_samples"])
                if all(int(s["pass_samples"]) == n for s in sampled):
                    ks = sorted({k for k in (1, 5, 10, 20) if k <= n} | {n})
                    for when in ("before", "after"):
                        out["ttrl"][f"pass_at_k_{when}"] = {
                            str(k): float(np.mean([pass_at_k(n, int(s[f"sample_correct_{when}"]), k) for s in sampled])) for k in ks}
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

    metrics = {"overall": block(records), "samples": samples, "vote": vote}
    cats = sorted({r["category"] for r in records if r.get("category") is not None})
    if cats:
        metrics["per_category"] = {c: block([r for r in records if r.get("category") == c]) for c in cats}
    return metrics


def _majority_at_k(full: list[list[dict[str, Any]]], samples: int, same: Same) -> dict[str, float]:
    """majority@k for k = 1..samples over problems with all their samples (lists of records in sample order)."""
    def per_problem(rs: list[dict[str, Any]]) -> list[bool]:
        return majority_correct_at_k([r["answer"] for r in rs], [r["correct"] for r in rs], same)

    # Equivalence checks run in checker processes: one thread per checker keeps them all busy.
    rows = [per_problem(rs) for rs in full] if same is identical else parallel_map(per_problem, full)
    return {str(k): float(np.mean([row[k - 1] for row in rows])) for k in range(1, samples + 1)}
