"""Majority vote by string vs by answer equivalence, from the same samples: maj@k on arithmetic with the embedded model.

    OMP_NUM_THREADS=1 python bench/majority_vote.py [--problems 100] [--samples 8] [--max-tokens 32] [--seed 0]
                                                    [--run DIR] [--out bench/results/majority_vote.json]

1. Samples once with ``strop eval --task arithmetic --method sample --temperature 1``
   (the embedded SmolLM2-135M-Instruct on llamacpp), ``--samples`` attempts per
   problem, into ``--run`` (resumable: a rerun reuses the records).
2. Computes maj@k for k = 1..samples from those records twice
   (``compute_metrics(..., vote=...)``): grouping the extracted answers by
   identical string, and by equivalence (math-verify in checker processes, each
   distinct pair of answers checked once).
3. Prints both, their difference, the problems whose maj@samples verdict the
   grouping changes (with a paired exact McNemar p-value), the equivalence
   checks made and their time, and writes it all as JSON.

The arithmetic task's check is an exact string match on the extracted answer,
so a group formed by equivalence counts as correct when any of its forms was
judged correct (``metrics.majority_correct``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from strop.evaluation.harness import compute_metrics
from strop.evaluation.metrics import majority_correct, mcnemar_exact
from strop.records import read_records
from strop.verifiers.voting import EquivalenceCache, group_answers, identical


def sample(run: Path, problems: int, samples: int, max_tokens: int, seed: int) -> float:
    """Run (or finish) the eval; returns its wall seconds."""
    cmd = [sys.executable, "-m", "strop", "eval", "--task", "arithmetic", "--method", "sample", "--temperature", "1",
           "--samples", str(samples), "--max-tokens", str(max_tokens), "--limit", str(problems), "--seed", str(seed),
           "--vote", "string", "--out", str(run)]
    print("$", " ".join(["strop", *cmd[3:]]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", type=Path, default=Path(tempfile.gettempdir()) / "strop-bench-majority-vote")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "majority_vote.json")
    args = ap.parse_args()

    started = time.perf_counter()
    sampling_s = sample(args.run, args.problems, args.samples, args.max_tokens, args.seed)
    records = read_records(args.run / "records.jsonl")
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["id"], []).append(r)
    problems = [sorted(rs, key=lambda r: r["sample"]) for rs in by_problem.values()][: args.problems]
    records = [r for rs in problems for r in rs]

    t = time.perf_counter()
    by_string = compute_metrics(records, args.samples, vote="string")["overall"]["majority_at_k"]
    string_s = time.perf_counter() - t
    t = time.perf_counter()
    by_equivalence = compute_metrics(records, args.samples, vote="equivalence")["overall"]["majority_at_k"]
    equivalence_s = time.perf_counter() - t

    # Per problem at k = samples: which verdicts the grouping changes, and how many checks one shared cache needs.
    cache = EquivalenceCache()
    changed = []
    merged = 0  # problems where equivalence put two different strings in one group
    for rs in problems:
        answers, verdicts = [r["answer"] for r in rs], [r["correct"] for r in rs]
        merged += group_answers(answers, identical) != group_answers(answers, cache)
        s, e = majority_correct(answers, verdicts, identical), majority_correct(answers, verdicts, cache)
        if s != e:
            changed.append({"id": rs[0]["id"], "gold": rs[0]["gold"], "answers": answers, "string": s, "equivalence": e})
    only_eq = sum(c["equivalence"] for c in changed)
    only_str = len(changed) - only_eq

    k = str(args.samples)
    print(f"\n{len(problems)} arithmetic problems x {args.samples} samples (temperature 1, --max-tokens {args.max_tokens}, "
          f"seed {args.seed}); embedded SmolLM2-135M-Instruct Q4_1 on llamacpp")
    print(f"{'k':>3s} {'maj@k string':>13s} {'maj@k equivalence':>18s} {'difference':>11s}")
    for i in range(1, args.samples + 1):
        a, b = by_string[str(i)], by_equivalence[str(i)]
        print(f"{i:3d} {a:13.3f} {b:18.3f} {b - a:+11.3f}")
    print(f"maj@{k}: string {by_string[k]:.3f}, equivalence {by_equivalence[k]:.3f}, difference {by_equivalence[k] - by_string[k]:+.3f}; "
          f"problems changed: {only_eq} right only by equivalence, {only_str} right only by string "
          f"(paired exact McNemar p = {mcnemar_exact(only_eq, only_str):.3g})")
    for c in changed:
        print(f"  {c['id']}: gold {c['gold']}, answers {c['answers']}: string {c['string']}, equivalence {c['equivalence']}")
    print(f"problems where equivalence joined different strings into one vote: {merged}; "
          f"answers: {sum(r['answer'] is not None for r in records)} extracted, {sum(r['answer'] is None for r in records)} none")
    print(f"equivalence checks (distinct pairs): {cache.calls}; maj@k by equivalence {equivalence_s:.1f} s, by string {string_s:.2f} s; "
          f"sampling {sampling_s:.0f} s; total {time.perf_counter() - started:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(sys.argv), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                   "load_average_at_end": os.getloadavg()},
        "problems": len(problems), "samples": args.samples, "max_tokens": args.max_tokens, "seed": args.seed,
        "majority_at_k": {"string": by_string, "equivalence": by_equivalence}, "changed": changed, "problems_merged": merged,
        "equivalence_checks": cache.calls, "seconds": {"sampling": sampling_s, "vote_string": string_s, "vote_equivalence": equivalence_s},
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
