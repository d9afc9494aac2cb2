"""How fast the power sampler's chain approaches p^alpha, measured exactly.

On the stylized model of reasoning (``strop.backends.toy_models``), the law of
the chain after s MH steps is mu_0 P^s with P the exact transition matrix
(``exact.exact_chain``), so the total-variation distance to p^alpha is
computed, not estimated from samples. The entropy-cut paper claims: the
uniform cut's mixing time grows with the length T, the entropy cut's with the
number of decisions k.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from strop.backends.toy_models import stylized_reasoning
from strop.methods.power.exact import exact_chain, tv
from strop.methods.power.sampler import PowerConfig

CUTS = ("uniform", "entropy")


@dataclass(frozen=True)
class MixingSettings:
    alpha: float = 4.0
    beta: float = 4.0
    gap: int = 2  # tokens from one decision to the next
    tv_level: float = 0.05
    max_steps: int = 20000
    curve_steps: int = 400  # TV(s) is kept for s <= curve_steps, for the plot


def mixing_row(k: int, T: int, cut: str, s: MixingSettings) -> dict:
    """Steps for the chain started from a proposal draw to get within ``tv_level`` of p^alpha."""
    toy = stylized_reasoning(k, T, gap=s.gap)
    chain = exact_chain(toy, toy.tokenize("Q"), T, PowerConfig(alpha=s.alpha, beta=s.beta, cut=cut))
    mu = chain.proposal
    curve = [tv(mu, chain.target)]
    steps = 0 if curve[0] <= s.tv_level else None
    for step in range(1, s.max_steps + 1):
        mu = mu @ chain.P
        d = tv(mu, chain.target)
        if step <= s.curve_steps:
            curve.append(d)
        if steps is None and d <= s.tv_level:
            steps = step
        if steps is not None and step >= s.curve_steps:
            break
    return {"k": k, "T": T, "cut": cut, "states": len(chain.states), "steps_to_tv": steps,
            "tv_after": {str(x): curve[x] for x in (1, 10, 100) if x < len(curve)},
            "curve": curve}


def mixing_table(Ts: Iterable[int], ks: Iterable[int], *, fixed_k: int, fixed_T: int, settings: MixingSettings | None = None) -> dict:
    s = settings or MixingSettings()
    over_T = [mixing_row(fixed_k, T, cut, s) for T in Ts for cut in CUTS]
    over_k = [mixing_row(k, fixed_T, cut, s) for k in ks for cut in CUTS]
    return {"settings": s.__dict__, "fixed_k": fixed_k, "fixed_T": fixed_T, "over_T": over_T, "over_k": over_k}


def plot_mixing(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["settings"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for cut, marker in zip(CUTS, ("o", "s")):
        for ax, key, x in ((axes[0], "over_T", "T"), (axes[1], "over_k", "k")):
            rows = [r for r in result[key] if r["cut"] == cut]
            ax.plot([r[x] for r in rows], [r["steps_to_tv"] or np.nan for r in rows], marker=marker, label=f"{cut} cut")
    axes[0].set(xscale="log", yscale="log", xlabel="length T", ylabel=f"MH steps to TV <= {s['tv_level']}",
                title=f"over T (k = {result['fixed_k']})")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axes[0].set_xticks(sorted({r["T"] for r in result["over_T"]}))
    axes[0].xaxis.set_major_formatter(ScalarFormatter())
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set(yscale="log", xlabel="decisions k", ylabel=f"MH steps to TV <= {s['tv_level']}", title=f"over k (T = {result['fixed_T']})")
    for r in result["over_T"]:
        axes[2].plot(r["curve"], ls="-" if r["cut"] == "uniform" else "--", label=f"{r['cut']} T={r['T']}")
    axes[2].set(yscale="log", xlabel="MH steps s", ylabel="TV(chain law, p^alpha)", title=f"TV vs steps (k = {result['fixed_k']})")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Power-sampler mixing on the stylized reasoning model (alpha={s['alpha']}, beta={s['beta']}, exact chain laws)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
