"""The power sampler's Markov chain, computed exactly on enumerable toy models.

For a toy model every completion can be listed, so the MH transition matrix
of ``mh_step`` (same cut rules, same acceptance kernel) can be written down:
P[y, y'] = sum over cuts m of c_y(m) q(y'_suf | y_<m) A(y -> y'), plus the
rejected mass on the diagonal. Then the law of the chain after s steps is
mu_0 P^s exactly, with no sampling noise. Tests use this to check the sampler
(pi P = pi; sampled chains follow mu_0 P^s), and the mixing benchmark to
measure how fast each cut rule approaches p^alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from strop.backends.base import common_prefix_len
from strop.backends.logits import entropy, log_normalizer, proposal_support, top_k_values
from strop.backends.toy import ToyBackend
from strop.methods.power.kernels import cut_log_probs, log_acceptance, max_swap_accepts
from strop.methods.power.sampler import PowerConfig

Seq = tuple[int, ...]


@dataclass(frozen=True)
class ExactChain:
    """States (every completion under the cap) and the MH transition matrix over them."""

    states: list[Seq]
    index: dict[Seq, int]
    P: np.ndarray  # (S, S), rows sum to 1
    target: np.ndarray  # (S,) p^alpha normalised
    proposal: np.ndarray  # (S,) law of a fresh proposal draw (the chain's start)

    def law_after(self, steps: int, start: np.ndarray | None = None) -> np.ndarray:
        mu = self.proposal if start is None else start
        for _ in range(steps):
            mu = mu @ self.P
        return mu


def _power_normalise(logp: np.ndarray, alpha: float) -> np.ndarray:
    """p^alpha / sum p^alpha from sequence log-probs, stably. (S,) -> (S,)."""
    w = np.exp(alpha * (logp - logp.max()))
    return w / w.sum()


def power_target(toy: ToyBackend, prompt: Sequence[int], cap: int, alpha: float) -> dict[Seq, float]:
    """p^alpha normalised over completions of at most ``cap`` tokens."""
    logp = toy.sequence_logprobs(prompt, cap)
    keys = list(logp)
    return dict(zip(keys, _power_normalise(np.array([logp[s] for s in keys]), alpha)))


def _proposal_log_probs(row: np.ndarray, config: PowerConfig) -> np.ndarray:
    """log q over the whole vocabulary (-inf off the proposal's support) for one logits row. (V,) -> (V,)."""
    ids, logq = proposal_support(row, config.temperature, config.top_k, 1.0)
    out = np.full(row.shape[0], -np.inf)
    out[slice(None) if ids is None else ids] = logq
    return out


def _per_token(toy: ToyBackend, prompt: list[int], seq: Seq, config: PowerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token target log-probs (before the power), proposal log-probs and cut entropies of ``seq``, each (len(seq),).

    Target "topk": the base model over the k largest logits, renormalised; otherwise the whole vocabulary.
    """
    k = config.top_k if config.target == "topk" else None
    lp, lq, ent = [], [], []
    for t, tok in enumerate(seq):
        row = toy.logits(prompt + list(seq[:t]))
        head = top_k_values(row, k)
        lp.append(float(row[tok]) - log_normalizer(head))
        lq.append(float(_proposal_log_probs(row, config)[tok]))
        ent.append(float(entropy(head)))
    return np.array(lp), np.array(lq), np.array(ent)


def proposal_completions(toy: ToyBackend, context: Sequence[int], max_tokens: int, config: PowerConfig) -> dict[Seq, float]:
    """Every completion the proposal can draw (at most ``max_tokens``, or EOS) and its proposal log-probability."""
    return toy.sequence_logprobs(context, max_tokens, log_probs=lambda row: _proposal_log_probs(row, config))


def exact_chain(toy: ToyBackend, prompt: Sequence[int], cap: int, config: PowerConfig) -> ExactChain:
    """The one-block MH chain on the completions the proposal can draw, of at most ``cap`` tokens.

    Every proposal outcome is itself a completion (a state), so the moves
    from y with cut m are exactly the states y' sharing y's first m tokens,
    each proposed with probability q(y'_{m:} | y_{<m}); with per-state prefix
    sums of log p and log q every transition costs O(1). ``target`` is p^alpha
    over these states, p as ``config.target`` says; with a top-k proposal and
    the full target that is p^alpha conditioned on every token being in its
    top k (the chain never leaves the proposal's support).
    """
    prompt = list(prompt)
    states = sorted(proposal_completions(toy, prompt, cap, config))
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    per = [_per_token(toy, prompt, s, config) for s in states]
    # cum[i][m] = sum of the first m per-token values; suffix from m = cum[i][-1] - cum[i][m]
    cum_p = [np.concatenate([[0.0], np.cumsum(lp)]) for lp, _, _ in per]
    cum_q = [np.concatenate([[0.0], np.cumsum(lq)]) for _, lq, _ in per]
    log_c = [cut_log_probs(len(s), e if config.cut == "entropy" else None, config.cut, config.beta) for s, (_, _, e) in zip(states, per)]
    lens = np.array([len(s) for s in states])
    lcp = np.zeros((n, n), dtype=int)
    for i in range(n):
        for j in range(n):
            lcp[i, j] = common_prefix_len(states[i], states[j])
    P = np.zeros((n, n))
    for i in range(n):
        for m in range(lens[i]):
            c = math.exp(log_c[i][m])
            if c == 0.0:
                continue
            base_cur = cum_p[i][-1] - cum_p[i][m]
            prop_cur = cum_q[i][-1] - cum_q[i][m]
            for j in np.flatnonzero((lcp[i] >= m) & (lens > m)):
                base_new = cum_p[j][-1] - cum_p[j][m]
                prop_new = cum_q[j][-1] - cum_q[j][m]
                if config.cut == "max-swap":
                    a = 1.0 if max_swap_accepts(base_cur, base_new) else 0.0
                else:
                    log_a = log_acceptance(config.alpha, base_cur, base_new, prop_cur, prop_new, float(log_c[i][m]), float(log_c[j][m]))
                    a = math.exp(min(0.0, log_a))
                w = c * math.exp(prop_new)
                P[i, j] += w * a
                P[i, i] += w * (1.0 - a)
    # The per-state totals are already here: no second enumeration for the target.
    target = _power_normalise(np.array([cp[-1] for cp in cum_p]), config.alpha)
    q0 = np.array([math.exp(cq[-1]) for cq in cum_q])
    return ExactChain(states, index, P, target, q0)


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def block_laws(toy: ToyBackend, prompt: Sequence[int], config: PowerConfig) -> list[dict[Seq, float]]:
    """Exact law of the block-wise sampler's state after each block (what ``on_block`` sees).

    Block k: chains that ended at EOS stay; the others are extended by the
    proposal up to the cap k*B, then take ``mcmc_steps`` MH steps with the
    cap-k*B transition matrix. Mirrors ``power_sample_chain``.
    """
    prompt = list(prompt)
    n_blocks = math.ceil(config.max_tokens / config.block_size)
    law: dict[Seq, float] = {(): 1.0}
    out = []
    for k in range(1, n_blocks + 1):
        cap = min(k * config.block_size, config.max_tokens)
        chain = exact_chain(toy, prompt, cap, config)
        running = np.zeros(len(chain.states))
        frozen: dict[Seq, float] = {}
        for y, w in law.items():
            if y and y[-1] == toy.eos_id:
                frozen[y] = frozen.get(y, 0.0) + w
                continue
            for suf, lq in proposal_completions(toy, prompt + list(y), cap - len(y), config).items():
                running[chain.index[y + suf]] += w * math.exp(lq)
        mixed = chain.law_after(config.mcmc_steps, running)
        law = {s: float(p) for s, p in zip(chain.states, mixed) if p > 0}
        for y, w in frozen.items():
            law[y] = law.get(y, 0.0) + w
        out.append(law)
    return out
