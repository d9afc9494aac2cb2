"""Math answers: the final answer of a completion vs the gold answer, with math-verify.

math-verify is asymmetric: ``verify(gold, prediction)`` treats the first
argument as the reference, so the gold answer always goes first. Parsing and
comparison run in a killable checker process (``isolation.run_isolated``: a
warm pool with math-verify already imported), since SymPy can hang on hostile
input and math-verify's own ``signal.alarm`` timeout only works in the main thread.
``equivalent_answers`` compares two extracted answers the same way (for
majority vote, ``strop.verifiers.voting``).

>>> verify_math("\\\\frac{1}{2}", "so the answer is $\\\\boxed{0.5}$").verdict.value
'correct'
>>> verify_math("42", "I think it is \\\\boxed{41}").verdict.value
'incorrect'
"""

from __future__ import annotations

import re

from strop.backends.thinking import strip_thinking
from strop.verifiers.answer_shape import choice_letter, chosen_letter, shape_mismatch
from strop.verifiers.base import Verdict, Verification
from strop.verifiers.extract import MAX_SCAN_CHARS, final_boxes
from strop.verifiers.isolation import run_isolated

# What math-verify reads off an unboxed output that only restates the question ("What's 81 + 10?"): it evaluates the
# expression, so the question's own numbers would be graded as the answer. Plain integers joined by + - * are not a
# final answer (found by the audit on the embedded model's outputs, docs/evaluation.md); a quotient is: 1/2.
_RESTATED = re.compile(r"\s*-?\d+(?:\s*[-+*]\s*-?\d+)+\s*\.?\s*")

# A unit written in \text{} after a number ("5 \text{ bags}", "\text{5 bags}"). math-verify drops a lone trailing
# unit, but inside an equation or a fraction it reads the word as a symbol, so "550/110 = 5 \text{ bags}" was 5*bags,
# not 5 (found on the 1.5B model's GSM8K outputs cut by the token cap, docs/evaluation.md). Words that join answers
# ("1 \text{ or } 2", "x \text{ if } ...") are not units and stay.
_UNIT_WORDS = r"[A-Za-z][A-Za-z /.\-]*"
_POWER = r"(?:\s*\^\s*(?:\{\s*\d+\s*\}|\d))?"  # cm^2 goes with its unit: 5 \text{ cm}^2 is 5, not 5^2
_UNIT_AFTER = re.compile(r"(?<=[\d}])\s*\\(?:text|textrm|mbox)\s*\{\s*(" + _UNIT_WORDS + r")\}" + _POWER)
_NUMBER_WITH_UNIT = re.compile(r"\\(?:text|textrm|mbox)\s*\{\s*(-?\d[\d.,]*)\s+(" + _UNIT_WORDS + r")\}" + _POWER)
_JOINING = frozenset("and or if when where otherwise else for with but then so is are".split())


def drop_units(s: str) -> str:
    r"""``s`` with unit words after numbers removed: ``\frac{550 \text{ cups}}{110 \text{ cups/bag}} = 5 \text{ bags}``
    reads ``\frac{550}{110} = 5``; ``\text{5 bags}`` and ``5 \text{ cm}^2`` read ``5``; ``1 \text{ or } 2`` is unchanged.

    >>> drop_units(r"\boxed{\text{5 bags}} and 3 \text{ or } 4")
    '\\boxed{5} and 3 \\text{ or } 4'
    """

    def unit(m: re.Match[str], keep: str) -> str:
        words = set(re.findall(r"[A-Za-z]+", m.group(m.lastindex or 0).lower()))
        return m.group(0) if words & _JOINING else keep.format(*m.groups())

    s = _NUMBER_WITH_UNIT.sub(lambda m: unit(m, "{0}"), s)
    return _UNIT_AFTER.sub(lambda m: unit(m, ""), s)


# A final answer longer than this is not an answer; refusing it keeps SymPy
# away from megabyte expressions.
MAX_ANSWER_CHARS = 1000


def _as_math(s: str) -> str:
    """A bare answer as LaTeX maths for math-verify's parser (``$...$``); text already delimited or boxed as it is."""
    return s if "$" in s or "\\boxed" in s else f"${s}$"


def _compare(gold: str, answer: str) -> tuple[bool, str]:  # runs in the child
    import logging

    from math_verify import parse, verify

    # math-verify warns that its own timeout is off; the killable child process is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    g = parse(_as_math(gold), parsing_timeout=None)
    p = parse(answer, parsing_timeout=None)
    if not p:
        return False, "unparsable"
    return bool(verify(g, p, timeout_seconds=None)), str(p[-1])[:200]


def _same(a: str, b: str) -> bool:  # runs in the child
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    pa, pb = (parse(_as_math(x), parsing_timeout=None) for x in (a, b))
    # verify is asymmetric (its first argument is the reference); a vote is shared only when each answer accepts the other.
    return bool(pa and pb and verify(pa, pb, timeout_seconds=None) and verify(pb, pa, timeout_seconds=None))


def equivalent_answers(a: str, b: str, *, timeout_s: float = 5.0) -> bool:
    """Do two extracted answers state the same value (math-verify both ways, in a checker process)?

    For grouping votes (``strop.verifiers.voting``). Identical strings are
    equivalent without a check; an answer that does not parse, a check that
    times out or fails, and answers longer than ``MAX_ANSWER_CHARS`` are not
    equivalent to anything else, so such answers keep separate votes, as
    string grouping gives them.
    """
    if a == b:
        return True
    if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS or shape_mismatch(a, b):
        return False
    out = run_isolated(_same, (drop_units(a), drop_units(b)), timeout_s=timeout_s, memory_mb=2048)
    return bool(out.ok and out.value)


def _math_verify_default(gold: str, output: str) -> tuple[bool, str | None]:  # runs in a checker process
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # The gold answer is LaTeX maths, as datasets store it: parsed in $...$, as Math-Verify's README calls it.
    g = parse(_as_math(gold), parsing_timeout=None) or parse(gold, parsing_timeout=None)
    p = parse(output, parsing_timeout=None)
    if not p:
        return False, None
    return bool(g and verify(g, p, timeout_seconds=None)), str(p[-1])[:200]


def math_verify_default(gold: str, output: str, *, timeout_s: float = 5.0) -> Verification:
    """Math-Verify's verdict with its default parse and verify (no strop extraction), in a killable checker process."""
    out = run_isolated(_math_verify_default, (gold, output[-MAX_SCAN_CHARS:]), timeout_s=timeout_s, memory_mb=2048)
    if out.timed_out:
        return Verification(Verdict.TIMEOUT, f"no verdict within {timeout_s} CPU seconds")
    if not out.ok:
        return Verification(Verdict.UNVERIFIABLE, out.error)
    same, parsed = out.value
    if parsed is None:
        return Verification(Verdict.INCORRECT, "no answer found")
    return Verification(Verdict.CORRECT if same else Verdict.INCORRECT, "", parsed)


def warm_up() -> None:  # runs in a checker process when it starts (isolation.DEFAULT_PRELOAD)
    """Import math-verify and build its LaTeX parser once, so the first answer checked is not the slow one."""
    _compare("\\frac{1}{2}", "$\\boxed{0.5}$")


def verify_math(gold: str, completion: str, *, timeout_s: float = 5.0) -> Verification:
    r"""Is the completion's final (boxed, else last $...$ or number) answer equal to ``gold``?

    Several boxes in a row are one answer, a list (``extract.final_boxes``):
    ``\boxed{(2, 2)} \text{ and } \boxed{(6, 2)}`` is read as ``\boxed{(2, 2), (6, 2)}``,
    which math-verify compares as a set (tuples, ``x = 1, y = 2``, ``1, 3``).
    So a list is right only where the gold answer is one: hedging, one box per
    candidate for a single answer (``\boxed{4} or \boxed{5}`` for 5), is wrong
    whichever candidate is right, and so is a hedge (``\boxed{4} or maybe
    \boxed{5}``). A box, then other text, then another box is a draft and its
    correction: only the last run counts.

    Before values are compared (``answer_shape``): a gold answer that is one
    option letter is matched by the letter the completion chooses (``Answer: (B)``,
    ``B) 42``, ``\boxed{B}``); and an answer bracketed differently from the gold
    one (a set for a pair, ``[0, 1]`` for ``(0, 1)``) is incorrect whatever its elements.
    """
    text = strip_thinking(completion)[-MAX_SCAN_CHARS:]
    letter = choice_letter(gold) if len(gold) <= MAX_ANSWER_CHARS else None
    if letter is not None:
        chosen = chosen_letter(text)
        if chosen is None:
            return Verification(Verdict.INCORRECT, "no option chosen", None)
        return Verification(Verdict.CORRECT if chosen == letter else Verdict.INCORRECT, "multiple choice", chosen)
    boxes = final_boxes(text)
    boxed = ", ".join(boxes) if boxes else None
    answer = f"$\\boxed{{{boxed}}}$" if boxed is not None else text[-MAX_ANSWER_CHARS:]
    if boxed is not None and len(boxed) > MAX_ANSWER_CHARS:
        return Verification(Verdict.UNVERIFIABLE, f"answer longer than {MAX_ANSWER_CHARS} characters")
    mismatch = shape_mismatch(gold, boxed) if boxed is not None and len(gold) <= MAX_ANSWER_CHARS else None
    if mismatch:
        return Verification(Verdict.INCORRECT, mismatch, boxed)
    out = run_isolated(_compare, (drop_units(gold), drop_units(answer)), timeout_s=timeout_s, memory_mb=2048)
    if out.timed_out:
        return Verification(Verdict.TIMEOUT, f"no verdict within {timeout_s} CPU seconds", boxed)
    if not out.ok:
        return Verification(Verdict.UNVERIFIABLE, out.error, boxed)
    same, parsed = out.value
    if parsed == "unparsable":
        return Verification(Verdict.INCORRECT, "no answer found", boxed)
    if boxed is None and _RESTATED.fullmatch(parsed):
        return Verification(Verdict.INCORRECT, "an unevaluated expression of plain numbers is not an answer", parsed)
    return Verification(Verdict.CORRECT if same else Verdict.INCORRECT, "", parsed)
