"""Easier variants of arithmetic problems ("86 + 67 - 5 = ?"), with answers computed exactly.

Two transformations, each one step easier: drop an operand (one operation
fewer, never below one operation) or drop an operand's last digit (one digit
fewer), so a tree bottoms out at one-digit, one-operation sums. Results stay
non-negative, as in the arithmetic task. Nothing is evaluated as code: the
expression is read by a regular expression into integers and signs.

>>> symbolic_arithmetic_variants("86 + 67 - 5 = ?", 3, seed=0)
[('67 - 5 = ?', 62, 'drop an operand'), ('86 + 6 - 5 = ?', 87, 'drop a digit'), ('8 + 67 - 5 = ?', 70, 'drop a digit')]
"""

from __future__ import annotations

import re

import numpy as np

_EXPR = re.compile(r"^\s*(\d{1,12})((?:\s*[+-]\s*\d{1,12}){0,8})\s*=\s*\?\s*$")
_TERM = re.compile(r"([+-])\s*(\d{1,12})")
ARITH_TEMPLATE = "{expr} = ?"


def parse_expression(question: str) -> tuple[list[int], list[str]] | None:
    """(operands, signs) of "a + b - c = ?", else None."""
    m = _EXPR.match(question)
    if not m:
        return None
    signs, nums = [], [int(m.group(1))]
    for s, n in _TERM.findall(m.group(2)):
        signs.append(s)
        nums.append(int(n))
    return nums, signs


def value_of(nums: list[int], signs: list[str]) -> int:
    v = nums[0]
    for s, n in zip(signs, nums[1:]):
        v = v + n if s == "+" else v - n
    return v


def render(nums: list[int], signs: list[str]) -> str:
    return ARITH_TEMPLATE.format(expr=" ".join([str(nums[0])] + [f"{s} {n}" for s, n in zip(signs, nums[1:])]))


def symbolic_arithmetic_variants(question: str, n: int, seed: int) -> list[tuple[str, int, str]]:
    """Up to ``n`` distinct easier (question, answer, transform) variants of an arithmetic question."""
    parsed = parse_expression(question)
    if parsed is None:
        return []
    nums, signs = parsed
    options: list[tuple[list[int], list[str], str]] = []
    # Dropping an operand keeps at least one operation: "867 = ?" asks for no arithmetic at all.
    for i in range(1, len(nums) if len(nums) > 2 else 1):  # drop operand i with its sign
        options.append((nums[:i] + nums[i + 1:], signs[:i - 1] + signs[i:], "drop an operand"))
    if len(nums) > 2 and signs[0] == "+":  # drop the first operand: the second one leads, its sign must be "+"
        options.append((nums[1:], signs[1:], "drop an operand"))
    for i, v in enumerate(nums):
        if v >= 10:
            options.append((nums[:i] + [v // 10] + nums[i + 1:], signs, "drop a digit"))
    rng = np.random.default_rng(seed)
    out, seen = [], {question.strip()}
    for j in rng.permutation(len(options)):
        ns, ss, name = options[int(j)]
        q = render(ns, ss)
        value = value_of(ns, ss)
        if value >= 0 and q not in seen:
            seen.add(q)
            out.append((q, value, name))
        if len(out) == n:
            break
    return out
