"""LADDER and test-time variant RL on integrals, embedded model, CPU only.

    python bench/ladder_integrals.py [--steps 16] [--ttrl-steps 4] [--out runs/ladder]

Steps (each is a strop command and resumable; re-running finishes what is missing):
1. Before: ``strop eval --task integrals`` (built-in, seed 0: 20 integrals per level:
   power, poly, exp, poly_exp, parts) greedy and temperature 1 (2 samples), and the
   MIT Integration Bee 2025 qualifier (greedy), on the base model (hf backend).
2. ``strop ladder build``: variant trees of the seed-1 integrals (depth 2, symbolic
   variants), with every evaluation integral excluded; and a small tree of
   model-written variants (llama.cpp, 10 roots, depth 1) to measure how many a 135M
   model gets through validation.
3. ``strop ladder train`` (recipes/ladder-integrals.yaml): GRPO on the tree, SEC over depths.
4. After: the same evaluations on the trained model.
5. Test-time variant RL (``strop eval --method ttrl``) on one held-out integral per
   level, base model: per problem a depth-2 tree, GRPO steps on a LoRA adapter, answer,
   adapter removed.
6. A summary (JSON + printed table) with wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEE = ROOT.parent / "shared" / "data" / "mit_integration_bee_2025_qualifier.jsonl"
TOKENS = "40"


def strop(*args: str) -> float:
    cmd = [sys.executable, "-m", "strop", *args]
    print("$ strop " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def evals(out: Path, tag: str, model: str | None) -> dict[str, float]:
    extra = ["--model", model] if model else []
    walls = {}
    walls[f"{tag}-greedy"] = strop("eval", "--task", "integrals", "--backend", "hf", "--method", "greedy", "--max-tokens", TOKENS,
                                   "--out", str(out / f"{tag}-greedy"), *extra)
    walls[f"{tag}-t1"] = strop("eval", "--task", "integrals", "--backend", "hf", "--method", "sample", "--samples", "2",
                               "--max-tokens", TOKENS, "--out", str(out / f"{tag}-t1"), *extra)
    if BEE.is_file():
        walls[f"{tag}-bee"] = strop("eval", "--task", "mit-integration-bee-2025", "--data", str(BEE), "--backend", "hf",
                                    "--method", "greedy", "--max-tokens", "64", "--out", str(out / f"{tag}-bee"), *extra)
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--ttrl-steps", type=int, default=4)
    ap.add_argument("--out", default="runs/ladder")
    a = ap.parse_args()
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, float] = {}
    walls |= evals(out, "base", None)
    walls["tree"] = strop("ladder", "build", "--task", "integrals", "--seed", "1", "--exclude-seed", "0", "--depth", "2",
                          "--symbolic", "2", "--out", str(out / "tree.jsonl"))
    walls["tree-model"] = strop("ladder", "build", "--task", "integrals", "--seed", "1", "--limit", "10", "--exclude-seed", "0",
                                "--depth", "1", "--symbolic", "0", "--model-requests", "2", "--out", str(out / "tree-model.jsonl"))
    walls["train"] = strop("ladder", "train", str(out / "tree.jsonl"), "--recipe", "recipes/ladder-integrals.yaml",
                           "--max-steps", str(a.steps), "--output", str(out / "train"), "--quiet")
    walls |= evals(out, "ladder", str(out / "train" / "final"))
    # One held-out integral per level (the 1st of each level of seed 0).
    subset = out / "ttrl-subset.jsonl"
    sys.path.insert(0, str(ROOT / "src"))
    from strop.ladder.integrals import LEVELS, integral_problems

    subset.write_text("".join(json.dumps(integral_problems(1, seed=0, level=lv)[0]) + "\n" for lv in LEVELS))
    walls["ttrl"] = strop("eval", "--task", "integrals", "--data", str(subset), "--backend", "hf", "--method", "ttrl",
                          "--ttrl-steps", str(a.ttrl_steps), "--ttrl-variants", "3", "-n", "8", "--max-tokens", TOKENS,
                          "--out", str(out / "ttrl"))

    summary: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}", "walls_s": walls}
    for name in sorted(p.name for p in out.iterdir() if (p / "metrics.json").is_file()):
        m = metrics(out / name)
        summary[name] = {"overall": {k: m["overall"].get(k) for k in ("attempts", "accuracy", "ci95", "ttrl", "verdicts")},
                         "per_category": {c: v["accuracy"] for c, v in m.get("per_category", {}).items()}}
    for tree in ("tree.jsonl", "tree-model.jsonl"):
        log = [json.loads(line) for line in (out / (tree + ".expanded")).read_text().splitlines()[1:]]
        rejected: dict[str, int] = {}
        for e in log:
            for k, v in e.get("rejected", {}).items():
                rejected[k] = rejected.get(k, 0) + v
        nodes = [json.loads(line) for line in (out / tree).read_text().splitlines()]
        summary[tree] = {"nodes": len(nodes), "candidates": sum(e["candidates"] for e in log),
                         "variants": sum(e["children"] for e in log), "rejected": rejected,
                         "per_depth": {d: sum(n["depth"] == d for n in nodes) for d in range(3)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
