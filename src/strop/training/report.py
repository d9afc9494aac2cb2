"""Reports of training runs: a summary table and the curves people look at.

``strop report runs/train-sec runs/train-random --plot curves.png`` reads each
run folder's ``metrics.jsonl`` and ``curriculum.jsonl`` (written by
``strop train``) and draws, per run: mean reward and the fraction of
zero-std groups per step, and the curriculum (arm shares, and Q for SEC).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from strop.errors import StropError
from strop.evaluation.report import _plt
from strop.training.run_folder import load_metrics


def is_training_run(folder: str | Path) -> bool:
    return (Path(folder) / "recipe.json").is_file()


def _smooth(y: list[float], window: int) -> np.ndarray:
    if len(y) < window or window <= 1:
        return np.asarray(y, dtype=float)
    kernel = np.ones(window) / window
    return np.convolve(y, kernel, mode="valid")


def load_run(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not is_training_run(folder):
        raise StropError(f"{folder} is not a training run (no recipe.json): run `strop train` first")
    metrics, curriculum = load_metrics(folder)
    if not metrics:
        raise StropError(f"{folder} has no logged steps yet (metrics.jsonl is empty)")
    return {"name": str(folder), "recipe": json.loads((folder / "recipe.json").read_text()),
            "metrics": metrics, "curriculum": curriculum}


def curriculum_label(cfg: dict[str, Any]) -> str:
    """The curriculum's kind, with SEC's Q update when it is not the default (``sec/all``: the reference code's)."""
    update = cfg.get("update")
    return f"{cfg['kind']}/{update}" if cfg.get("kind") == "sec" and update not in (None, "drawn") else cfg["kind"]


def training_table(runs: list[dict[str, Any]], window: int = 5) -> list[str]:
    """One line per run: steps, reward over the first and last ``window`` steps, zero-std fraction, seconds per step."""
    head = (f"{'run':<28} {'curriculum':<10} {'steps':>5} {'reward first':>12} {'reward last':>11} "
            f"{'zero-std last':>13} {'KL last':>8} {'len':>5} {'s/step':>7}")
    lines = [head]
    for r in runs:
        m = r["metrics"]
        first, last = m[:window], m[-window:]

        def mean(rows: list[dict], key: str) -> float:
            vals = [x[key] for x in rows if key in x]
            return float(np.mean(vals)) if vals else float("nan")

        lines.append(
            f"{r['name']:<28} {curriculum_label(r['recipe']['curriculum']):<10} {m[-1]['step']:>5} {mean(first, 'reward'):>12.3f} "
            f"{mean(last, 'reward'):>11.3f} {mean(last, 'frac_reward_zero_std'):>13.2f} {mean(last, 'kl'):>8.4f} "
            f"{mean(m, 'completions/mean_length'):>5.1f} {mean(m[1:] or m, 'wall_per_step_s'):>7.1f}"
        )
        arms = r["curriculum"][0]["counts"].keys() if r["curriculum"] else []
        for a in arms:
            lines.append(f"{'':<28} {'  ' + a:<10} reward first {mean(first, f'category/{a}/reward'):.3f}  "
                         f"last {mean(last, f'category/{a}/reward'):.3f}  share of groups "
                         f"{np.mean([c['counts'][a] / max(1, sum(c['counts'].values())) for c in r['curriculum']]):.2f}")
    return lines


def plot_training(runs: list[dict[str, Any]], path: Path, window: int = 5) -> None:
    """Rows = runs; columns = reward (raw and smoothed) with zero-std fraction, arm shares, Q (SEC only).

    Runs that validated during training (a recipe's ``eval``) get two more
    columns: held-out accuracy with its 95% interval against step and against
    wall time (the sum of the logged seconds per step, evaluations included,
    so a resumed run's clock continues where it stopped).
    """
    plt = _plt()
    validated = any("eval/accuracy" in x for r in runs for x in r["metrics"])
    cols = 5 if validated else 3
    fig, axes = plt.subplots(len(runs), cols, figsize=(5 * cols, 3.6 * len(runs)), squeeze=False)
    for row, r in zip(axes, runs):
        if validated:
            _plot_validation(row[3], row[4], r)
        m, c = r["metrics"], r["curriculum"]
        steps = [x["step"] for x in m]
        reward = [x["reward"] for x in m]
        ax = row[0]
        ax.plot(steps, reward, color="tab:blue", alpha=0.35, label="reward")
        sm = _smooth(reward, window)
        ax.plot(steps[len(steps) - len(sm):], sm, color="tab:blue", label=f"reward ({window}-step mean)")
        ax.plot(steps, [x.get("frac_reward_zero_std", np.nan) for x in m], color="tab:red", alpha=0.6, label="zero-std groups")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_title(f"{r['name']}: reward", fontsize=9)
        ax.legend(fontsize=7)
        ax = row[1]
        if c:
            arms = list(c[0]["counts"])
            cs = [x["step"] for x in c]
            shares = np.array([[x["counts"][a] / max(1, sum(x["counts"].values())) for a in arms] for x in c])
            # A step holds only a few prompt groups: a rolling share reads better than per-step jumps.
            rolled = np.array([_smooth(list(col), window) for col in shares.T])
            ax.stackplot(cs[len(cs) - rolled.shape[1]:], rolled, labels=arms)
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xlabel("step")
        ax.set_title(f"arm mix (share of prompt groups, {window}-step mean)", fontsize=9)
        ax = row[2]
        if c and "q" in c[0]:
            for a in c[0]["q"]:
                ax.plot([x["step"] for x in c], [x["q"][a] for x in c], label=a)
            ax.legend(fontsize=7)
            ax.set_title("SEC Q (mean |advantage|, TD(0))", fontsize=9)
        else:
            ax.set_title("no Q (not an SEC run)", fontsize=9)
        ax.set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def validation_curve(metrics: list[dict[str, Any]]) -> list[dict[str, float]]:
    """(step, wall time so far, accuracy, interval) of each step that validated; wall time = cumulative seconds per step."""
    out, wall = [], 0.0
    for x in metrics:
        wall += float(x.get("wall_per_step_s", 0.0))
        if "eval/accuracy" in x:
            out.append({"step": x["step"], "wall_s": wall, "accuracy": x["eval/accuracy"], "lo": x["eval/ci95_lo"], "hi": x["eval/ci95_hi"]})
    return out


def _plot_validation(by_step: Any, by_time: Any, run: dict[str, Any]) -> None:
    v = validation_curve(run["metrics"])
    for ax, key, label in ((by_step, "step", "step"), (by_time, "wall_s", "wall time (s)")):
        if v:
            x = [p[key] for p in v]
            ax.plot(x, [p["accuracy"] for p in v], marker="o", color="tab:green", label="held-out accuracy")
            ax.fill_between(x, [p["lo"] for p in v], [p["hi"] for p in v], color="tab:green", alpha=0.2, label="95% interval")
            ax.legend(fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(label)
        ax.set_title("held-out accuracy during training" if v else "no validation (recipe has no eval)", fontsize=9)
