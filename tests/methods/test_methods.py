"""Baseline methods on the toy backend, where every outcome is known."""

from __future__ import annotations

import numpy as np
import pytest

from strop.backends import SamplingParams
from strop.backends.toy import ToyBackend
from strop.errors import ConfigError, UnknownNameError
from strop.methods import get_method, method_names


def digits_toy() -> ToyBackend:
    # Answers "1" w.p. 0.4, "2" w.p. 0.35, "3" w.p. 0.25, then EOS.
    table = {("Q",): {"1": 0.4, "2": 0.35, "3": 0.25}, ("1",): {"$": 1.0}, ("2",): {"$": 1.0}, ("3",): {"$": 1.0}}
    return ToyBackend.from_table(["Q", "1", "2", "3", "$"], table, eos="$", order=1)


def test_registry_names_and_unknown_method():
    assert {"greedy", "sample", "best-of-n", "majority"} <= set(method_names())
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        get_method("nope")


def test_greedy_answers_the_mode():
    toy = digits_toy()
    r = get_method("greedy")(toy, toy.tokenize("Q"), np.random.default_rng(0))
    assert r.answer == "1" and r.decoded_tokens == 2


def test_majority_picks_the_most_common_answer_and_counts_all_tokens():
    toy = digits_toy()
    r = get_method("majority")(toy, toy.tokenize("Q"), np.random.default_rng(0), n=301, params=SamplingParams(max_tokens=4))
    votes = r.stats["votes"]
    assert r.answer == max(votes, key=votes.get) and sum(votes.values()) == 301
    assert r.answer == "1"  # 0.4 vs 0.35 over 301 draws: wrong with probability < 1e-3
    assert r.decoded_tokens == 2 * 301 and r.candidates[r.chosen].text == "1"


def test_best_of_n_picks_the_highest_mean_loglik():
    toy = digits_toy()
    r = get_method("best-of-n")(toy, toy.tokenize("Q"), np.random.default_rng(1), n=16)
    best = max(r.stats["scores"])
    assert r.stats["scores"][r.chosen] == best and r.answer == "1"


def test_sample_counts_are_reproducible_and_children_rngs_independent_of_batching():
    toy = digits_toy()
    a = get_method("majority")(toy, toy.tokenize("Q"), np.random.default_rng(5), n=8)
    b = get_method("majority")(toy, toy.tokenize("Q"), np.random.default_rng(5), n=8)
    assert [g.token_ids for g in a.candidates] == [g.token_ids for g in b.candidates]


def test_bad_n_is_a_config_error():
    toy = digits_toy()
    with pytest.raises(ConfigError, match="n must be"):
        get_method("majority")(toy, toy.tokenize("Q"), np.random.default_rng(0), n=0)


def _scripted_majority(texts: list[str], **kwargs):
    """Majority vote over completions we write, no backend: send them to the step machine."""
    from strop.backends.base import Generation
    from strop.methods.basic import majority

    m = majority(None, [1, 2, 3], np.random.default_rng(0), n=len(texts), **kwargs)  # type: ignore[arg-type] - no model needed
    next(m)
    with pytest.raises(StopIteration) as end:
        m.send([Generation((1,), t, np.zeros(1), np.zeros(1), None, "eos", 3) for t in texts])
    return end.value.value


# Five samples: three write one half three ways, two write 3.
HALVES = ["so p = \\boxed{0.5}", "\\boxed{3}", "p = \\boxed{\\frac{1}{2}}", "the answer is \\boxed{3}", "\\boxed{1/2}"]


def test_majority_votes_by_equivalence_by_default():
    r = _scripted_majority(HALVES)
    assert r.answer == "0.5" and r.chosen == 0 and r.stats["votes"] == {"0.5": 3, "3": 2}
    assert r.config["vote"] == "equivalence"


def test_majority_by_string_keeps_each_form_a_vote_of_its_own():
    r = _scripted_majority(HALVES, vote="string")
    assert r.answer == "3" and r.chosen == 1 and r.stats["votes"] == {"0.5": 1, "3": 2, "\\frac{1}{2}": 1, "1/2": 1}
    assert r.config["vote"] == "string"


def test_majority_vote_setting_flows_from_flat_options_and_is_checked():
    from strop.methods import method_settings

    assert method_settings("majority")["vote"] == "equivalence"
    assert method_settings("majority", vote="string")["vote"] == "string"
    with pytest.raises(ConfigError, match="vote must be one of equivalence, string, got 'mode'"):
        method_settings("majority", vote="mode")
    toy = digits_toy()
    with pytest.raises(ConfigError, match="vote must be one of"):
        get_method("majority")(toy, toy.tokenize("Q"), np.random.default_rng(0), n=2, vote="mode")
