"""Indefinite integrals, checked numerically (LADDER's verifier; methods.md section 3).

A candidate antiderivative F is right iff, at 5 random points x in [-10, 10],
F(x + 0.1) - F(x) matches the adaptive quadrature of the integrand over
[x, x + 0.1] within relative tolerance 1e-2. A point where F or the integrand
is singular, complex-only or overflowing is replaced by a fresh one. Each
attempt runs in a killable child with a 2 s limit; after 3 failed attempts
the verdict is "unverifiable". Answers that still contain an integral are
wrong by definition.

Model output is parsed by SymPy only after a whitelist check (characters and
known function names), because ``sympify`` evaluates Python: nothing else a
model writes can reach ``eval``.

>>> verify_integral("x*exp(x)", "\\\\boxed{(x - 1)*exp(x) + C}", seed=0).verdict.value
'correct'
>>> verify_integral("x*exp(x)", "\\\\boxed{x*exp(x)}", seed=0).verdict.value
'incorrect'
"""

from __future__ import annotations

import re

import numpy as np

from strop.verifiers.base import Verdict, Verification
from strop.verifiers.extract import MAX_SCAN_CHARS, extract_boxed
from strop.verifiers.isolation import run_isolated

POINTS, WIDTH, LO, HI, RTOL = 5, 0.1, -10.0, 10.0, 1e-2
ATTEMPT_TIMEOUT_S, ATTEMPTS = 2.0, 3
MAX_EXPR_CHARS = 500

ALLOWED_NAMES = {
    "x", "e", "E", "pi", "exp", "log", "ln", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan",
    "acot", "asec", "acsc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "coth", "sech", "csch", "asinh",
    "acosh", "atanh", "abs", "Abs", "C", "erf", "erfi", "Ei", "Si", "Ci", "gamma", "floor", "sign", "I",
}
_CHARS = re.compile(r"^[A-Za-z0-9\s+\-*/^().,]*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_PLUS_C = re.compile(r"\+\s*C\s*$")


def check_expression_text(text: str) -> str | None:
    """Why ``text`` may not be handed to SymPy, or None if it may."""
    if len(text) > MAX_EXPR_CHARS:
        return f"longer than {MAX_EXPR_CHARS} characters"
    if not _CHARS.match(text):
        return "contains characters other than letters, digits, spaces and + - * / ^ ( ) . ,"
    bad = sorted({n for n in _NAME.findall(text) if n not in ALLOWED_NAMES})
    return f"unknown names {bad[:5]}" if bad else None


def extract_antiderivative(completion: str) -> str | None:
    """Boxed answer, else <answer> tag; LaTeX reduced to SymPy syntax for the common forms; '+ C' dropped."""
    text = completion[-MAX_SCAN_CHARS:]
    ans = extract_boxed(text)
    if ans is None:
        tags = _ANSWER_TAG.findall(text)
        ans = tags[-1] if tags else None
    if ans is None:
        return None
    ans = ans.strip().strip("$").strip()
    for latex, plain in ((r"\left", ""), (r"\right", ""), (r"\cdot", "*"), (r"\ln", "log"), (r"\,", " "), ("{", "("), ("}", ")")):
        ans = ans.replace(latex, plain)
    ans = re.sub(r"\\frac\s*\(([^()]*)\)\s*\(([^()]*)\)", r"((\1)/(\2))", ans)
    ans = re.sub(r"\\(sqrt|sin|cos|tan|exp|log|arctan|arcsin|arccos|sinh|cosh|tanh)", r"\1", ans)
    return _PLUS_C.sub("", ans).strip() or None


def _names():  # runs in the child
    import sympy

    return {"x": sympy.Symbol("x"), "e": sympy.E, "ln": sympy.log, "C": sympy.Integer(0), "arcsin": sympy.asin,
            "arccos": sympy.acos, "arctan": sympy.atan}


def _parse_answer(answer: str, names: dict):  # runs in the child; ``answer`` passed the whitelist
    from sympy.parsing.sympy_parser import convert_xor, implicit_multiplication_application, parse_expr, standard_transformations

    # Model answers are written like maths: "(x-1)e^(x)" means (x-1)*e**x.
    return parse_expr(answer, local_dict=names, transformations=standard_transformations + (implicit_multiplication_application, convert_xor))


def _attempt(integrand: str, answer: str, seed: int) -> tuple[str, str]:  # runs in the child
    import mpmath
    import sympy

    names = _names()
    x = names["x"]
    f = sympy.sympify(integrand, locals=names)
    F = _parse_answer(answer, names)
    if F.has(sympy.Integral):
        return "incorrect", "the answer still contains an integral"
    fF = sympy.lambdify(x, F, "mpmath")
    f = f.doit()  # gold integrands may hold products or sums over dummy indices
    try:
        ff = sympy.lambdify(x, f, "mpmath")
    except Exception:  # noqa: BLE001 - a form mpmath cannot print: evaluate through SymPy (slower)
        def ff(v, _f=f):
            return mpmath.mpmathify(complex(_f.evalf(30, subs={x: v})))
    rng = np.random.default_rng(seed)
    checked, tries = 0, 0
    while checked < POINTS:
        tries += 1
        if tries > 50 * POINTS:
            return "unverifiable", "no point in [-10, 10] where both sides evaluate"
        a = float(rng.uniform(LO, HI - WIDTH))
        b = a + WIDTH
        try:
            lhs = complex(fF(mpmath.mpf(b)) - fF(mpmath.mpf(a)))
            rhs = complex(mpmath.quad(ff, [a, b]))
        except (ZeroDivisionError, OverflowError, ValueError, TypeError, ArithmeticError):
            continue  # singular or undefined here: resample the point
        if not (np.isfinite(lhs) and np.isfinite(rhs)) or abs(rhs.imag) > 1e-9 * max(1.0, abs(rhs.real)):
            continue
        if abs(lhs - rhs) > RTOL * max(abs(rhs), 1e-8):
            return "incorrect", f"at x={a:.3f}: F(x+{WIDTH}) - F(x) = {lhs.real:.6g}, integral = {rhs.real:.6g}"
        checked += 1
    return "correct", ""


def warm_up() -> None:  # runs in a checker process when it starts (isolation.DEFAULT_PRELOAD)
    """Import SymPy and mpmath and run one check, so the first answer checked is not the slow one."""
    _attempt("x*exp(x)", "(x - 1)*exp(x)", 0)


def _admitted_answer(completion: str) -> tuple[str | None, Verification | None]:
    """The answer text if it may go to SymPy, else the verdict that refuses it."""
    answer = extract_antiderivative(completion)
    if answer is None:
        return None, Verification(Verdict.INCORRECT, "no answer found")
    why = check_expression_text(answer)
    if why is not None:
        return None, Verification(Verdict.INCORRECT, f"answer refused: {why}", answer[:100])
    return answer, None


def verify_integral(integrand: str, completion: str, *, seed: int = 0) -> Verification:
    """Is the completion's answer an antiderivative of ``integrand`` (a SymPy string in x)?"""
    answer, refused = _admitted_answer(completion)
    if refused is not None:
        return refused
    last = ""
    for attempt in range(ATTEMPTS):
        out = run_isolated(_attempt, (integrand, answer, seed + attempt), timeout_s=ATTEMPT_TIMEOUT_S, memory_mb=1024)
        if out.ok:
            verdict, detail = out.value
            if verdict != "unverifiable":
                return Verification(Verdict(verdict), detail, answer)
            last = detail
        else:
            last = out.error
            if out.timed_out:  # a runaway expression runs away at every sample point: no retry
                return Verification(Verdict.TIMEOUT, f"no verdict within {ATTEMPT_TIMEOUT_S} CPU seconds", answer)
            if out.error.startswith(("SympifyError", "SyntaxError", "TypeError", "AttributeError")):
                return Verification(Verdict.INCORRECT, f"answer does not parse: {out.error[:120]}", answer)
    return Verification(Verdict.UNVERIFIABLE, f"{ATTEMPTS} attempts failed; last: {last}", answer)


def _definite(gold: str, answer: str) -> tuple[bool, str]:  # runs in the child
    import sympy

    names = _names()
    g = complex(sympy.N(sympy.sympify(gold, locals=names), 30))
    a = _parse_answer(answer, names)
    if a.free_symbols:
        return False, f"the answer has free symbols {sorted(map(str, a.free_symbols))}"
    v = complex(sympy.N(a, 30))
    ok = abs(v - g) <= 1e-6 * max(1.0, abs(g))
    return ok, "" if ok else f"answer = {v.real:.8g}, expected {g.real:.8g}"


def verify_definite_integral(gold: str, completion: str, *, timeout_s: float = ATTEMPT_TIMEOUT_S) -> Verification:
    """Is the completion's answer numerically equal (1e-6 relative) to ``gold``, a SymPy expression?"""
    answer, refused = _admitted_answer(completion)
    if refused is not None:
        return refused
    out = run_isolated(_definite, (gold, answer), timeout_s=timeout_s, memory_mb=1024)
    if out.timed_out:
        return Verification(Verdict.TIMEOUT, f"no verdict within {timeout_s} CPU seconds", answer)
    if not out.ok:
        return Verification(Verdict.INCORRECT, f"answer does not evaluate: {out.error[:120]}", answer)
    ok, detail = out.value
    return Verification(Verdict.CORRECT if ok else Verdict.INCORRECT, detail, answer)
