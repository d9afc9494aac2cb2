"""Held-out arithmetic evaluations compared level by level: shared by sec_vs_random.py and ladder_arith.py.

Runs of ``strop eval --task arithmetic`` on the same problems with the same
per-attempt random streams are paired attempt by attempt ((id, sample) keys),
so two models are compared with an exact McNemar test on the attempts only
one of them got right.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from strop.evaluation.metrics import mcnemar_exact, wilson_interval
from strop.evaluation.report import _plt

LEVELS = ["d1o1", "d1o2", "d2o1", "d2o2", "d3o1", "d3o2"]
Records = dict[tuple[str, int], dict]


def records(folder: Path) -> Records:
    rows = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines() if x.strip()]
    return {(r["id"], r["sample"]): r for r in rows}


def _in(r: dict, level: str) -> bool:
    return level == "all" or r["category"] == level or (level == "d3" and r["category"] in ("d3o1", "d3o2"))


def accuracy(recs: Iterable[Records], level: str) -> dict:
    """Correct / attempts on ``level`` ("all", "d3" = both three-digit levels, or one level), pooled over runs, with a Wilson interval."""
    sel = [r for rs in recs for r in rs.values() if _in(r, level)]
    c, n = sum(r["correct"] for r in sel), len(sel)
    lo, hi = wilson_interval(c, n)
    return {"correct": c, "n": n, "accuracy": c / n if n else float("nan"), "ci95": [lo, hi]}


def paired(a: Records, b: Records, level: str) -> tuple[int, int]:
    """(attempts only a got right, attempts only b got right) on ``level``."""
    keys = [k for k, r in a.items() if _in(r, level) and k in b]
    return (sum(a[k]["correct"] and not b[k]["correct"] for k in keys), sum(b[k]["correct"] and not a[k]["correct"] for k in keys))


def mcnemar(only_a: int, only_b: int) -> dict:
    return {"only_a": only_a, "only_b": only_b, "p": mcnemar_exact(only_a, only_b)}


def cell(acc: Mapping) -> str:
    return f"{acc['accuracy']:.3f} [{acc['ci95'][0]:.2f},{acc['ci95'][1]:.2f}]"


def plot_levels(acc: Mapping[str, Mapping[str, Mapping[str, Mapping]]], labels: Mapping[str, str], path: Path) -> None:
    """Bars per level: ``acc[decode][model][level]`` (accuracy dicts), one panel per decode, one bar per model."""
    plt = _plt()
    decodes = list(acc)
    fig, axes = plt.subplots(1, len(decodes), figsize=(6.5 * len(decodes), 4), squeeze=False)
    for ax, decode in zip(axes[0], decodes):
        names = list(acc[decode])
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            cells = [acc[decode][name][lv] for lv in LEVELS]
            y = [x["accuracy"] for x in cells]
            err = [[max(0.0, v - x["ci95"][0]) for v, x in zip(y, cells)], [max(0.0, x["ci95"][1] - v) for v, x in zip(y, cells)]]
            ax.bar([i + (j - (len(names) - 1) / 2) * width for i in range(len(LEVELS))], y, width, yerr=err, capsize=2,
                   label=labels.get(name, name))
        ax.set_xticks(range(len(LEVELS)), LEVELS)
        ax.set_ylabel("accuracy (95% CI)")
        ax.set_title(f"held-out arithmetic, {'temperature 1' if decode == 'sample' else 'greedy'}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
