"""Exact tests of the sampling kernel every local backend uses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strop.backends.logits import draw, entropy, log_softmax, proposal_support


def test_log_softmax_and_entropy_hand_values():
    logits = np.log(np.array([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(np.exp(log_softmax(logits + 7.0)), [0.5, 0.25, 0.25], atol=1e-15)
    assert entropy(logits) == pytest.approx(1.5 * math.log(2), abs=1e-12)


def test_temperature_zero_is_argmax_with_point_mass_proposal(rng):
    logits = np.array([0.1, 2.0, 1.9])
    d = draw(logits, temperature=0.0, top_k=None, top_p=1.0, rng=rng, want_entropy=True)
    assert d.token == 1 and d.proposal_logprob == 0.0
    assert d.base_logprob == pytest.approx(float(log_softmax(logits)[1]))
    assert d.entropy == pytest.approx(float(entropy(logits)))


def test_top_k_support_and_renormalisation():
    logits = np.log(np.array([0.1, 0.4, 0.3, 0.2]))
    ids, logq = proposal_support(logits, 1.0, 2, 1.0)
    assert sorted(ids.tolist()) == [1, 2]
    q = dict(zip(ids.tolist(), np.exp(logq)))
    assert q[1] == pytest.approx(0.4 / 0.7) and q[2] == pytest.approx(0.3 / 0.7)


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = np.log(np.array([0.1, 0.4, 0.3, 0.2]))
    ids, logq = proposal_support(logits, 1.0, None, 0.65)  # 0.4 < 0.65 <= 0.7
    assert ids.tolist() == [1, 2]
    ids, _ = proposal_support(logits, 1.0, None, 0.71)
    assert ids.tolist() == [1, 2, 3]


def test_top_p_beyond_the_sorted_head_falls_back_to_a_full_sort():
    logits = np.zeros(5000)  # uniform: the nucleus for 0.5 is 2500 tokens, wider than the 1024-token head
    ids, logq = proposal_support(logits, 1.0, None, 0.5)
    assert len(ids) == 2500
    np.testing.assert_allclose(np.exp(logq), 1 / 2500)


def test_temperature_scales_the_proposal():
    logits = np.log(np.array([0.8, 0.2]))
    _, logq = proposal_support(logits, 0.5, None, 1.0)  # p^2 renormalised
    np.testing.assert_allclose(np.exp(logq), [0.64 / 0.68, 0.04 / 0.68])


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, 1.0), (0.7, None, 1.0), (1.3, 3, 1.0), (1.0, None, 0.8)])
def test_draw_frequencies_match_the_reported_proposal(temperature, top_k, top_p):
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.05, 0.4, 0.25, 0.2, 0.1]))
    n = 20000
    counts = np.zeros(5)
    reported = {}
    for _ in range(n):
        d = draw(logits, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng, want_entropy=False)
        counts[d.token] += 1
        reported[d.token] = d.proposal_logprob
        assert d.base_logprob == pytest.approx(float(np.log([0.05, 0.4, 0.25, 0.2, 0.1][d.token])))
    for tok, lq in reported.items():
        # 4.5 sigma of a binomial proportion: fails by chance with probability < 1e-5
        p = math.exp(lq)
        assert abs(counts[tok] / n - p) < 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9
    assert counts.sum() == n and sum(math.exp(v) for v in reported.values()) == pytest.approx(1.0)


def test_same_rng_state_same_token():
    logits = np.random.default_rng(5).normal(size=1000)
    a = [draw(logits, temperature=1.0, top_k=None, top_p=0.9, rng=r, want_entropy=False).token for r in [np.random.default_rng(9)] * 1]
    b = [draw(logits, temperature=1.0, top_k=None, top_p=0.9, rng=np.random.default_rng(9), want_entropy=False).token]
    assert a == b


def test_sample_index_is_the_exact_inverse_cdf():
    from strop.backends.logits import sample_index

    rng = np.random.default_rng(3)
    w = rng.random(1000).astype(np.float32)
    w[rng.random(1000) < 0.3] = 0.0
    cdf = np.cumsum(w.astype(np.float64))
    for u in list(rng.random(2000)) + [0.0, 1 - 1e-16]:
        expected = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), 999)
        while w[expected] == 0:
            expected -= 1
        got = sample_index(w, u)
        assert w[got] > 0 and (got == expected or abs(cdf[got] - u * cdf[-1]) < 1e-6 * cdf[-1])


@pytest.mark.parametrize("temperature", [1e-300, 1e-40, 1e-8])
@pytest.mark.parametrize("top_k", [None, 3])
def test_a_vanishing_temperature_picks_the_argmax_without_nan(temperature, top_k):
    # Found by fuzzing the server: 1e-300 overflowed logits / T to inf - inf = nan.
    logits = np.array([0.5, 2.0, -1.0, 1.9, -np.inf], dtype=np.float32)
    for seed in range(20):
        d = draw(logits, temperature=temperature, top_k=top_k, top_p=1.0, rng=np.random.default_rng(seed), want_entropy=True)
        assert d.token == 1 and all(math.isfinite(v) for v in (d.base_logprob, d.proposal_logprob, d.entropy))
        assert d.proposal_logprob == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temperature,top_k", [(0.25, 2), (1.0, 2), (0.0, None), (1.0, None)])
def test_base_k_reports_the_top_k_renormalised_base_by_hand(temperature, top_k):
    # Power sampling's top-k target: p over the 2 likeliest tokens (0.5, 0.3), renormalised by their mass 0.8,
    # whatever the proposal (tempered top-k, greedy, or untruncated).
    logits = np.log(np.array([0.05, 0.5, 0.15, 0.3]))
    hand = {1: math.log(0.5 / 0.8), 3: math.log(0.3 / 0.8)}
    hand_entropy = -(0.625 * math.log(0.625) + 0.375 * math.log(0.375))
    seen = set()
    for seed in range(40):
        d = draw(logits, temperature=temperature, top_k=top_k, top_p=1.0, rng=np.random.default_rng(seed), want_entropy=True,
                 base_k=2)
        if d.token not in hand:  # an untruncated proposal can draw outside the target's support (never under top_k = 2)
            assert top_k is None
            continue
        seen.add(d.token)
        assert d.base_logprob == pytest.approx(hand[d.token], abs=1e-6)
        assert d.entropy == pytest.approx(hand_entropy, abs=1e-6)
        # the proposal log-prob is unchanged by base_k
        ref = draw(logits, temperature=temperature, top_k=top_k, top_p=1.0, rng=np.random.default_rng(seed), want_entropy=False)
        assert (ref.token, ref.proposal_logprob) == (d.token, d.proposal_logprob)
    assert seen == ({1} if temperature == 0.0 else {1, 3})
