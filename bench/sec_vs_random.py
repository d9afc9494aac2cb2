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
sys.path.insert(0, str(ROOT / "bench"))

from _arith_levels import LEVELS, accuracy, cell, mcnemar, paired, plot_levels, records  # noqa: E402
from strop.training.report import load_run, plot_training, training_table  # noqa: E402

CURRICULA = ("sec", "random")


def strop(*args: str) -> None:
    cmd = [sys.executable, "-m", "strop", *args]
    print("$ strop " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


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
    plot_acc: dict = {}
    print("\naccuracy on held-out problems (95% Wilson interval); n attempts per level in brackets")
    for decode in ("sample", "greedy"):
        recs = {name: records(evals[(name, decode)]) for name in models}
        print(f"\n{decode:<7}" + "".join(f"{lv:>20}" for lv in LEVELS + ["all"]))
        plot_acc[decode] = {}
        for name, rs in recs.items():
            row = {lv: accuracy([rs], lv) for lv in LEVELS + ["all"]}
            plot_acc[decode][name] = row
            summary["accuracy"].update({f"{decode}/{name}/{lv}": v for lv, v in row.items()})
            print(f"{name:<7}" + "".join(f"{cell(row[lv]):>20}" for lv in LEVELS + ["all"]))
        print(f"\npaired ({decode}): attempts only A right / only B right, exact McNemar p")
        for x, y in (("sec", "base"), ("random", "base"), ("sec", "random")):
            for lv in LEVELS + ["all"]:
                t = mcnemar(*paired(recs[x], recs[y], lv))
                summary["paired"].append({"decode": decode, "a": x, "b": y, "level": lv, **t})
                if lv == "all" or t["p"] < 0.05:
                    print(f"  {x:>6} vs {y:<6} {lv:<5} {t['only_a']:4d} / {t['only_b']:<4d} p = {t['p']:.4f}")

    trained = [load_run(runs / f"train-arith-{c}") for c in CURRICULA]
    print()
    for line in training_table(trained):
        print(line)
    plot_training(trained, out / "training_curves.png")
    plot_levels(plot_acc, {"base": "before", "sec": "after SEC", "random": "after random"}, out / "accuracy_per_level.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out / 'summary.json'}, {out / 'training_curves.png'}, {out / 'accuracy_per_level.png'}")


if __name__ == "__main__":
    main()
