"""Pure kernels of power sampling by Sequential Monte Carlo (a particle filter towards p^alpha).

Target, as for MH: pi(y) ∝ p(y | x)^alpha over completions that end at EOS or
at the length cap. N particles are decoded side by side from a proposal q
(the base model at temperature 1/a). Each particle carries a log-weight; after
block k of tokens the weighted particles represent the intermediate target

    gamma_k(y_{1:t}) = p(y_{1:t})^{a_k},   a_k = ramp exponent after block k,

and when every particle has ended and a_k = alpha, the weighted particles
represent pi. Moving a particle from block k-1 to block k multiplies its weight
by gamma_k(y_{1:t'}) / (gamma_{k-1}(y_{1:t}) q(y_{t+1:t'})):

    log w += (a_k - a_{k-1}) * log p(y_{1:t})          (the kept prefix, re-tempered)
           + a_k * log p(y_{t+1:t'}) - log q(y_{t+1:t'})  (the new tokens)

With a fixed exponent (no ramp) the first term is zero and the second is, per
token, alpha * log p(y_i) - log q(y_i) = log Z_i, the proposal's normaliser at
temperature 1/alpha: it depends only on the prefix, which is why a particle
filter suits this target. A particle that has ended (EOS or the cap) draws no
tokens but still takes the first term while the exponent ramps, so its weight
ends as p(y)^alpha / q(y) like any other: the correction that keeps the final
target p^alpha for particles shorter than the ramp.
"""

from __future__ import annotations

import math

import numpy as np


def ramp_exponent(tokens: int, alpha: float, ramp: int) -> float:
    """The exponent after ``tokens`` tokens: linear from 1 to ``alpha`` over the first ``ramp`` tokens, then alpha.

    ``ramp`` = 0: alpha from the start (no ramp).

    >>> ramp_exponent(0, 4.0, 400), ramp_exponent(200, 4.0, 400), ramp_exponent(800, 4.0, 400), ramp_exponent(0, 4.0, 0)
    (1.0, 2.5, 4.0, 4.0)
    """
    if ramp <= 0 or tokens >= ramp:
        return float(alpha)
    return 1.0 + (alpha - 1.0) * tokens / ramp


def block_log_weight(a_prev: float, a_new: float, prefix_base: float, new_base: float, new_proposal: float) -> float:
    """The increment of one particle's log-weight for one block (see the module docstring).

    ``prefix_base``: summed base log-probs of the tokens it had before the block;
    ``new_base`` / ``new_proposal``: summed base / proposal log-probs of the
    tokens it drew in the block (both 0 for a particle that has ended).

    >>> block_log_weight(1.0, 2.0, -3.0, -1.0, -0.5)
    -4.5
    """
    return (a_new - a_prev) * prefix_base + a_new * new_base - new_proposal


def normalized_weights(log_w: np.ndarray) -> np.ndarray:
    """exp(log_w) / sum, stably; (N,) -> (N,). All -inf (every particle impossible): uniform."""
    lw = np.asarray(log_w, dtype=np.float64)
    top = lw.max() if lw.size else -np.inf
    if not np.isfinite(top):
        return np.full(lw.shape, 1.0 / max(lw.size, 1))
    w = np.exp(lw - top)
    return w / w.sum()


def ess(log_w: np.ndarray) -> float:
    """Effective sample size 1 / sum(w_i^2) of the normalised weights: N for equal weights, 1 for one particle.

    >>> ess(np.zeros(8)), round(ess(np.array([0.0, -np.inf, -np.inf])), 6)
    (8.0, 1.0)
    """
    w = normalized_weights(log_w)
    return float(1.0 / np.sum(w * w))


def systematic_resample(log_w: np.ndarray, u: float) -> np.ndarray:
    """Ancestor indices by systematic resampling with one uniform ``u`` in [0, 1); (N,) -> (N,) int, sorted.

    Particle i is copied floor or ceil of N * w_i times: the lowest-variance
    of the standard schemes, and one random number for the whole draw.

    >>> systematic_resample(np.log(np.array([0.5, 0.25, 0.25])), 0.5).tolist()
    [0, 1, 2]
    >>> systematic_resample(np.array([np.log(0.75), np.log(0.25), -np.inf]), 0.5).tolist()
    [0, 0, 1]
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), got {u!r}")
    w = normalized_weights(log_w)
    n = len(w)
    positions = (u + np.arange(n)) / n
    cdf = np.cumsum(w)
    cdf[-1] = 1.0  # float round-off must not push the last position past the end
    return np.searchsorted(cdf, positions, side="right").clip(max=n - 1)


def log_mean_weight(log_w: np.ndarray) -> float:
    """log of the mean weight, log((1/N) sum exp(log_w)): what each particle's log-weight becomes after resampling,
    so the weights keep estimating the normaliser (the value does not change which particle is drawn)."""
    lw = np.asarray(log_w, dtype=np.float64)
    top = lw.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + math.log(np.mean(np.exp(lw - top))))
