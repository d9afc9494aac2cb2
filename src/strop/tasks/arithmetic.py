"""A procedural arithmetic task with difficulty levels and checked answers.

Problems come from a seeded generator, so a benchmark is reproducible and
never overlaps a training set drawn from another seed. Difficulty is the
number of digits per operand and the number of operations.

>>> [p.question for p in arithmetic_problems(2, seed=0, digits=2)]
['What is 86 + 67?', 'What is 56 + 34?']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strop.errors import ConfigError
from strop.verifiers.extract import extract_answer

OPS = ("+", "-")


@dataclass(frozen=True)
class ArithmeticProblem:
    id: str
    question: str
    answer: int
    digits: int
    ops: int

    @property
    def level(self) -> str:
        return f"d{self.digits}o{self.ops}"

    def check(self, completion: str) -> bool:
        """True iff the completion's final answer is exactly this problem's answer."""
        got = extract_answer(completion)
        return got is not None and got == str(self.answer)


def arithmetic_problems(
    n: int, *, seed: int, digits: int = 2, ops: int = 1, allow_negative: bool = False, template: str = "What is {expr}?"
) -> list[ArithmeticProblem]:
    """``n`` problems of ``ops`` operations on ``digits``-digit operands, from ``seed``.

    ``template`` words the question around the expression (``{expr}``); the
    embedded model does best on the terse "{expr} = ?".
    """
    if "{expr}" not in template:
        raise ConfigError(f"template must contain '{{expr}}', got {template!r}")
    if n < 0 or digits < 1 or ops < 1:
        raise ConfigError(f"need n >= 0, digits >= 1, ops >= 1; got n={n}, digits={digits}, ops={ops}")
    rng = np.random.default_rng(seed)
    lo, hi = (10 ** (digits - 1) if digits > 1 else 0), 10**digits
    out = []
    while len(out) < n:
        nums = [int(x) for x in rng.integers(lo, hi, size=ops + 1)]
        signs = [OPS[int(i)] for i in rng.integers(0, len(OPS), size=ops)] if ops > 1 or allow_negative else ["+"] * ops
        value = nums[0]
        for s, x in zip(signs, nums[1:]):
            value = value + x if s == "+" else value - x
        if value < 0 and not allow_negative:
            continue
        expr = " ".join([str(nums[0])] + [f"{s} {x}" for s, x in zip(signs, nums[1:])])
        out.append(ArithmeticProblem(f"arith-s{seed}-d{digits}o{ops}-{len(out)}", template.format(expr=expr), value, digits, ops))
    return out
