"""Countdown: an arithmetic expression using each given number exactly once must equal the target.

The expression is parsed with ``ast`` and evaluated by a tiny interpreter that
knows only + - * / on numbers (exact fractions): nothing the model writes is
ever executed, and exponentiation (the road to huge numbers) is refused.

>>> verify_countdown([3, 5, 7], 26, "<answer>3 * 7 + 5</answer>").verdict.value
'correct'
>>> verify_countdown([3, 5, 7], 26, "<answer>3 * 7 + 5 + 5</answer>").detail
'uses numbers [3, 5, 5, 7], must use each of [3, 5, 7] exactly once'
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from fractions import Fraction

from strop.backends.thinking import strip_thinking
from strop.verifiers.base import Verdict, Verification
from strop.verifiers.extract import MAX_SCAN_CHARS

MAX_EXPR_CHARS = 200
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


class _Refused(ValueError):
    pass


def _eval(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body, used)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left, used), _eval(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise _Refused("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        raise _Refused("unary minus is not allowed")
    raise _Refused(f"'{type(node).__name__}' is not allowed (only + - * / and the given integers)")


def extract_expression(completion: str) -> str | None:
    """The last <answer>...</answer>, else the last line that has a digit (its left side if it has '=')."""
    text = strip_thinking(completion)[-MAX_SCAN_CHARS:]
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    for line in reversed(text.strip().splitlines()):
        if any(c.isdigit() for c in line):
            return line.split("=")[0].strip()
    return None


def verify_countdown(numbers: Sequence[int], target: int, completion: str) -> Verification:
    expr = extract_expression(completion)
    if expr is None:
        return Verification(Verdict.INCORRECT, "no expression found")
    if len(expr) > MAX_EXPR_CHARS:
        return Verification(Verdict.INCORRECT, f"expression longer than {MAX_EXPR_CHARS} characters", expr[:50])
    try:
        used: list[int] = []
        value = _eval(ast.parse(expr.replace("×", "*").replace("÷", "/"), mode="eval"), used)
    except (SyntaxError, _Refused, RecursionError, MemoryError, ValueError) as e:
        return Verification(Verdict.INCORRECT, f"not a valid expression: {str(e)[:100]}", expr)
    if sorted(used) != sorted(numbers):
        return Verification(Verdict.INCORRECT, f"uses numbers {sorted(used)}, must use each of {sorted(numbers)} exactly once", expr)
    ok = value == target
    return Verification(Verdict.CORRECT if ok else Verdict.INCORRECT, "" if ok else f"evaluates to {value}, not {target}", expr)
