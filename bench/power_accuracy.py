"""Power sampling vs its baselines on the embedded model: accuracy, tokens, time.

    python bench/power_accuracy.py [--per-level 100] [--out bench/results/power_accuracy]

Task: procedural addition with checked answers, 1-digit and 2-digit operands
(seed 2026, the terse "a + b = ?" wording the small model handles best).
Methods, each on every problem, one sample each:
- temp 1: plain sampling at temperature 1
- temp 1/alpha: sampling at temperature 1/alpha
- MH uniform / MH entropy: power sampling (alpha 4, B 16, N 10, 48 tokens)
- best-of-N matched: temperature-1 samples until their decoded tokens equal the
  entropy-cut MH run's on the same problem (rejected proposals included),
  the one with the highest mean log-likelihood answers.

Records are appended to results.jsonl as they finish; re-running the same
command resumes, skipping (problem, method) pairs already recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from strop.backends import SamplingParams, load_backend
from strop.evaluation.metrics import mcnemar_exact, wilson_interval
from strop.methods import get_method
from strop.methods.power import PowerConfig
from strop.tasks import arithmetic_problems

ALPHA, BLOCK, STEPS, MAX_TOKENS = 4.0, 16, 10, 48
METHODS = ["temp 1", "temp 1/alpha", "MH uniform", "MH entropy", "best-of-N matched"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-level", type=int, default=100)
    ap.add_argument("--out", default="bench/results/power_accuracy")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                r = json.loads(line)
                done[(r["id"], r["method"])] = r
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by a kill: redo that pair
    problems = [p for d in (1, 2) for p in arithmetic_problems(args.per_level, seed=2026, digits=d, template="{expr} = ?")]
    backend = load_backend()
    plain = SamplingParams(max_tokens=MAX_TOKENS)
    cold = SamplingParams(max_tokens=MAX_TOKENS, temperature=1 / ALPHA)
    runners = {
        "temp 1": lambda pr, rng, _: get_method("sample")(backend, pr, rng, params=plain),
        "temp 1/alpha": lambda pr, rng, _: get_method("sample")(backend, pr, rng, params=cold),
        "MH uniform": lambda pr, rng, _: get_method("power")(backend, pr, rng, config=PowerConfig(
            alpha=ALPHA, block_size=BLOCK, mcmc_steps=STEPS, max_tokens=MAX_TOKENS, cut="uniform")),
        "MH entropy": lambda pr, rng, _: get_method("power")(backend, pr, rng, config=PowerConfig(
            alpha=ALPHA, block_size=BLOCK, mcmc_steps=STEPS, max_tokens=MAX_TOKENS, cut="entropy")),
        "best-of-N matched": lambda pr, rng, budget: get_method("best-of-n")(backend, pr, rng, params=plain, token_budget=budget),
    }
    started = time.perf_counter()
    with log.open("a") as f:
        for i, prob in enumerate(problems):
            prompt = backend.chat_prompt(prob.question)
            for j, name in enumerate(METHODS):
                if (prob.id, name) in done:
                    continue
                rng = np.random.default_rng([2026, i, j])
                budget = done[(prob.id, "MH entropy")]["decoded_tokens"] if name == "best-of-N matched" else None
                t = time.perf_counter()
                res = runners[name](prompt, rng, budget)
                rec = {"id": prob.id, "level": prob.level, "method": name, "correct": prob.check(res.text), "answer": res.answer,
                       "gold": prob.answer, "decoded_tokens": res.decoded_tokens, "seconds": time.perf_counter() - t,
                       "text": res.text, "stats": {k: v for k, v in res.stats.items() if k != "scores"}}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                done[(prob.id, name)] = rec
            print(f"[{i + 1}/{len(problems)}] {time.perf_counter() - started:.0f}s", flush=True)
    summarize(done, out)


def summarize(done: dict, out: Path) -> None:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in done.values():
        groups[(r["method"], r["level"])].append(r)
        groups[(r["method"], "all")].append(r)
    levels = sorted({lv for _, lv in groups if lv != "all"}) + ["all"]
    table = []
    for name in METHODS:
        for lv in levels:
            rs = groups.get((name, lv), [])
            if not rs:
                continue
            k = sum(r["correct"] for r in rs)
            lo, hi = wilson_interval(k, len(rs))
            table.append({"method": name, "level": lv, "n": len(rs), "accuracy": k / len(rs), "ci95": [lo, hi],
                          "tokens_per_problem": float(np.mean([r["decoded_tokens"] for r in rs])),
                          "seconds_per_problem": float(np.mean([r["seconds"] for r in rs]))})
    paired = []
    right = {(r["id"], r["method"]): r["correct"] for r in done.values()}
    for a in ("MH uniform", "MH entropy"):
        for b in ("temp 1", "temp 1/alpha", "best-of-N matched"):
            for lv in levels:
                ids = sorted({i for (i, m) in right if m == a and (i, b) in right and (lv == "all" or done[(i, a)]["level"] == lv)})
                oa = sum(right[(i, a)] and not right[(i, b)] for i in ids)
                ob = sum(right[(i, b)] and not right[(i, a)] for i in ids)
                paired.append({"a": a, "b": b, "level": lv, "only_a_right": oa, "only_b_right": ob, "mcnemar_p": mcnemar_exact(oa, ob)})
    summary = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "alpha": ALPHA, "block_size": BLOCK,
               "mcmc_steps": STEPS, "max_tokens": MAX_TOKENS, "table": table, "paired": paired}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{'method':20s} {'level':6s} {'n':>4s} {'acc':>6s} {'95% CI':>15s} {'tok/prob':>9s} {'s/prob':>7s}")
    for row in table:
        print(f"{row['method']:20s} {row['level']:6s} {row['n']:4d} {row['accuracy']:6.3f} [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]"
              f" {row['tokens_per_problem']:9.1f} {row['seconds_per_problem']:7.2f}")
    print("\npaired (same problems): A only right / B only right, exact McNemar p")
    for p in paired:
        print(f"{p['a']:11s} vs {p['b']:18s} {p['level']:5s} {p['only_a_right']:4d} / {p['only_b_right']:<4d} p = {p['mcnemar_p']:.4f}")


if __name__ == "__main__":
    main()
