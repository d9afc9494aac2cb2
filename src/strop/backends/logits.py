"""Pure kernels from one row of next-token logits to a sampled token.

Every local backend (llama.cpp, transformers, toy) sends its logits through
``draw`` so that "log-probability under the base model" and "under the
proposal distribution" mean exactly the same thing everywhere. Power
sampling's acceptance ratio needs both, exactly, for every token.

Conventions:
- base distribution = softmax(logits), i.e. temperature 1, no truncation;
- proposal distribution = softmax(logits / temperature) restricted to the
  top-k tokens and then to the top-p nucleus, renormalised;
- temperature 0 means argmax; its proposal log-prob is 0 (a point mass);
- with ``base_k`` the base distribution is instead softmax(logits) over the
  k largest logits only, renormalised (power sampling's top-k target, as the
  entropy-cut reference computes it); entropies are then over those k too.

Sums, logs and CDFs are float64; ``draw``'s exponentials are float32 for
speed (see its docstring), which keeps log-probs accurate to ~1e-6, well
below every tolerance the samplers rely on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Top-p needs the sorted head of the distribution. Sorting the whole vocabulary
# (49k entries for SmolLM2) costs ~2 ms a token; the nucleus almost always lies
# inside the top few hundred tokens, so sort only those and fall back to a full
# sort when their mass falls short.
_TOP_P_HEAD = 1024


@dataclass(frozen=True, slots=True)
class Draw:
    """One sampled token and what the samplers need to know about it."""

    token: int
    base_logprob: float
    proposal_logprob: float
    entropy: float  # entropy of the base distribution (nats); nan if not asked


def log_normalizer(logits: np.ndarray) -> float:
    """log sum exp(logits), stable. ``logits``: (V,)."""
    m = float(np.max(logits))
    return m + float(np.log(np.sum(np.exp(logits - m))))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64. ``logits``: (..., V) -> (..., V)."""
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    return x - (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))


def entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy (nats) of softmax(logits), row-wise. ``logits``: (..., V) -> (...)."""
    lp = log_softmax(logits)
    return -np.sum(_plogp(lp), axis=-1)


def _plogp(lp: np.ndarray) -> np.ndarray:
    """p * log p elementwise, with 0 * log 0 = 0 (tokens with logit -inf)."""
    return np.where(np.isfinite(lp), np.exp(lp) * np.where(np.isfinite(lp), lp, 0.0), 0.0)


def top_k_values(logits: np.ndarray, k: int | None) -> np.ndarray:
    """The ``k`` largest entries of a logits row (all of them if k is None or >= V), in no particular order.

    Values, not ids: the normaliser and entropy of a top-k-renormalised
    distribution depend only on which values are kept, so ties at the k-th
    place cannot make two kernels disagree. ``logits``: (V,) -> (min(k, V),).
    """
    v = logits.shape[0]
    if k is None or k >= v:
        return logits
    return np.partition(logits, v - k)[v - k :]


def score_rows(logits: np.ndarray, tokens: np.ndarray, want_entropy: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Base log-probs of ``tokens`` under each logits row, and optionally entropies.

    ``logits``: (n, V), row i predicting ``tokens[i]``; returns ((n,), (n,) | None).
    """
    lp = log_softmax(logits)
    picked = lp[np.arange(len(tokens)), np.asarray(tokens, dtype=np.int64)]
    ent = -np.sum(_plogp(lp), axis=-1) if want_entropy else None
    return picked, ent


def _nucleus(order_vals: np.ndarray, log_z: float, top_p: float) -> int:
    """How many of the descending ``order_vals`` form the top-p nucleus.

    Keeps the smallest prefix whose mass reaches ``top_p`` (the token that
    crosses the threshold is kept). Returns len(order_vals) + 1 if the prefix
    given is too short to reach it.
    """
    cum = np.cumsum(np.exp(order_vals - log_z))
    # Tiny slack so that top_p=1.0 never drops tokens to float round-off.
    idx = int(np.searchsorted(cum, top_p - 1e-12, side="left"))
    return idx + 1 if idx < len(order_vals) else len(order_vals) + 1


def proposal_support(
    logits: np.ndarray, temperature: float, top_k: int | None, top_p: float
) -> tuple[np.ndarray | None, np.ndarray]:
    """The proposal distribution as (support ids or None for all, log-probs over it).

    ``logits``: (V,) float64. Requires temperature > 0.
    """
    # Shift by the max before dividing: a tiny temperature (1e-300) would
    # otherwise overflow to inf - inf = nan; shifted, the top token stays at 0.
    with np.errstate(over="ignore"):
        scaled = (logits - np.max(logits)) / temperature if temperature != 1.0 else logits
    vocab = scaled.shape[0]
    ids: np.ndarray | None = None
    vals = scaled
    if top_k is not None and top_k < vocab:
        ids = np.argpartition(-scaled, top_k - 1)[:top_k]
        vals = scaled[ids]
    if top_p < 1.0:
        log_z = log_normalizer(vals)
        n = vals.shape[0]
        head = min(n, _TOP_P_HEAD)
        part = np.argpartition(-vals, head - 1)[:head] if head < n else np.arange(n)
        order = part[np.argsort(-vals[part], kind="stable")]
        keep = _nucleus(vals[order], log_z, top_p)
        if keep > head:  # the nucleus is wider than the head: sort everything
            order = np.argsort(-vals, kind="stable")
            keep = min(_nucleus(vals[order], log_z, top_p), n)
        order = order[:keep]
        ids = order if ids is None else ids[order]
        vals = vals[order]
    return ids, vals - log_normalizer(vals)


_BLOCK = 256


def sample_index(w: np.ndarray, u: float) -> int:
    """Index i with probability w[i] / sum(w), by inverse CDF at ``u`` in [0, 1).

    Two levels, exact for the given weights: a cumulative sum over blocks of
    256, then over the one block that holds the quantile. A full cumulative sum
    over 49k entries costs ~10x more. ``w``: (V,) non-negative, finite.
    """
    n = w.shape[0]
    pad = (-n) % _BLOCK
    blocks = np.sum((np.concatenate([w, np.zeros(pad, w.dtype)]) if pad else w).reshape(-1, _BLOCK), axis=1, dtype=np.float64)
    outer = np.cumsum(blocks)
    target = u * outer[-1]
    b = min(int(np.searchsorted(outer, target, side="right")), len(outer) - 1)
    while blocks[b] == 0.0 and b > 0:  # u*total == total under round-off: step back to mass
        b -= 1
    inner = np.cumsum(w[b * _BLOCK : (b + 1) * _BLOCK].astype(np.float64))
    rest = target - (outer[b - 1] if b else 0.0)
    j = min(int(np.searchsorted(inner, rest, side="right")), len(inner) - 1)
    while w[b * _BLOCK + j] == 0 and j > 0:  # never return a zero-weight index at a block's end
        j -= 1
    return b * _BLOCK + j


def draw(
    logits: np.ndarray,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float,
    rng: np.random.Generator,
    want_entropy: bool,
    base_k: int | None = None,
) -> Draw:
    """Sample one token from a logits row and report its base/proposal log-probs.

    ``logits``: (V,), any float dtype. Consumes exactly one uniform from ``rng``
    unless temperature is 0 (then none), so seeded runs are reproducible
    across backends that produce the same logits. ``base_k``: report the base
    log-prob and entropy over the ``base_k`` largest logits, renormalised
    (None: the whole vocabulary); the token drawn must lie among them, which
    a proposal with ``top_k <= base_k`` guarantees.

    This runs once per generated token, so it is written for speed: one
    exponential pass over the vocabulary in float32 (numpy vectorises it; a
    float64 pass over 49k entries costs ~0.6 ms here), reused for the entropy;
    a second pass only for a tempered proposal. Sums, logs and the sampling CDF
    are float64, so log-probs are accurate to ~1e-6.
    """
    x = np.asarray(logits, dtype=np.float32)
    m = float(np.max(x))
    shifted = x - np.float32(m)
    e = np.exp(shifted)  # (V,) float32, max entry 1
    z = float(np.sum(e, dtype=np.float64))
    log_z = m + math.log(z)
    ent = float("nan")
    log_zb = log_z  # normaliser of the base distribution the log-probs are reported under
    if base_k is not None and base_k < x.shape[0]:
        head = top_k_values(x, base_k).astype(np.float64)
        log_zb = log_normalizer(head)
        if want_entropy:
            ent = float(entropy(head))
    elif want_entropy:
        with np.errstate(invalid="ignore"):
            # float64 accumulation without float64 copies of two vocabulary-sized arrays
            ent = math.log(z) - float(np.einsum("i,i->", e, shifted, dtype=np.float64)) / z
        if not math.isfinite(ent):  # masked logits (-inf) give 0 * -inf: take the safe path
            ent = float(-np.sum(_plogp(x.astype(np.float64) - log_z)))
    if temperature == 0.0:
        tok = int(np.argmax(x))
        return Draw(tok, float(x[tok]) - log_zb, 0.0, ent)
    if top_k is None and top_p >= 1.0:
        # Full-vocabulary proposal: sample from the (tempered) exponentials directly.
        if temperature == 1.0:
            w, log_zq = e, math.log(z)
        else:
            t32 = np.float32(temperature)
            # A temperature below float32's range (1e-300 from a fuzzer) would divide by 0: do that one in float64.
            with np.errstate(over="ignore"):  # -x / tiny T -> -inf -> weight 0: what a vanishing temperature means
                w = np.exp(shifted / t32) if t32 > 0 else np.exp(shifted.astype(np.float64) / temperature)
            log_zq = math.log(float(np.sum(w, dtype=np.float64)))
        tok = sample_index(w, rng.random())
        full = float(x[tok]) - log_z
        return Draw(tok, float(x[tok]) - log_zb, full if temperature == 1.0 else float(shifted[tok]) / temperature - log_zq, ent)
    ids, logq = proposal_support(x.astype(np.float64), temperature, top_k, top_p)
    cdf = np.cumsum(np.exp(logq))
    j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    j = min(j, cdf.shape[0] - 1)  # guards u*total == total under round-off
    tok = int(ids[j]) if ids is not None else j
    return Draw(tok, float(x[tok]) - log_zb, float(logq[j]), ent)
