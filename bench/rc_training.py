"""RC training on the arithmetic task: accuracy per RC turn before and after, beyond the trained turns.

    python bench/rc_training.py [--steps 12] [--turns 6] [--limit 75] [--out runs/rc]

Steps (each a strop command, resumable; re-running finishes what is missing):
1. Before: ``strop eval --method rc --turns 6`` (H_R = H_S = 48, temperature 1) on the
   first 75 held-out arithmetic problems (seed 0: the 50 one-digit sums and the first 25
   one-digit two-operation sums), base model, hf backend, all 75 decoded as one batch.
   RC re-reads a fresh prompt every turn, so on 2 CPU cores one such evaluation takes
   about half an hour; --limit 150 adds 75 two-digit-operation problems.
2. ``strop train recipes/rc-arith.yaml``: RC training with T_train = 3, N_summ = 2, K = 8,
   replay buffer.
3. After: the same evaluation on the trained model.
4. ``docs/rc_training_accuracy_vs_turn.png`` (before vs after, 95% intervals, the turns
   training saw shaded: states s_0..s_3 condition reasoning turns 1-4) and ``summary.json`` (per-turn accuracy, training curves, wall times).
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
H_R = H_S = "48"


def strop(*args: str) -> float:
    print("$ strop " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "strop", *args], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def rc_eval(out: Path, limit: int, turns: int, model: str | None) -> float:
    extra = ["--model", model] if model else []
    return strop("eval", "--task", "arithmetic", "--limit", str(limit), "--backend", "hf", "--method", "rc", "--turns", str(turns),
                 "--reasoning-tokens", H_R, "--summary-tokens", H_S, "--batch-size", "75", "--out", str(out), *extra)


def per_turn(folder: Path) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())["overall"]["per_turn"]


def plot(before: list[dict], after: list[dict], trained_turns: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    # Rollouts of T_train turns give states s_0..s_T; a trace from s_t is reasoning turn t + 1.
    ax.axvspan(0.5, trained_turns + 1.5, color="0.92", label=f"reasoning turns trained from (s_0..s_{trained_turns}, T_train = {trained_turns})")
    for rows, label in ((before, "base model"), (after, "after RC training")):
        t = [r["turn"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        lo = [r["accuracy"] - r["ci95"][0] for r in rows]
        hi = [r["ci95"][1] - r["accuracy"] for r in rows]
        ax.errorbar(t, acc, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.set_xlabel("RC turn")
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--limit", type=int, default=75)
    ap.add_argument("--out", default="runs/rc")
    a = ap.parse_args()
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    walls = {"base-rc": rc_eval(out / "base-rc", a.limit, a.turns, None)}
    walls["train"] = strop("train", "recipes/rc-arith.yaml", "--max-steps", str(a.steps), "--output", str(out / "train"), "--quiet")
    walls["trained-rc"] = rc_eval(out / "trained-rc", a.limit, a.turns, str(out / "train" / "final"))

    sys.path.insert(0, str(ROOT / "src"))
    from strop.records import read_records
    from strop.training.recipe import load_recipe

    trained_turns = load_recipe(ROOT / "recipes/rc-arith.yaml").rc.turns
    before, after = per_turn(out / "base-rc"), per_turn(out / "trained-rc")
    plot(before, after, trained_turns, ROOT / "docs" / "rc_training_accuracy_vs_turn.png",
         f"arithmetic (first {a.limit} held-out), RC H_R = H_S = {H_R}, temperature 1")
    metrics = read_records(out / "train" / "metrics.jsonl")
    states = read_records(out / "train" / "rc_states.jsonl")
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "walls_s": walls,
        "per_turn": {"before": before, "after": after},
        "per_category_final_turn": {
            tag: {c: v["accuracy"] for c, v in json.loads((out / tag / "metrics.json").read_text()).get("per_category", {}).items()}
            for tag in ("base-rc", "trained-rc")},
        "train": [{"step": m["step"], "reward": m["reward"], "wall_per_step_s": m["wall_per_step_s"],
                   "empty": m.get("category/empty summary/reward"), "from_summary": m.get("category/from summary/reward"),
                   "mean_state_turn": m.get("rc/mean_turn"), "buffer": m.get("rc/buffer")} for m in metrics],
        "states_drawn_by_turn": {t: sum(s["turn"] == t for r in states for s in r["states"])
                                 for t in sorted({s["turn"] for r in states for s in r["states"]})},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
