"""LADDER vs plain RL, and test-time variant RL, on arithmetic: the embedded model, CPU only.

    python bench/ladder_arith.py [--steps 18] [--seeds 0 1 2] [--ttrl-problems 30] [--jobs 2] [--out runs/ladder-arith]

Every step is a strop command and resumable: re-running finishes what is missing, then summarises.
1. ``strop ladder build --task arithmetic``: a tree over the 100 three-digit problems (d3o1, d3o2)
   of generator seed 1 (depth 5, 4 symbolic variants tried per node: drop an operand or a digit),
   with every evaluation (seed-0) question excluded.
2. For each training seed: ``strop ladder train`` with recipes/ladder-arith.yaml (LADDER: the tree,
   easiest depth first) and with recipes/arith-roots.yaml (plain GRPO on the same roots alone);
   same steps, samples per step and settings.
3. ``strop eval --task arithmetic`` (seed 0: 50 held-out problems per level, all six levels) on the
   base model and every trained model, greedy and temperature 1 (``--samples`` each), with the
   same per-attempt random streams, so every comparison is paired.
4. Test-time variant RL: ``strop eval --method ttrl`` on the first ``--ttrl-problems`` / 2 held-out
   problems of d3o1 and of d3o2 (base model): per problem a depth-5 variant tree, GRPO steps on a
   LoRA adapter, ``--ttrl-pass`` temperature-1 samples before and after, the adapter removed.
5. A summary (``summary.json``, printed tables) and PNGs in the output folder.

``--jobs`` runs that many commands side by side, each with cores / jobs threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

ARMS = {"ladder": "recipes/ladder-arith.yaml", "roots": "recipes/arith-roots.yaml"}
EVAL = ["--backend", "hf", "--task", "arithmetic", "--max-tokens", "32"]
_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def strop(log: Path, threads: int, *args: str) -> float:
    """One strop command, its output in ``log``; returns its wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    say("$ strop " + " ".join(args))
    t0 = time.perf_counter()
    with log.open("a") as f:
        r = subprocess.run([sys.executable, "-m", "strop", *args], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"strop {' '.join(args)} failed (exit {r.returncode}); see {log}")
    wall = time.perf_counter() - t0
    say(f"  done in {wall:.0f} s: strop {' '.join(args[:3])} ... {args[-1]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=18, help="GRPO steps per training run (both arms)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    ap.add_argument("--samples", type=int, default=2, help="temperature-1 samples per evaluation problem")
    ap.add_argument("--ttrl-problems", type=int, default=30, help="held-out hard problems for test-time variant RL (half d3o1, half d3o2)")
    ap.add_argument("--ttrl-steps", type=int, default=4)
    ap.add_argument("--ttrl-lr", type=float, default=2e-4)
    ap.add_argument("--ttrl-pass", type=int, default=8, help="temperature-1 samples per test problem before and after")
    ap.add_argument("--jobs", type=int, default=2, help="commands run side by side")
    ap.add_argument("--summary-only", action="store_true", help="summarise existing runs only")
    ap.add_argument("--out", default="runs/ladder-arith")
    a = ap.parse_args()
    os.chdir(ROOT)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // a.jobs)
    tree = out / "tree.jsonl"
    walls: dict[str, float] = json.loads((out / "walls.json").read_text()) if (out / "walls.json").is_file() else {}

    def run(name: str, *args: str) -> None:
        walls[name] = strop(logs / f"{name}.log", threads, *args)
        (out / "walls.json").write_text(json.dumps(walls, indent=1))

    def evals(name: str, model: str | None) -> None:
        extra = ["--model", model] if model else []
        run(f"eval-{name}-greedy", "eval", *EVAL, "--method", "greedy", "--out", str(out / f"eval-{name}-greedy"), *extra)
        run(f"eval-{name}-sample", "eval", *EVAL, "--method", "sample", "--samples", str(a.samples),
            "--out", str(out / f"eval-{name}-sample"), *extra)

    def train_and_eval(arm: str, seed: int) -> None:
        name = f"{arm}-s{seed}"
        run(f"train-{name}", "ladder", "train", str(tree), "--recipe", ARMS[arm], "--seed", str(seed), "--max-steps", str(a.steps),
            "--output", str(out / f"train-{name}"), "--quiet")
        evals(name, str(out / f"train-{name}" / "final"))

    def ttrl() -> None:
        run("ttrl", "eval", *EVAL, "--data", str(ttrl_subset(out, a.ttrl_problems)), "--method", "ttrl", "--ttrl-steps",
            str(a.ttrl_steps), "--ttrl-depth", "5", "--ttrl-variants", "4", "--ttrl-lr", str(a.ttrl_lr), "--ttrl-pass-samples",
            str(a.ttrl_pass), "-n", "8", "--out", str(out / "ttrl"))

    if not a.summary_only:
        run("tree", "ladder", "build", "--task", "arithmetic", "--seed", "1", "--exclude-seed", "0", "--category", "d3o1",
            "--category", "d3o2", "--depth", "5", "--symbolic", "4", "--out", str(tree))
        jobs = [lambda arm=arm, s=s: train_and_eval(arm, s) for s in a.seeds for arm in ARMS]
        jobs += [ttrl, lambda: evals("base", None)]
        with ThreadPoolExecutor(a.jobs) as pool:
            for f in [pool.submit(j) for j in jobs]:
                f.result()
    from _ladder_arith_summary import summarise

    summarise(out, a.seeds, walls, machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")


def ttrl_subset(out: Path, n: int) -> Path:
    """The first n/2 held-out (seed-0) problems of d3o1 and of d3o2, as a JSONL file ``strop eval --data`` reads."""
    from strop.tasks import get_task

    t = get_task("arithmetic")
    probs = t.load(seed=0, categories=["d3o1"])[: n - n // 2] + t.load(seed=0, categories=["d3o2"])[: n // 2]
    path = out / "ttrl-problems.jsonl"
    path.write_text("".join(json.dumps({"id": p.id, "question": p.question, "answer": p.gold, "category": p.category}) + "\n"
                            for p in probs))
    return path


if __name__ == "__main__":
    main()
