"""A seeded generator of indefinite integrals by difficulty: the built-in ``integrals`` task and LADDER's roots.

Integrands are SymPy strings in x; levels go from a monomial to integration by
parts. The symbolic variants and their checks live in ``strop.ladder.integrals``.

>>> [p["integrand"] for p in integral_problems(3, seed=0, level="power")]
['8*x**3', '5*x', '3']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strop.errors import ConfigError

# Generator levels, easiest first.
LEVELS = ("power", "poly", "exp", "poly_exp", "parts")


def _monomial(rng: np.random.Generator, max_deg: int = 5) -> str:
    c, n = int(rng.integers(1, 10)), int(rng.integers(0, max_deg + 1))
    if n == 0:
        return str(c)
    xn = "x" if n == 1 else f"x**{n}"
    return xn if c == 1 else f"{c}*{xn}"


def _exp_term(rng: np.random.Generator) -> str:
    c, k = int(rng.integers(1, 10)), int(rng.integers(1, 6))
    e = "exp(x)" if k == 1 else f"exp({k}*x)"
    return e if c == 1 else f"{c}*{e}"


def _one(rng: np.random.Generator, level: str) -> str:
    if level == "power":
        return _monomial(rng)
    if level == "poly":
        degs = sorted(rng.choice(np.arange(0, 5), size=int(rng.integers(2, 4)), replace=False), reverse=True)
        terms = []
        for n in degs:
            c = int(rng.integers(1, 10))
            xn = "x" if n == 1 else f"x**{n}"
            terms.append(str(c) if n == 0 else (xn if c == 1 else f"{c}*{xn}"))
        return " + ".join(terms)
    if level == "exp":
        return _exp_term(rng)
    if level == "poly_exp":
        return f"{_monomial(rng, 3)} + {_exp_term(rng)}"
    if level == "parts":  # integration by parts: c * x^n * exp(k x)
        c, n, k = int(rng.integers(1, 6)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
        s = ("x" if n == 1 else f"x**{n}") + "*" + ("exp(x)" if k == 1 else f"exp({k}*x)")
        return s if c == 1 else f"{c}*{s}"
    raise ConfigError(f"unknown integral level {level!r}; choose from {', '.join(LEVELS)}")


def integral_problems(n: int, *, seed: int, level: str) -> list[dict[str, Any]]:
    """``n`` distinct integrands (SymPy strings in x) of one level, from ``seed``."""
    if level not in LEVELS:
        raise ConfigError(f"unknown integral level {level!r}; choose from {', '.join(LEVELS)}")
    rng = np.random.default_rng([seed, LEVELS.index(level)])
    out: list[str] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        s = _one(rng, level)
        if s not in out:
            out.append(s)
    return [{"id": f"int-s{seed}-{level}-{i}", "integrand": s, "category": level} for i, s in enumerate(out)]


def pretty(integrand: str) -> str:
    """How an integrand is shown to the model: ``^`` for powers, as people write them."""
    return integrand.replace("**", "^")
