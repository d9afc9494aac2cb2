"""Metrics with honest uncertainty.

>>> lo, hi = wilson_interval(30, 100)
>>> round(lo, 3), round(hi, 3)
(0.219, 0.396)
"""

from __future__ import annotations

import math
from collections.abc import Callable

from strop.verifiers.voting import group_answers, identical, winning_group


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at
    0 or n successes, which small models on hard tasks often produce.
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; round-off must not move it past the estimate.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(answers: list[str | None], correct: list[bool], same: Callable[[str, str], bool] = identical) -> bool:
    """Majority vote over answers (None does not vote; ties: first seen); correct iff the winning group was judged correct.

    ``same`` decides which answers are one vote (``strop.verifiers.voting``;
    default: identical strings). The winning group counts as correct if any
    of its answers was judged correct: with identical strings, the winner's
    verdict; with equivalence, also where the task's own check accepts only
    some forms of the value (an exact-string check takes ``4`` but not ``\\frac{8}{2}``).

    >>> majority_correct(["4", "5", "4"], [True, False, True]), majority_correct([None, None], [False, False])
    (True, False)
    """
    return majority_correct_at_k(answers, correct, same)[-1] if answers else False


def majority_correct_at_k(answers: list[str | None], correct: list[bool], same: Callable[[str, str], bool] = identical) -> list[bool]:
    """``majority_correct`` of the first k answers, for k = 1..len(answers), grouping the answers once.

    The grouping of a prefix is the prefix of the grouping (each answer's group
    depends only on the answers before it), so one pass serves every k.

    >>> majority_correct_at_k(["5", "4", "4"], [True, False, False])
    [True, True, False]
    """
    groups = group_answers(answers, same)
    out = []
    for k in range(1, len(groups) + 1):
        best = winning_group(groups[:k])
        out.append(best is not None and any(ok for g, ok in zip(groups[:k], correct) if g == best))
    return out


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes of two methods on the same problems.

    ``only_a``: problems only method A got right; ``only_b``: only B. Problems both (or neither) got
    right carry no information about which is better. Paired, so far more sensitive than comparing
    two accuracies' intervals.

    >>> round(mcnemar_exact(20, 5), 4), mcnemar_exact(3, 3)
    (0.0041, 1.0)
    """
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2**n)
