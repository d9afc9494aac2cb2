"""SEC vs a random curriculum on the embedded model: GRPO on the arithmetic task, CPU only.

    python bench/sec_vs_random.py [--samples 4] [--skip-train] [--out bench/results/sec_vs_random]

Steps (each resumable; re-running the command finishes what is missing, then summarises):
1. ``strop train recipes/arith-sec.yaml`` and ``strop train recipes/arith-random.yaml``:
   the same model, data, GRPO settings, step count and seeds; only the curriculum differs.
   Training problems come from generator seed 1 with every evaluation question removed.
2. ``strop eval --backend hf --task arithmetic`` (seed 0: 50 held-out problems per level,
   d{1,2,3}o{1,2}) on the base model and on both trained models, temperature-1 sampling
   (what GRPO optimised, ``--samples`` per problem) and greedy decoding. All three
   use the same per-attempt random streams, so differences are paired.
3. A summary: accuracy per level with 95% Wilson intervals, exact McNemar p-values on
   paired attempts, the training table (reward, zero-std fraction, KL, seconds per step),
   and PNGs: reward / arm mix / Q curves, and accuracy per level before and after.
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

from strop.evaluation.metrics import mcnemar_exact, wilson_interval  # noqa: E402
from strop.evaluation.report import _plt  # noqa: E402
from strop.training.report import load_run, plot_training, training_table  # noqa: E402

LEVELS = ["d1o1", "d1o2", "d2o1", "d2o2", "d3o1", "d3o2"]
CURRICULA = ("sec", "random")


def strop(*args: str) -> None:
    cmd = [sys.executable, "-m", "strop", *args]
    print("$ strop " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def records(folder: Path) -> dict[tuple[str, int], dict]:
    rows = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines() if x.strip()]
    return {(r["id"], r["sample"]): r for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4, help="temperature-1 samples per evaluation problem")
    ap.add_argument("--runs", default="runs", help="folder for the training and eval runs")
    ap.add_argument("--skip-train", action="store_true", help="summarise existing runs only")
    ap.add_argument("--out", default="bench/results/sec_vs_random")
    a = ap.parse_args()
    os.chdir(ROOT)  # run folders are named relative to the repo in commands, tables and plots
    runs, out = Path(a.runs), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    models = {"base": None}
    for c in CURRICULA:
        train_dir = runs / f"train-arith-{c}"
        if not a.skip_train:
            strop("train", f"recipes/arith-{c}.yaml", "--output", str(train_dir))
        models[c] = str(train_dir / "final")
    evals: dict[tuple[str, str], Path] = {}
    for name, model in models.items():
        for decode in ("sample", "greedy"):
            folder = runs / f"eval-arith-{name}-{decode}"
            args = ["eval", "--backend", "hf", "--task", "arithmetic", "--method", decode, "--max-tokens", "32",
                    "--samples", str(a.samples if decode == "sample" else 1), "--out", str(folder)]
            if not a.skip_train:
                strop(*args, *(["--model", model] if model else []))
            evals[(name, decode)] = folder

    summary: dict = {"machine": f"{platform.machine()}, {platform.python_version()}", "accuracy": {}, "paired": []}
    print("\naccuracy on held-out problems (95% Wilson interval); n attempts per level in brackets")
    for decode in ("sample", "greedy"):
        recs = {name: records(evals[(name, decode)]) for name in models}
        print(f"\n{decode:<7}" + "".join(f"{lv:>20}" for lv in LEVELS + ["all"]))
        for name, rs in recs.items():
            cells = []
            for lv in LEVELS + ["all"]:
                sel = [r for r in rs.values() if lv == "all" or r["category"] == lv]
                c, n = sum(r["correct"] for r in sel), len(sel)
                lo, hi = wilson_interval(c, n)
                summary["accuracy"][f"{decode}/{name}/{lv}"] = {"correct": c, "n": n, "accuracy": c / n, "ci95": [lo, hi]}
                cells.append(f"{c / n:.3f} [{lo:.2f},{hi:.2f}]")
            print(f"{name:<7}" + "".join(f"{x:>20}" for x in cells))
        print(f"\npaired ({decode}): attempts only A right / only B right, exact McNemar p")
        for x, y in (("sec", "base"), ("random", "base"), ("sec", "random")):
            for lv in LEVELS + ["all"]:
                keys = [k for k, r in recs[x].items() if (lv == "all" or r["category"] == lv) and k in recs[y]]
                oa = sum(recs[x][k]["correct"] and not recs[y][k]["correct"] for k in keys)
                ob = sum(recs[y][k]["correct"] and not recs[x][k]["correct"] for k in keys)
                p = mcnemar_exact(oa, ob)
                summary["paired"].append({"decode": decode, "a": x, "b": y, "level": lv, "only_a": oa, "only_b": ob, "p": p})
                if lv == "all" or p < 0.05:
                    print(f"  {x:>6} vs {y:<6} {lv:<5} {oa:4d} / {ob:<4d} p = {p:.4f}")

    trained = [load_run(runs / f"train-arith-{c}") for c in CURRICULA]
    print()
    for line in training_table(trained):
        print(line)
    plot_training(trained, out / "training_curves.png")
    _plot_levels(summary, out / "accuracy_per_level.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out / 'summary.json'}, {out / 'training_curves.png'}, {out / 'accuracy_per_level.png'}")


def _plot_levels(summary: dict, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, decode in zip(axes, ("sample", "greedy")):
        names = ["base", *CURRICULA]
        width = 0.27
        for j, name in enumerate(names):
            acc = [summary["accuracy"][f"{decode}/{name}/{lv}"] for lv in LEVELS]
            y = [x["accuracy"] for x in acc]
            err = [[max(0.0, v - x["ci95"][0]) for v, x in zip(y, acc)], [max(0.0, x["ci95"][1] - v) for v, x in zip(y, acc)]]
            ax.bar([i + (j - 1) * width for i in range(len(LEVELS))], y, width, yerr=err, capsize=2,
                   label={"base": "before", "sec": "after SEC", "random": "after random"}[name])
        ax.set_xticks(range(len(LEVELS)), LEVELS)
        ax.set_ylabel("accuracy (95% CI)")
        ax.set_title(f"held-out arithmetic, {'temperature 1' if decode == 'sample' else 'greedy'}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
