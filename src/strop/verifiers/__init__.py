"""Verifiers: is an answer right. Each is a small unit returning a ``Verification``.

- ``verify_math``: final answers vs gold with math-verify (gold first), killable timeouts;
- ``verify_integral``: antiderivatives checked numerically (LADDER's check);
- ``verify_countdown``: an expression using each number once reaching the target;
- ``verify_code``: HumanEval-style tests in a contained child process (seccomp, limits, audit hooks, a nonce);
- ``extract_answer`` / ``extract_boxed``: pulling a final answer out of text;
- ``parallel_map``: many checks at once (math and integral checks run in a warm pool of checker processes).
"""

from strop.verifiers.base import Verdict, Verification
from strop.verifiers.code import verify_code
from strop.verifiers.countdown import verify_countdown
from strop.verifiers.extract import extract_answer, extract_boxed, normalize_answer
from strop.verifiers.integral import verify_integral
from strop.verifiers.isolation import parallel_map
from strop.verifiers.math_answer import verify_math

__all__ = [
    "Verdict",
    "Verification",
    "extract_answer",
    "extract_boxed",
    "normalize_answer",
    "parallel_map",
    "verify_code",
    "verify_countdown",
    "verify_integral",
    "verify_math",
]
