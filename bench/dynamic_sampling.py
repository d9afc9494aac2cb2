"""Dynamic sampling on vs off on the embedded model: random curriculum, the same seeds, the same wall-clock budget.

    python bench/dynamic_sampling.py [--seeds 0,1,2] [--runs runs] [--summarise-only] [--out bench/results/dynamic_sampling]

Per seed S (each stage resumable; re-running finishes what is missing, then summarises):
1. Off: ``strop train recipes/arith-random.yaml --seed S --output RUNS/dynamic-off-sS`` (its own run, not
   bench/sec_vs_random.py's random arm: the two arms of a seed run back to back under the same machine load).
2. On: ``strop train recipes/arith-random-dynamic.yaml --seed S --output RUNS/dynamic-on-sS --max-wall-s W``,
   with W the off run's wall time as its metrics.jsonl counts it (seconds per step, validation included).
   The recipes differ only in ``dynamic_sampling: {max_rounds: 3}``; both validate during training (greedy,
   150 held-out problems of levels d1o1, d1o2, d2o1, every 10 steps and at the last step).
3. A summary: per seed and arm, steps and wall time; prompt groups with signal (non-zero reward variance) per step,
   among the groups trained on and, for dynamic sampling, among those drawn; held-out accuracy at the budget
   (each run's last validation, at its last step) with 95% Wilson intervals; exact McNemar on those paired
   validation attempts, per seed and summed; PNGs of signal per step and accuracy against wall time.

Run the arms alone on the machine: wall time is the budget, so anything else running skews it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _arith_levels import mcnemar, paired, records  # noqa: E402
from strop.evaluation.metrics import wilson_interval  # noqa: E402
from strop.evaluation.report import _plt  # noqa: E402
from strop.training.report import load_run, validation_curve  # noqa: E402
from strop.training.run_folder import wall_so_far  # noqa: E402

ARMS = ("off", "on")


def strop(*args: str) -> None:
    print("$ strop " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "strop", *args], check=True, cwd=ROOT)


def folder(runs: Path, arm: str, seed: int) -> Path:
    return runs / f"dynamic-{arm}-s{seed}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    ap.add_argument("--runs", default="runs", help="folder for the training runs")
    ap.add_argument("--summarise-only", action="store_true", help="run nothing; summarise the finished runs")
    ap.add_argument("--out", default="bench/results/dynamic_sampling")
    a = ap.parse_args()
    os.chdir(ROOT)
    runs, out = Path(a.runs), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    for seed in seeds:
        if a.summarise_only:
            break
        off = folder(runs, "off", seed)
        if not (off / "final").exists():
            strop("train", "recipes/arith-random.yaml", "--seed", str(seed), "--output", str(off))
        on = folder(runs, "on", seed)
        if not (on / "final").exists() or wall_so_far(on) < wall_so_far(off):
            strop("train", "recipes/arith-random-dynamic.yaml", "--seed", str(seed), "--output", str(on),
                  "--max-wall-s", f"{wall_so_far(off):.1f}")
    summarise(runs, out, [s for s in seeds if all((folder(runs, arm, s) / "final").exists() for arm in ARMS)])


def signal_per_step(metrics: list[dict]) -> tuple[list[float], list[float] | None]:
    """(share of the trained groups with signal, share of the drawn groups with signal or None) per step."""
    trained, drawn = [], []
    for m in metrics:
        if "dynamic/groups_drawn" in m:
            groups = m["dynamic/groups_drawn"] / (1 + m["dynamic/extra_rounds"])  # every round draws one batch of groups
            trained.append(m["dynamic/groups_kept_with_signal"] / groups)
            drawn.append(m["dynamic/groups_with_signal"] / m["dynamic/groups_drawn"])
        else:
            trained.append(1.0 - m["frac_reward_zero_std"])
    return trained, (drawn if drawn else None)


def last_validation(run: Path, metrics: list[dict]) -> tuple[dict, dict]:
    """The run's last validation point (step, wall, accuracy) and its records."""
    point = validation_curve(metrics)[-1]
    return point, records(run / "validation" / f"step-{point['step']}")


def summarise(runs: Path, out: Path, seeds: list[int]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nfinished seeds (both arms): {seeds}")
    summary: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "seeds": seeds, "runs": {}, "paired": {}}
    per_seed = []
    loaded = {(arm, s): load_run(folder(runs, arm, s)) for s in seeds for arm in ARMS}
    print(f"{'arm':<4} {'seed':>4} {'steps':>5} {'wall s':>7} {'signal/trained':>15} {'signal/drawn':>13} {'held-out (95% CI)':>26}")
    for s in seeds:
        recs = {}
        for arm in ARMS:
            run = folder(runs, arm, s)
            metrics = loaded[(arm, s)]["metrics"]
            trained, drawn = signal_per_step(metrics)
            point, recs[arm] = last_validation(run, metrics)
            c, n = sum(r["correct"] for r in recs[arm].values()), len(recs[arm])
            lo, hi = wilson_interval(c, n)
            row = {"steps": metrics[-1]["step"], "wall_s": round(wall_so_far(run), 1), "signal_trained": sum(trained) / len(trained),
                   "signal_drawn": None if drawn is None else sum(drawn) / len(drawn), "validated_step": point["step"],
                   "accuracy": c / n, "ci95": [lo, hi], "attempts": n}
            summary["runs"][f"{arm}-s{s}"] = row
            drawn_txt = "-" if drawn is None else f"{row['signal_drawn']:.2f}"
            print(f"{arm:<4} {s:>4} {row['steps']:>5} {row['wall_s']:>7.0f} {row['signal_trained']:>15.2f} {drawn_txt:>13} "
                  f"{c / n:>9.3f} [{lo:.2f}, {hi:.2f}] @{point['step']}")
        per_seed.append(paired(recs["on"], recs["off"], "all"))
    if per_seed:
        tot = mcnemar(sum(x for x, _ in per_seed), sum(y for _, y in per_seed))
        summary["paired"] = {"per_seed": per_seed, **tot}
        print(f"\non vs off, held-out at the budget: only on right / only off right per seed {per_seed}, "
              f"summed {tot['only_a']} / {tot['only_b']}, exact McNemar p = {tot['p']:.4f}")
        plot(loaded, seeds, out / "dynamic_sampling.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'summary.json'}" + (f", {out / 'dynamic_sampling.png'}" if per_seed else ""))


def plot(loaded: dict, seeds: list[int], path: Path) -> None:
    plt = _plt()
    fig, (sig, acc) = plt.subplots(1, 2, figsize=(12, 4))
    colours = {"off": "tab:blue", "on": "tab:orange"}
    for (arm, s), run in loaded.items():
        trained, drawn = signal_per_step(run["metrics"])
        steps = [m["step"] for m in run["metrics"]]
        sig.plot(steps, trained, color=colours[arm], alpha=0.7, label=f"{arm}, seed {s}: trained groups")
        if drawn is not None:
            sig.plot(steps, drawn, color=colours[arm], alpha=0.4, linestyle=":", label=f"on, seed {s}: drawn groups")
        v = validation_curve(run["metrics"])
        acc.errorbar([p["wall_s"] for p in v], [p["accuracy"] for p in v],
                     yerr=[[p["accuracy"] - p["lo"] for p in v], [p["hi"] - p["accuracy"] for p in v]],
                     color=colours[arm], marker="o", capsize=2, alpha=0.8, label=f"{arm}, seed {s}")
    sig.set_xlabel("step")
    sig.set_ylabel("share of prompt groups with signal")
    sig.set_title("dynamic sampling on vs off: groups with non-zero reward variance", fontsize=10)
    acc.set_xlabel("wall time (s)")
    acc.set_ylabel("held-out accuracy, greedy (95% CI)")
    acc.set_title("validation during training (150 problems, d1o1 d1o2 d2o1)", fontsize=10)
    for ax in (sig, acc):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
