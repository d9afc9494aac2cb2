r"""Majority vote over extracted answers: which answers are one vote, and which answer wins.

Two ways to decide that two answers are the same vote (``VOTES``):

- ``"equivalence"`` (the default): math-verify finds that each states the
  other's value (``0.5`` and ``\frac{1}{2}``, ``2`` and ``2.0``, ``1, 3`` and
  ``3, 1``), checked in a killable checker process
  (``math_answer.equivalent_answers``); ``EquivalenceCache`` makes each
  distinct pair of strings one check, however many votes compare it.
- ``"string"``: identical strings only (the extractor has already
  normalised numbers: ``1,000`` and ``1000``, ``2.50`` and ``2.5``).

The kernel, ``group_answers``, takes the relation as a plain callable, so it
is tested exactly with any relation and no checker process.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from strop.errors import ConfigError

Same = Callable[[str, str], bool]
#: Vote modes, the default first.
VOTES = ("equivalence", "string")


def check_vote(vote: str) -> str:
    """``vote`` if it names a vote mode, else a ConfigError naming it."""
    if vote not in VOTES:
        raise ConfigError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
    return vote


def group_answers(answers: Sequence[str | None], same: Same) -> list[int | None]:
    """The group of each answer (None for None), groups numbered in order of first appearance.

    Each answer joins the first group whose first member it is ``same`` as
    (called as ``same(first_member, answer)``), else it starts a group.
    Identical strings share a group without a call. Comparing with each
    group's first member, rather than merging every related pair, keeps a
    relation that is not transitive (numeric tolerance: 0.333 ~ 1/3 ~ 0.3333)
    from chaining distinct values into one group, and makes the grouping
    depend only on the answers' order.

    >>> group_answers(["4", None, "5", "4.0", "5"], lambda a, b: float(a) == float(b))
    [0, None, 1, 0, 1]
    """
    firsts: list[str] = []
    known: dict[str, int] = {}
    out: list[int | None] = []
    for a in answers:
        if a is None:
            out.append(None)
            continue
        g = known.get(a)
        if g is None:
            g = next((i for i, first in enumerate(firsts) if same(first, a)), None)
            if g is None:
                g = len(firsts)
                firsts.append(a)
            known[a] = g
        out.append(g)
    return out


def winning_group(groups: Sequence[int | None]) -> int | None:
    """The largest group (ties: the one seen first), or None when no answer voted.

    >>> winning_group([0, 1, 1, None, 0, 2]), winning_group([None])
    (0, None)
    """
    counts = Counter(g for g in groups if g is not None)
    if not counts:
        return None
    return min(counts, key=lambda g: (-counts[g], groups.index(g)))


def majority_vote(answers: Sequence[str | None], same: Same) -> int | None:
    """Index of the answer a majority vote picks: the first member of the winning group; None if none voted.

    >>> majority_vote(["7", "0.5", "1/2"], lambda a, b: {a, b} == {"0.5", "1/2"})
    1
    """
    groups = group_answers(answers, same)
    best = winning_group(groups)
    return None if best is None else groups.index(best)


def identical(a: str, b: str) -> bool:
    """String grouping's relation: only identical strings are one vote."""
    return a == b


class EquivalenceCache:
    """A ``same`` for ``group_answers`` that checks each unordered pair of distinct strings once; thread-safe.

    ``check`` must be symmetric; it defaults to ``equivalent_answers``
    (math-verify both ways, in a checker process). ``calls`` counts the
    checks made. A pair asked for by two threads at once is checked once:
    the second waits for the first's verdict.
    """

    def __init__(self, check: Same | None = None) -> None:
        if check is None:
            from strop.verifiers.math_answer import equivalent_answers

            check = equivalent_answers
        self._check = check
        self._known: dict[tuple[str, str], Future[bool]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, a: str, b: str) -> bool:
        if a == b:
            return True
        key = (a, b) if a < b else (b, a)
        with self._lock:
            verdict = self._known.get(key)
            mine = verdict is None
            if mine:
                verdict = self._known[key] = Future()
                self.calls += 1
        assert verdict is not None
        if mine:
            try:
                verdict.set_result(bool(self._check(*key)))
            except BaseException as e:
                verdict.set_exception(e)
                raise
        return verdict.result()


def vote_relation(vote: str) -> Same:
    """The relation of a vote mode: a fresh ``EquivalenceCache`` for "equivalence", ``identical`` for "string"."""
    return EquivalenceCache() if check_vote(vote) == "equivalence" else identical
