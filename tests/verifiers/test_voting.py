"""Majority vote: the grouping kernel with explicit relations, its cache, and real equivalent answer forms through math-verify."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from strop.errors import ConfigError
from strop.evaluation.metrics import majority_correct, majority_correct_at_k
from strop.verifiers.math_answer import equivalent_answers
from strop.verifiers.voting import EquivalenceCache, check_vote, group_answers, identical, majority_vote, vote_relation, winning_group


def relation(*pairs: tuple[str, str]):
    """A symmetric relation given by its pairs, counting its calls."""
    related = {frozenset(p) for p in pairs}

    def same(a: str, b: str) -> bool:
        same.calls.append((a, b))
        return a == b or frozenset((a, b)) in related

    same.calls = []
    return same


# ------------------------------------------------------------ the kernel, exactly


def test_groups_follow_the_relation_and_number_groups_by_first_appearance():
    same = relation(("0.5", "1/2"), ("2", "2.0"))
    assert group_answers(["2", "0.5", None, "1/2", "2.0", "7", "0.5"], same) == [0, 1, None, 1, 0, 2, 1]
    assert group_answers(["2", "0.5", None, "1/2", "2.0", "7", "0.5"], identical) == [0, 1, None, 2, 3, 4, 1]
    assert group_answers([], same) == [] and group_answers([None, None], same) == [None, None]


def test_each_answer_is_compared_with_each_group_first_member_once_and_identical_strings_never():
    same = relation(("a", "b"))
    assert group_answers(["a", "c", "b", "c", "a", "b", "d"], same) == [0, 1, 0, 1, 0, 0, 2]
    # c vs a; b vs a (joins); d vs a, d vs c. Repeats of a, b and c reuse their group without a call.
    assert same.calls == [("a", "c"), ("a", "b"), ("a", "d"), ("c", "d")]


def test_a_relation_that_is_not_transitive_does_not_chain_groups():
    # Numeric tolerance is like this: 0.333 ~ 1/3 and 1/3 ~ 0.3333 need not make 0.333 ~ 0.3333.
    same = relation(("0.333", "1/3"), ("1/3", "0.3333"))
    assert group_answers(["0.333", "1/3", "0.3333"], same) == [0, 0, 1]
    assert group_answers(["1/3", "0.333", "0.3333"], same) == [0, 0, 0]


def test_the_winner_is_the_largest_group_ties_go_to_the_group_seen_first():
    assert winning_group([0, 1, 1, None, 0, 2]) == 0
    assert winning_group([0, 1, 1]) == 1
    assert winning_group([None, None]) is None and winning_group([]) is None
    same = relation(("0.5", "1/2"), ("0.5", "\\frac{1}{2}"), ("1/2", "\\frac{1}{2}"))
    # Three forms of one half outvote two identical threes; the first form stands for the group.
    answers = ["3", "0.5", "3", "1/2", "\\frac{1}{2}"]
    assert majority_vote(answers, same) == 1
    assert majority_vote(answers, identical) == 0
    assert majority_vote([None, None], same) is None


def test_majority_correct_counts_the_winning_group_as_correct_if_any_member_was_judged_correct():
    same = relation(("4", "\\frac{8}{2}"))
    # An exact-string check accepted "4" only; the group {4, 8/2} wins by equivalence and is correct.
    answers, verdicts = ["\\frac{8}{2}", "5", "4", "5"], [False, False, True, False]
    assert majority_correct(answers, verdicts, same) is True
    assert majority_correct(answers, verdicts) is False  # by string: "5" wins, two votes to one
    assert majority_correct([], []) is False


@pytest.mark.parametrize("same", [identical, relation(("a", "b")), relation(("a", "b"), ("b", "c"))])
def test_majority_at_every_k_equals_the_vote_over_each_prefix(same):
    # Exhaustive over short sequences: one grouping pass gives what a vote over each prefix alone gives.
    for n in range(1, 5):
        for answers in itertools.product(["a", "b", "c", None], repeat=n):
            for verdicts in itertools.product([False, True], repeat=n):
                want = [majority_correct(list(answers[:k]), list(verdicts[:k]), same) for k in range(1, n + 1)]
                assert majority_correct_at_k(list(answers), list(verdicts), same) == want, (answers, verdicts)


def test_vote_modes_are_checked_by_name():
    assert check_vote("string") == "string" and vote_relation("string") is identical
    assert isinstance(vote_relation("equivalence"), EquivalenceCache)
    with pytest.raises(ConfigError, match="vote must be one of equivalence, string, got 'strings'"):
        check_vote("strings")


# ------------------------------------------------------------ the cache


def test_the_cache_checks_each_unordered_pair_once_across_threads():
    seen: list[tuple[str, str]] = []

    def check(a: str, b: str) -> bool:
        seen.append((a, b))
        return {a, b} == {"0.5", "1/2"}

    cache = EquivalenceCache(check)
    values = ["0.5", "1/2", "2", "2.0", "7"]
    pairs = [(a, b) for a in values for b in values] * 40  # both orders, identical pairs, many repeats
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda ab: cache(*ab), pairs))
    assert got == [a == b or {a, b} == {"0.5", "1/2"} for a, b in pairs]
    assert sorted(seen) == sorted({tuple(sorted(p)) for p in pairs if p[0] != p[1]}) and cache.calls == 10


def test_a_failing_check_is_raised_not_cached_as_a_verdict():
    def check(a: str, b: str) -> bool:
        raise RuntimeError("checker broke")

    cache = EquivalenceCache(check)
    with pytest.raises(RuntimeError, match="checker broke"):
        cache("1", "2")
    with pytest.raises(RuntimeError, match="checker broke"):
        cache("2", "1")


# ------------------------------------------------------------ real forms, through math-verify in a checker process


@pytest.mark.parametrize(
    "a,b,same",
    [
        ("0.5", "\\frac{1}{2}", True),
        ("2", "2.0", True),
        ("1/2", "0.5", True),
        ("\\frac{x^{2}}{2}", "x^2/2", True),
        ("1, 3", "3, 1", True),  # a solution set in either order (what final_boxes makes of two boxes)
        ("(2, 2), (6, 2)", "(6, 2), (2, 2)", True),
        ("x = 1, y = 2", "y = 2, x = 1", True),
        ("10\\%", "0.1", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("4", "5", False),
        ("\\frac{1}{3}", "0.333", False),  # a rounded value is a different vote
        ("1, 3", "1, 3, 5", False),
        ("5", "4, 5", False),  # a hedge is not a vote for its last candidate
        ("\\text{yes}", "\\text{no}", False),
        ("x^2 + 1", "x^2 - 1", False),
        ("no idea", "\\frac{1}{2}", False),  # unparsable: a vote of its own
        ("1" * 2000, "1" * 2001, False),  # too long to check
    ],
)
def test_equivalent_answers_on_real_forms(a, b, same):
    assert equivalent_answers(a, b) is same and equivalent_answers(b, a) is same


def test_equivalence_votes_merge_forms_that_string_votes_split():
    answers = ["3", "0.5", "3", "\\frac{1}{2}", "2.0", "1/2", "2"]
    cache = EquivalenceCache()
    assert group_answers(answers, cache) == [0, 1, 0, 1, 2, 1, 2]
    assert majority_vote(answers, cache) == 1 and majority_vote(answers, identical) == 0
    # Each new distinct answer against each earlier group's first member: 1 + 2 + 2 + 2 + 3 checks.
    assert cache.calls == 10
    assert group_answers(answers, cache) == [0, 1, 0, 1, 2, 1, 2] and cache.calls == 10  # again: all cached


def test_hostile_answers_keep_separate_votes_within_the_limit():
    tower = "9^{9^{9^{9^{9^{9}}}}}"
    assert equivalent_answers(tower, "9", timeout_s=2.0) is False
    assert group_answers([tower, "9", tower], EquivalenceCache()) == [0, 1, 0]
