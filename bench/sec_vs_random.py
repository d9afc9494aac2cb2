"""SEC (both Q updates) vs a random curriculum on the embedded model: GRPO on the arithmetic task, CPU only, several seeds.

    python bench/sec_vs_random.py [--seeds 0,1,2] [--curricula sec,sec-all,random] [--samples 4] [--summarise-only]

Steps (each resumable; re-running the command finishes what is missing, then summarises):
1. For every seed and curriculum: ``strop train recipes/arith-<curriculum>.yaml --seed S``
   (``sec``: SEC with strop's update, only the drawn arms' Q move; ``sec-all``: the SEC
   reference code's update, every arm's Q decays, undrawn arms with reward 0; ``random``).
   The recipes differ only in ``curriculum``: the same model, data, GRPO settings and step
   count. Training problems come from generator seed 1 with every evaluation question removed.
2. ``strop eval --backend hf --task arithmetic`` (seed 0: 50 held-out problems per level,
   d{1,2,3}o{1,2}) on the base model and on every trained model, temperature-1 sampling
   (what GRPO optimised, ``--samples`` per problem) and greedy decoding. All use the same
   per-attempt random streams, so differences are paired.
3. A summary: accuracy per level with 95% Wilson intervals (pooled over seeds and per seed),
   exact McNemar tests on paired attempts per seed and summed over seeds, the training
   table, and PNGs (training curves; accuracy per level before and after).

Order: seed by seed (every curriculum of seed 0, then seed 1, ...), so an interrupted run
leaves complete paired comparisons for the seeds it finished. ``--summarise-only`` runs
nothing and summarises the (curriculum, seed) pairs whose evaluations are complete.
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
from strop.evaluation.report import _plt  # noqa: E402
from strop.training.report import load_run, plot_training, training_table, validation_curve  # noqa: E402

CURRICULA = ("sec", "sec-all", "random")
DECODES = ("sample", "greedy")


def strop(*args: str) -> None:
    print("$ strop " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "strop", *args], check=True, cwd=ROOT)


def complete(folder: Path) -> bool:
    """An evaluation that finished (strop eval writes metrics.json last)."""
    return (folder / "metrics.json").exists()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (comma-separated)")
    ap.add_argument("--curricula", default=",".join(CURRICULA), help=f"recipes/arith-<name>.yaml, any of {', '.join(CURRICULA)}")
    ap.add_argument("--samples", type=int, default=4, help="temperature-1 samples per evaluation problem")
    ap.add_argument("--runs", default="runs", help="folder for the training and eval runs")
    ap.add_argument("--summarise-only", action="store_true", help="run nothing; summarise the complete runs")
    ap.add_argument("--out", default="bench/results/sec_vs_random")
    a = ap.parse_args()
    os.chdir(ROOT)  # run folders are named relative to the repo in commands, tables and plots
    runs, out = Path(a.runs), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    curricula = a.curricula.split(",")

    def evaluate(name: str, model: str | None) -> None:
        for decode in DECODES:
            folder = runs / f"eval-arith-{name}-{decode}"
            if a.summarise_only or complete(folder):
                continue
            strop("eval", "--backend", "hf", "--task", "arithmetic", "--method", decode, "--max-tokens", "32",
                  "--samples", str(a.samples if decode == "sample" else 1), "--out", str(folder),
                  *(["--model", model] if model else []))

    evaluate("base", None)
    for seed in seeds:
        for c in curricula:
            train_dir = runs / f"train-arith-{c}-s{seed}"
            if not a.summarise_only and not (train_dir / "final").exists():
                strop("train", f"recipes/arith-{c}.yaml", "--seed", str(seed), "--output", str(train_dir))
            if (train_dir / "final").exists():
                evaluate(f"{c}-s{seed}", str(train_dir / "final"))
    summarise(runs, out, seeds, curricula)


def plot_validation(curves: dict[str, dict[int, list[dict]]], path: Path) -> None:
    """Validation accuracy during training by step: one thin line per seed, the mean over seeds bold, one colour per curriculum."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (c, by_seed), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        for v in by_seed.values():
            ax.plot([p["step"] for p in v], [p["accuracy"] for p in v], color=colour, alpha=0.35, lw=1)
        steps = sorted({p["step"] for v in by_seed.values() for p in v})
        mean = [np.mean([p["accuracy"] for v in by_seed.values() for p in v if p["step"] == st]) for st in steps]
        ax.plot(steps, mean, color=colour, lw=2.5, marker="o", label=f"{c} (mean of {len(by_seed)} seeds)")
    ax.set_xlabel("training step")
    ax.set_ylabel("greedy accuracy, validation problems")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("held-out accuracy during training (thin: one seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(runs: Path, out: Path, seeds: list[int], curricula: list[str]) -> None:
    have = [(c, s) for s in seeds for c in curricula if all(complete(runs / f"eval-arith-{c}-s{s}-{d}") for d in DECODES)]
    seeds_done = [s for s in seeds if all((c, s) in have for c in curricula)]  # seeds with every curriculum: paired
    print(f"\ncomplete: {', '.join(f'{c} seed {s}' for c, s in have) or 'nothing yet'}; fully paired seeds: {seeds_done}")
    summary: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "seeds": seeds_done, "curricula": curricula, "accuracy": {}, "paired": []}
    plot_acc: dict = {}
    for decode in DECODES:
        base = records(runs / f"eval-arith-base-{decode}")
        recs = {(c, s): records(runs / f"eval-arith-{c}-s{s}-{decode}") for c, s in have}
        print(f"\n{decode}: accuracy on held-out problems (95% Wilson), pooled over seeds {seeds_done}")
        print(f"{'':<10}" + "".join(f"{lv:>20}" for lv in LEVELS + ["all"]))
        pooled = {"base": {lv: accuracy([base], lv) for lv in LEVELS + ["all"]}}
        pooled.update({c: {lv: accuracy([recs[(c, s)] for s in seeds_done], lv) for lv in LEVELS + ["all"]} for c in curricula})
        for name, row in pooled.items():
            print(f"{name:<10}" + "".join(f"{cell(row[lv]):>20}" for lv in LEVELS + ["all"]))
            summary["accuracy"].update({f"{decode}/{name}/{lv}": v for lv, v in row.items()})
        for c, s in have:
            acc = accuracy([recs[(c, s)]], "all")
            summary["accuracy"][f"{decode}/{c}-s{s}/all"] = acc
            print(f"  {c} seed {s}: all levels {cell(acc)}")
        plot_acc[decode] = pooled
        print(f"\n{decode}: paired attempts (all levels), only A right / only B right, exact McNemar p; per seed, then summed")
        pairs = [(x, y) for i, x in enumerate(curricula) for y in curricula[i + 1:]] + [(c, "base") for c in curricula]
        for x, y in pairs:
            per_seed = [paired(recs[(x, s)], base if y == "base" else recs[(y, s)], "all") for s in seeds_done]
            if not per_seed:
                continue
            tot = mcnemar(sum(p for p, _ in per_seed), sum(q for _, q in per_seed))
            summary["paired"].append({"decode": decode, "a": x, "b": y, "per_seed": per_seed, **tot})
            seeds_txt = ", ".join(f"{p}/{q}" for p, q in per_seed)
            print(f"  {x:>8} vs {y:<8} seeds [{seeds_txt}]  summed {tot['only_a']} / {tot['only_b']}  p = {tot['p']:.4f}")
    trained = [load_run(runs / f"train-arith-{c}-s{s}") for c, s in have]
    if trained:
        print()
        for line in training_table(trained):
            print(line)
        plot_training(trained, out / "training_curves.png")
        curves: dict[str, dict[int, list[dict]]] = {}
        for (c, seed), run in zip(have, trained):
            v = validation_curve(run["metrics"])
            if v:
                curves.setdefault(c, {})[seed] = v
                summary.setdefault("validation", {})[f"{c}-s{seed}"] = {p["step"]: round(p["accuracy"], 4) for p in v}
        if curves:
            plot_validation(curves, out / "validation.png")
            print("validation accuracy by step: " + "; ".join(
                f"{k}: " + ", ".join(f"{st} {a:.2f}" for st, a in v.items()) for k, v in summary["validation"].items()))
        plot_levels(plot_acc, {"base": "before", **{c: f"after {c} (seeds pooled)" for c in curricula}}, out / "accuracy_per_level.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    pngs = [n for n in ("training_curves.png", "accuracy_per_level.png", "validation.png") if trained and (out / n).exists()]
    print(f"\nwrote summary.json{''.join(', ' + n for n in pngs)} in {out}")


if __name__ == "__main__":
    main()
