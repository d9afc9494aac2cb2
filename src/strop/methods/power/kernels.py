"""Pure kernels of Metropolis-Hastings power sampling.

Target: pi(y) ∝ p(y | x)^alpha over completions that end at EOS or at a
length cap. One MH move: choose a cut m with probability c_y(m), keep y_<m,
draw a new suffix from the proposal q until EOS or the cap, and accept with

    log A = alpha * [log p(y'_suf) - log p(y_suf)]
          + [log q(y_suf) - log q(y'_suf)]
          + [log c_{y'}(m) - log c_y(m)]

The prefix terms cancel because y and y' share y_<m. The cut term does not
cancel in general: for the uniform cut c_y(m) = 1/len(y), which differs when
the proposal ends at EOS earlier or later than the current sequence; for the
entropy cut the normaliser depends on the whole sequence, so c_{y'} is
computed on the proposed sequence (its prefix entropies plus the new suffix's).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from strop.errors import ConfigError

CutRule = Literal["uniform", "entropy", "max-swap"]
Target = Literal["full", "topk"]
TARGETS: tuple[str, ...] = ("full", "topk")


def check_target(alpha: float, proposal_temperature: float | None, top_k: int | None, target: str) -> None:
    """The settings every power sampler shares (MH's ``PowerConfig``, SMC's ``SMCConfig``), validated: ConfigError naming the field."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"alpha must be a finite number > 0, got {alpha!r}")
    t = proposal_temperature
    if t is not None and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ConfigError(f"proposal_temperature must be a number > 0 or None (1/alpha), got {t!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if target == "topk" and top_k is None:
        raise ConfigError("target 'topk' renormalises the base model over the proposal's top_k tokens: set top_k"
                          " (the entropy-cut reference uses 50), got top_k=None")


def entropy_cut_weights(entropies: np.ndarray, beta: float) -> np.ndarray:
    """Unnormalised entropy-jump weights w(t) = max(0, H_t - H_{t-1})^beta, with H_{-1} = 0.

    ``entropies``: (L,) base-model next-token entropies at each completion
    position. Returns (L,).
    """
    h = np.asarray(entropies, dtype=np.float64)
    jumps = np.maximum(0.0, np.diff(h, prepend=0.0))
    return jumps**beta


def cut_log_probs(length: int, entropies: np.ndarray | None, rule: CutRule, beta: float) -> np.ndarray:
    """log c_y(m) for m = 0..length-1 (m = index of the first resampled token).

    Uniform (and max-swap): 1/length. Entropy: normalised entropy-jump weights,
    falling back to uniform when every weight is zero (a fully confident
    sequence has no decision point to prefer).
    """
    if length < 1:
        raise ValueError("a cut needs a sequence of at least one token")
    if rule == "entropy":
        if entropies is None or len(entropies) != length:
            raise ValueError(f"the entropy cut needs one entropy per token ({length}), got {None if entropies is None else len(entropies)}")
        w = entropy_cut_weights(entropies, beta)
        total = float(w.sum())
        if total > 0.0 and math.isfinite(total):
            with np.errstate(divide="ignore"):
                return np.log(w) - math.log(total)
    return np.full(length, -math.log(length))


def log_acceptance(
    alpha: float,
    base_cur: float,
    base_new: float,
    prop_cur: float,
    prop_new: float,
    log_cut_cur: float,
    log_cut_new: float,
) -> float:
    """log of the MH acceptance ratio (before min(1, .)) for one suffix move.

    ``base_*``: summed base log-probs of the current / proposed suffix;
    ``prop_*``: summed proposal log-probs of the same suffixes;
    ``log_cut_cur`` = log c_y(m), ``log_cut_new`` = log c_{y'}(m).
    """
    return alpha * (base_new - base_cur) + (prop_cur - prop_new) + (log_cut_new - log_cut_cur)


def draw_index(weights: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn in proportion to ``weights`` (>= 0, not all 0) with one uniform from ``rng``: the cut point of an
    MH step, the particle SMC answers with.

    >>> draw_index(np.array([0.0, 1.0, 0.0]), np.random.default_rng(0))
    1
    """
    cdf = np.cumsum(weights)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def max_swap_accepts(base_cur: float, base_new: float) -> bool:
    """alpha -> infinity: move only to a strictly more likely sequence (never a worse one)."""
    return base_new > base_cur


def mh_accepts(log_a: float, rng: np.random.Generator) -> bool:
    """Accept with probability min(1, exp(log_a)); draws one uniform only when needed."""
    if log_a >= 0.0:
        return True
    if math.isnan(log_a):
        return False
    return rng.random() < math.exp(log_a)
