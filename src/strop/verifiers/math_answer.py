"""Math answers: the final answer of a completion vs the gold answer, with math-verify.

math-verify is asymmetric: ``verify(gold, prediction)`` treats the first
argument as the reference, so the gold answer always goes first. Parsing and
comparison run in a killable checker process (``isolation.run_isolated``: a
warm pool with math-verify already imported), since SymPy can hang on hostile
input and math-verify's own ``signal.alarm`` timeout only works in the main thread.

>>> verify_math("\\\\frac{1}{2}", "so the answer is $\\\\boxed{0.5}$").verdict.value
'correct'
>>> verify_math("42", "I think it is \\\\boxed{41}").verdict.value
'incorrect'
"""

from __future__ import annotations

from strop.verifiers.base import Verdict, Verification
from strop.verifiers.extract import MAX_SCAN_CHARS, extract_boxed
from strop.verifiers.isolation import run_isolated

# A final answer longer than this is not an answer; refusing it keeps SymPy
# away from megabyte expressions.
MAX_ANSWER_CHARS = 1000


def _compare(gold: str, answer: str) -> tuple[bool, str]:  # runs in the child
    import logging

    from math_verify import parse, verify

    # math-verify warns that its own timeout is off; the killable child process is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    g = parse(gold if "$" in gold or "\\boxed" in gold else f"${gold}$", parsing_timeout=None)
    p = parse(answer, parsing_timeout=None)
    if not p:
        return False, "unparsable"
    return bool(verify(g, p, timeout_seconds=None)), str(p[-1])[:200]


def warm_up() -> None:  # runs in a checker process when it starts (isolation.DEFAULT_PRELOAD)
    """Import math-verify and build its LaTeX parser once, so the first answer checked is not the slow one."""
    _compare("\\frac{1}{2}", "$\\boxed{0.5}$")


def verify_math(gold: str, completion: str, *, timeout_s: float = 5.0) -> Verification:
    """Is the completion's final (boxed, else last $...$ or number) answer equal to ``gold``?"""
    text = completion[-MAX_SCAN_CHARS:]
    boxed = extract_boxed(text)
    answer = f"$\\boxed{{{boxed}}}$" if boxed is not None else text[-MAX_ANSWER_CHARS:]
    if boxed is not None and len(boxed) > MAX_ANSWER_CHARS:
        return Verification(Verdict.UNVERIFIABLE, f"answer longer than {MAX_ANSWER_CHARS} characters")
    out = run_isolated(_compare, (gold, answer), timeout_s=timeout_s, memory_mb=2048)
    if out.timed_out:
        return Verification(Verdict.TIMEOUT, f"no verdict within {timeout_s} CPU seconds", boxed)
    if not out.ok:
        return Verification(Verdict.UNVERIFIABLE, out.error, boxed)
    same, parsed = out.value
    if parsed == "unparsable":
        return Verification(Verdict.INCORRECT, "no answer found", boxed)
    return Verification(Verdict.CORRECT if same else Verdict.INCORRECT, "", parsed)
