"""Plots of one run and side-by-side reports of several (``strop report runs/A runs/B``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from strop.errors import StropError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(spec: dict[str, Any]) -> str:
    return f"{spec.get('method')} ({spec.get('task')})"


def _points(m: dict[str, Any]) -> tuple[list[float], list[float], list[list[float]]]:
    """Accuracy vs mean tokens: one point, or one per turn for RC-style runs."""
    o = m["overall"]
    if o.get("per_turn"):
        pt = o["per_turn"]
        return [t["mean_cumulative_tokens"] for t in pt], [t["accuracy"] for t in pt], [t["ci95"] for t in pt]
    return [o["mean_tokens_per_attempt"]], [o["accuracy"]], [o["ci95"]]


def _yerr(y: list[float], ci: list[list[float]]) -> list[list[float]]:
    """Asymmetric error bars from intervals; never negative (matplotlib refuses those)."""
    return [[max(0.0, a - c[0]) for a, c in zip(y, ci)], [max(0.0, c[1] - a) for a, c in zip(y, ci)]]


def plot_runs(metrics: list[dict[str, Any]], path: Path, title: str = "") -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in metrics:
        x, y, ci = _points(m)
        ax.errorbar(x, y, yerr=_yerr(y, ci), marker="o", capsize=3, label=_label(m["spec"]))
    ax.set(xlabel="mean tokens decoded per attempt", ylabel="accuracy (95% CI)", title=title or "accuracy vs tokens", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_turns(metrics: dict[str, Any], path: Path) -> None:
    pt = metrics["overall"].get("per_turn")
    if not pt:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    y = [t["accuracy"] for t in pt]
    ax.errorbar([t["turn"] for t in pt], y, yerr=_yerr(y, [t["ci95"] for t in pt]), marker="o", capsize=3)
    ax.set(xlabel="turn", ylabel="accuracy (95% CI)", title=f"{_label(metrics['spec'])}: accuracy per turn", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_metrics(run: str | Path) -> dict[str, Any]:
    path = Path(run) / "metrics.json"
    if not path.is_file():
        raise StropError(f"{run} has no metrics.json (is it a finished `strop eval` folder?)")
    return json.loads(path.read_text())


def table(metrics: list[dict[str, Any]], names: list[str]) -> list[str]:
    rows = [f"{'run':28s} {'task':24s} {'method':12s} {'n':>5s} {'accuracy':>8s} {'95% CI':>15s} {'pass@k':>7s} {'maj@k':>6s} {'tok/att':>8s} {'s/att':>6s}"]
    for name, m in zip(names, metrics):
        o, s = m["overall"], m["spec"]
        k = str(m["samples"])
        pk = o.get("pass_at_k", {}).get(k)
        mk = o.get("majority_at_k", {}).get(k)
        rows.append(f"{name[-28:]:28s} {s['task'][:24]:24s} {s['method'][:12]:12s} {o['attempts']:5d} {o['accuracy']:8.3f} "
                    f"[{o['ci95'][0]:.3f}, {o['ci95'][1]:.3f}] {'' if pk is None else f'{pk:.3f}':>7s} {'' if mk is None else f'{mk:.3f}':>6s} "
                    f"{o['mean_tokens_per_attempt']:8.1f} {o['mean_seconds_per_attempt']:6.2f}")
        if "ttrl" in o:
            t = o["ttrl"]
            rows.append(f"{'':28s} ttrl: before {t['before']:.3f}, after {t['after']:.3f} (= accuracy), any verified attempt correct "
                        f"{t['any_verified_correct']:.3f}; {t['mean_steps']:.1f} steps, {t['mean_variants']:.1f} variants per problem")
            if "pass_samples" in t:
                n = t["pass_samples"]
                before, after = t.get("pass_at_k_before", {}), t.get("pass_at_k_after", {})
                ks = ", ".join(f"pass@{k} {before[k]:.3f} -> {after[k]:.3f}" for k in before if k in after) or \
                    f"pass@1 {t['pass1_before']:.3f} -> {t['pass1_after']:.3f}, pass@{n} {t['passn_before']:.3f} -> {t['passn_after']:.3f}"
                rows.append(f"{'':28s} ttrl, {n} samples per problem (temperature, before -> after): {ks}; "
                            f"a variant solved in training {t['variant_solved']:.3f}")
        for t in o.get("per_turn", []):
            rows.append(f"{'':28s} {'':24s} {'turn ' + str(t['turn']):12s} {'':5s} {t['accuracy']:8.3f} [{t['ci95'][0]:.3f}, {t['ci95'][1]:.3f}]"
                        f" {'':7s} {'':6s} {t['mean_cumulative_tokens']:8.1f}")
        for c, cm in m.get("per_category", {}).items():
            rows.append(f"{'':28s} {'':24s} {c[:12]:12s} {cm['attempts']:5d} {cm['accuracy']:8.3f} [{cm['ci95'][0]:.3f}, {cm['ci95'][1]:.3f}]")
    return rows
