"""Indefinite integrals, checked numerically (LADDER's verifier; methods.md section 3).

With strop's default check (``IntegralCheck``, preset ``strop``), a candidate
antiderivative F is right iff, at 5 random points x in [-10, 10],
F(x + 0.1) - F(x) matches the adaptive quadrature of the integrand over
[x, x + 0.1] within relative tolerance 1e-2. A point where F or the integrand
is singular, complex-only or overflowing is replaced by a fresh one. Each
attempt runs in a killable child with a 2 s limit; after 3 failed attempts
the verdict is "unverifiable". Answers that still contain an integral are
wrong by definition.

Points, tolerances and the domain are a frozen config, so that figures from
other checkers can be reproduced: presets ``ladder`` and ``ttrl`` follow the
checkers of Tufalabs/LADDER (its benchmark) and Tufalabs/TTRL (its reward):
10 points, an absolute tolerance, and for TTRL a positive domain when a log or
a root appears (docs/evaluation.md, "Coming from the reference code").

Model output is parsed by SymPy only after a whitelist check (characters and
known function names), because ``sympify`` evaluates Python: nothing else a
model writes can reach ``eval``.

>>> verify_integral("x*exp(x)", "\\\\boxed{(x - 1)*exp(x) + C}", seed=0).verdict.value
'correct'
>>> verify_integral("x*exp(x)", "\\\\boxed{x*exp(x)}", seed=0).verdict.value
'incorrect'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from strop.backends.thinking import strip_thinking
from strop.errors import ConfigError
from strop.verifiers.base import Verdict, Verification
from strop.verifiers.extract import MAX_SCAN_CHARS, extract_boxed
from strop.verifiers.isolation import run_isolated

POINTS, WIDTH, LO, HI, RTOL = 5, 0.1, -10.0, 10.0, 1e-2
ATTEMPT_TIMEOUT_S, ATTEMPTS = 2.0, 3
MAX_EXPR_CHARS = 500
DOMAINS = ("fixed", "positive-for-log-or-root")
INTERVALS = ("width", "independent")


@dataclass(frozen=True)
class IntegralCheck:
    """How an antiderivative F of f is checked numerically. ``PRESETS`` holds the named ones.

    A test point draws an interval [a, b] from the domain: a uniform and b = a + ``width``
    ("width"), or both ends uniform ("independent", LADDER's benchmark; ends closer than
    1e-3 are skipped). F passes there iff
    |F(b) - F(a) - quad(f, a, b)| <= max(atol + rtol * |quad|, rtol * 1e-8)
    (numpy's isclose; with atol 0, relative with a floor near zero), complex values
    compared as complex numbers. A point where either side does not evaluate to a finite
    number is skipped; so is one where the integral is not real, under ``complex_points="skip"``.

    Attributes:
        name: what records call this check; a preset's name always means the preset's settings.
        points: points that must pass; F is wrong at the first that fails.
        atol, rtol: absolute and relative tolerance (>= 0, not both 0).
        low, high: the domain the points are drawn from.
        domain: "fixed" ([low, high]) or "positive-for-log-or-root" ([positive_low, high] when F
            or f holds a log or a non-integer power, which are complex for negative x: TTRL's rule).
        positive_low: the domain's lower end under that rule.
        interval: "width" or "independent" (see above).
        width: interval length for "width".
        tries: points drawn at most (skipped ones count).
        min_points: passing points a "correct" verdict needs; with fewer the verdict is "unverifiable".
        complex_points: "skip" a point where the integral is not real (strop), or "compare" there
            too (the reference checkers compare complex values).
    """

    name: str = "strop"
    points: int = POINTS
    atol: float = 0.0
    rtol: float = RTOL
    low: float = LO
    high: float = HI
    domain: Literal["fixed", "positive-for-log-or-root"] = "fixed"
    positive_low: float = 0.1
    interval: Literal["width", "independent"] = "width"
    width: float = WIDTH
    tries: int = 50 * POINTS
    min_points: int = POINTS
    complex_points: Literal["skip", "compare"] = "skip"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        for field in ("points", "tries", "min_points"):
            v = getattr(self, field)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{field} must be an integer >= 0, got {v!r}")
        if self.points < 1 or self.tries < self.points or self.min_points > self.points:
            raise ConfigError(f"need points >= 1, tries >= points and min_points <= points, got points={self.points}, "
                              f"tries={self.tries}, min_points={self.min_points}")
        for field in ("atol", "rtol", "low", "high", "positive_low", "width"):
            v = getattr(self, field)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"{field} must be a finite number, got {v!r}")
        if self.atol < 0 or self.rtol < 0 or self.atol + self.rtol == 0:
            raise ConfigError(f"atol and rtol must be >= 0 and not both 0, got atol={self.atol}, rtol={self.rtol}")
        if self.domain not in DOMAINS:
            raise ConfigError(f"domain must be one of {', '.join(DOMAINS)}, got {self.domain!r}")
        if self.complex_points not in ("skip", "compare"):
            raise ConfigError(f"complex_points must be skip or compare, got {self.complex_points!r}")
        if self.interval not in INTERVALS:
            raise ConfigError(f"interval must be one of {', '.join(INTERVALS)}, got {self.interval!r}")
        if not self.low < self.high or not 0 < self.positive_low < self.high:
            raise ConfigError(f"need low < high and 0 < positive_low < high, got low={self.low}, "
                              f"positive_low={self.positive_low}, high={self.high}")
        lowest = max(self.low, self.positive_low) if self.domain != "fixed" else self.low
        if not 0 < self.width < self.high - lowest:
            raise ConfigError(f"width must be > 0 and shorter than the domain, got {self.width!r}")
        preset = globals().get("PRESETS", {}).get(self.name)
        if preset is not None and preset != self:
            raise ConfigError(f"name {self.name!r} is a preset's; give other settings another name")


# strop's own check (the default), and the checkers of the reference code, read from
# Tufalabs/LADDER benchmark.py (evaluate_llm_solution) and Tufalabs/TTRL reward/utils.py
# (compute_score_indefinite): 10 points each, counted whether or not they evaluate.
PRESETS: dict[str, IntegralCheck] = {
    "strop": IntegralCheck(),
    # |F(b) - F(a) - quad| <= 1e-2, a and b anywhere in [-10, 10]; an answer no point evaluates is accepted, as there.
    "ladder": IntegralCheck("ladder", points=10, atol=1e-2, rtol=0.0, interval="independent", tries=10, min_points=0,
                            complex_points="compare"),
    # np.isclose(F(b) - F(a), quad, atol=1e-2, rtol=1e-3), b = a + 0.1, [0.1, 10] under a log (or root); >= 1 point.
    "ttrl": IntegralCheck("ttrl", points=10, atol=1e-2, rtol=1e-3, domain="positive-for-log-or-root", tries=10, min_points=1,
                          complex_points="compare"),
}
DEFAULT_CHECK = PRESETS["strop"]


def integral_check(name: str) -> IntegralCheck:
    """The preset called ``name`` (strop, ladder, ttrl)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown integral check {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]

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
    text = strip_thinking(completion)[-MAX_SCAN_CHARS:]
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


def has_log_or_root(e: Any) -> bool:  # runs in the child
    """Whether a SymPy expression holds a log or a non-integer power: complex for negative arguments."""
    import sympy

    # A constant positive base (2**x, sqrt(2)) is real everywhere; any other base may be negative.
    return bool(e.has(sympy.log) or any(p.exp.is_integer is not True and p.base.is_positive is not True for p in e.atoms(sympy.Pow)))


def check_domain(check: IntegralCheck, *exprs: Any) -> tuple[float, float]:  # runs in the child
    """The interval ``check`` draws its points from, for an integrand and answer ``exprs``."""
    if check.domain == "positive-for-log-or-root" and any(has_log_or_root(e) for e in exprs):
        return check.positive_low, check.high
    return check.low, check.high


def _attempt(integrand: str, answer: str, seed: int, check: IntegralCheck = DEFAULT_CHECK) -> tuple[str, str]:  # runs in the child
    import mpmath
    import sympy

    names = _names()
    x = names["x"]
    f = sympy.sympify(integrand, locals=names)
    F = _parse_answer(answer, names)
    if F.has(sympy.Integral):
        return "incorrect", "the answer still contains an integral"
    lo, hi = check_domain(check, f, F)
    fF = sympy.lambdify(x, F, "mpmath")
    f = f.doit()  # gold integrands may hold products or sums over dummy indices
    try:
        ff = sympy.lambdify(x, f, "mpmath")
    except Exception:  # noqa: BLE001 - a form mpmath cannot print: evaluate through SymPy (slower)
        def ff(v, _f=f):
            return mpmath.mpmathify(complex(_f.evalf(30, subs={x: v})))
    rng = np.random.default_rng(seed)
    checked, tries = 0, 0
    while checked < check.points and tries < check.tries:
        tries += 1
        if check.interval == "width":
            a = float(rng.uniform(lo, hi - check.width))
            b = a + check.width
        else:
            a, b = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
            if abs(b - a) < 1e-3:
                continue
        try:
            lhs = complex(fF(mpmath.mpf(b)) - fF(mpmath.mpf(a)))
            rhs = complex(mpmath.quad(ff, [a, b]))
        except (ZeroDivisionError, OverflowError, ValueError, TypeError, ArithmeticError):
            continue  # singular or undefined here: resample the point
        if not (np.isfinite(lhs) and np.isfinite(rhs)):
            continue
        if check.complex_points == "skip" and abs(rhs.imag) > 1e-9 * max(1.0, abs(rhs.real)):
            continue
        if abs(lhs - rhs) > max(check.atol + check.rtol * abs(rhs), check.rtol * 1e-8):
            return "incorrect", f"on [{a:.3f}, {b:.3f}]: F(b) - F(a) = {lhs.real:.6g}, integral = {rhs.real:.6g}"
        checked += 1
    if checked < check.min_points:
        return "unverifiable", f"{checked} of {check.tries} points in [{lo:g}, {hi:g}] evaluate, {check.min_points} needed"
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


def verify_integral(integrand: str, completion: str, *, seed: int = 0, check: IntegralCheck = DEFAULT_CHECK) -> Verification:
    """Is the completion's answer an antiderivative of ``integrand`` (a SymPy string in x), by ``check``?"""
    answer, refused = _admitted_answer(completion)
    if refused is not None:
        return refused
    last = ""
    for attempt in range(ATTEMPTS):
        out = run_isolated(_attempt, (integrand, answer, seed + attempt, check), timeout_s=ATTEMPT_TIMEOUT_S, memory_mb=1024)
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
