"""Verifiers: is an answer right. Each is a small unit returning a ``Verification``.

- ``verify_math``: final answers vs gold with math-verify (gold first), killable timeouts;
- ``verify_integral``: antiderivatives checked numerically (LADDER's check);
- ``verify_countdown``: an expression using each number once reaching the target;
- ``verify_code``: HumanEval-style tests in a contained child process;
- ``extract_answer`` / ``extract_boxed``: pulling a final answer out of text.
"""

from strop.verifiers.base import Verdict, Verification
from strop.verifiers.code import verify_code
from strop.verifiers.countdown import verify_countdown
from strop.verifiers.extract import extract_answer, extract_boxed, normalize_answer
from strop.verifiers.integral import verify_integral
from strop.verifiers.math_answer import verify_math

__all__ = [
    "Verdict",
    "Verification",
    "extract_answer",
    "extract_boxed",
    "normalize_answer",
    "verify_code",
    "verify_countdown",
    "verify_integral",
    "verify_math",
]
