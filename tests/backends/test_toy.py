"""The toy backend: exact enumeration, and the Backend contract checked exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import empirical, tv_distance
from strop.backends import SamplingParams
from strop.backends.toy import ToyBackend
from strop.errors import ConfigError


def test_sequence_probabilities_sum_to_one(toy):
    for max_tokens in (1, 2, 5, 8):
        probs = toy.sequence_logprobs(toy.tokenize("q"), max_tokens)
        assert sum(math.exp(v) for v in probs.values()) == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_sequence_probabilities(toy):
    probs = {toy.detokenize(k): math.exp(v) for k, v in toy.sequence_logprobs(toy.tokenize("q"), 2).items()}
    assert probs["$"] == pytest.approx(0.1)
    assert probs["a$"] == pytest.approx(0.3)
    assert probs["aa"] == pytest.approx(0.3)  # cut off by length
    assert probs["ba"] == pytest.approx(0.09)


def sample_vs_exact(toy, prompt, max_tokens, seed, n=6000, temperature=1.0):
    """TV distance between ``n`` sampled completions and the enumerated distribution, and the samples."""
    exact = {k: math.exp(v) for k, v in toy.sequence_logprobs(prompt, max_tokens, temperature=temperature).items()}
    rng = np.random.default_rng(seed)
    gens = [toy.generate(prompt, SamplingParams(max_tokens=max_tokens, temperature=temperature), rng) for _ in range(n)]
    return tv_distance(empirical([g.token_ids for g in gens]), exact), gens, exact


# TV of an empirical distribution over <= 30 outcomes from 5000+ draws is ~0.03 in expectation.
TV_TOL = 0.05


def test_generation_matches_enumerated_distribution(toy):
    prompt = toy.tokenize("q")
    tv, gens, exact = sample_vs_exact(toy, prompt, 4, seed=7)
    assert tv < TV_TOL
    for g in gens[:50]:
        assert g.base_logprobs.sum() == pytest.approx(math.log(exact[g.token_ids]))
        assert g.base_logprobs.sum() == pytest.approx(float(toy.score(prompt, g.token_ids).logprobs.sum()))


def test_tempered_generation_matches_enumerated_tempered_distribution(toy):
    tv, gens, exact = sample_vs_exact(toy, toy.tokenize("q"), 3, seed=8, temperature=0.5)
    assert tv < TV_TOL
    for g in gens[:50]:
        assert g.proposal_logprobs.sum() == pytest.approx(math.log(exact[g.token_ids]))


def test_prefix_continuation_is_the_conditional_distribution(toy):
    # Continuing "q b" must give p(. | q b), the enumerated conditional.
    tv, _, _ = sample_vs_exact(toy, toy.tokenize("qb"), 3, seed=11, n=5000)
    assert tv < TV_TOL


def test_result_shape(toy):
    g = toy.generate(toy.tokenize("q"), SamplingParams(max_tokens=6, return_entropy=True), np.random.default_rng(0))
    n = g.completion_tokens
    assert n >= 1 and g.base_logprobs.shape == g.proposal_logprobs.shape == g.entropies.shape == (n,)
    assert g.finish_reason in ("eos", "length") and g.prompt_tokens == 1
    assert (g.finish_reason == "eos") == (g.token_ids[-1] == toy.eos_id)
    assert "$" not in g.text  # EOS is in the ids, not the text


def test_same_seed_same_tokens_and_greedy_is_deterministic(toy):
    p = toy.tokenize("q")
    a = toy.generate(p, SamplingParams(max_tokens=8), np.random.default_rng(3))
    b = toy.generate(p, SamplingParams(max_tokens=8), np.random.default_rng(3))
    assert a.token_ids == b.token_ids
    greedy = {toy.generate(p, SamplingParams(max_tokens=8, temperature=0), np.random.default_rng(s)).token_ids for s in range(5)}
    # After "a", "a" and "$" tie at 0.5: argmax takes the lower id, so greedy repeats "a".
    assert greedy == {tuple(toy.tokenize("a" * 8))}


def test_stop_strings_cut_text(toy):
    g = toy.generate(toy.tokenize("q"), SamplingParams(max_tokens=8, temperature=0, stop=("a",)), np.random.default_rng(0))
    assert g.finish_reason == "stop" and g.text == ""


def test_table_validation():
    with pytest.raises(ConfigError, match="sum"):
        ToyBackend.from_table(["a", "$"], {(): {"a": 0.5}}, eos="$")
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        ToyBackend.from_table(["a", "$"], {(): {"z": 1.0}}, eos="$")
    with pytest.raises(ConfigError, match="eos"):
        ToyBackend(["a", "b"], lambda c: np.zeros(2), eos="$")


def test_context_overflow_is_a_clear_error():
    from strop.errors import ContextOverflowError

    toy = ToyBackend(["a", "$"], lambda c: np.zeros(2), eos="$", context_length=4)
    with pytest.raises(ContextOverflowError, match="context holds 4"):
        toy.generate([0, 0, 0, 0], SamplingParams(max_tokens=2), np.random.default_rng(0))
    g = toy.generate([0, 0, 0], SamplingParams(max_tokens=10, temperature=0), np.random.default_rng(0))
    assert g.completion_tokens == 1 and g.finish_reason == "length"
