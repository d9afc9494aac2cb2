"""Integrals for LADDER: a seeded problem generator by difficulty, and easier variants made with SymPy.

The model-written variants of the paper are poor when the model is small, so
strop can also make variants symbolically: each applies one local
simplification to the integrand (lower an exponent, drop a term, drop a
coefficient, drop a factor, replace a function's argument by x, remove a
root, make a power's coefficient cancel). By default (validity "sympy") a variant is kept only if SymPy finds
its antiderivative and strop's own numerical verifier accepts that antiderivative, so every variant is a
problem the reward can check and that has a known answer. Validity "numeric" keeps, as the TTRL reference
code does, every integrand whose integral over the check's domain evaluates numerically (the reward needs no
antiderivative); its variants have no answer.

Everything that parses text goes through the verifier's whitelist first and
then runs in a killable child (``run_isolated``): integrands written by a
model are hostile input, and even a whitelisted string like ``9^9^9^9`` can
make SymPy run for ever. The problem generator itself (levels, seeds) is the
task's: ``strop.tasks.integrals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from strop.errors import ConfigError
from strop.tasks.integrals import LEVELS, integral_problems, pretty  # noqa: F401  (the roots LADDER builds trees from)
from strop.verifiers.integral import check_expression_text
from strop.verifiers.isolation import run_isolated

VALIDATE_TIMEOUT_S = 5.0
VALIDITY = ("sympy", "numeric")


# --------------------------------------------------------------- in a child
def _local_rules(e: Any, x: Any) -> list[tuple[str, Any, Any]]:
    """(transform, node, replacement) for every simplification that applies somewhere in ``e``."""
    import sympy

    out = []
    for node in sympy.preorder_traversal(e):
        if not node.has(x):
            continue
        if node.is_Pow:
            b, n = node.args
            if n.is_Integer and int(n) >= 2:
                out.append(("lower an exponent", node, b ** (int(n) - 1)))
            elif n.is_Integer and int(n) <= -2:
                out.append(("lower an exponent", node, b ** (int(n) + 1)))
            elif n.is_Rational and not n.is_Integer:
                out.append(("remove a root", node, b))
        elif node.is_Add and len(node.args) >= 2:
            for a in node.args:
                rest = node - a
                if rest != 0:
                    out.append(("drop a term", node, rest))
        elif node.is_Mul:
            coeff, rest = node.as_coeff_Mul()
            if coeff not in (1, -1) and rest.has(x):
                out.append(("drop a coefficient", node, rest))
            power = 1 if rest == x else (int(rest.args[1]) if rest.is_Pow and rest.args[0] == x and rest.args[1].is_Integer else 0)
            if power >= 1 and coeff != power + 1:
                # (n+1) x^n integrates to x^(n+1): no fraction in the answer.
                out.append(("make the coefficient cancel", node, (power + 1) * rest))
            factors = [a for a in node.args if a.has(x)]
            if len(factors) >= 2:
                for a in factors:
                    out.append(("drop a factor", node, node / a))
        elif isinstance(node, sympy.Function) and len(node.args) == 1 and node.args[0] != x:
            out.append(("simplify an argument", node, node.func(x)))
    return out


def _parse(integrand: str) -> Any:
    import sympy

    from strop.verifiers.integral import _names

    return sympy.sympify(integrand, locals=_names())


def _symbolic_children(integrand: str, n: int, seed: int) -> list[tuple[str, str]]:  # runs in the child
    """Up to ``n`` distinct (integrand, transform) easier variants; one or two rules applied each."""
    import sympy

    x = sympy.Symbol("x")
    e = _parse(integrand)
    rng = np.random.default_rng(seed)
    seen, out = {sympy.srepr(e)}, []
    for _ in range(8 * n):
        if len(out) >= n:
            break
        cur, names = e, []
        for _step in range(int(rng.integers(1, 3))):
            rules = _local_rules(cur, x)
            if not rules:
                break
            name, node, repl = rules[int(rng.integers(len(rules)))]
            cur, names = cur.xreplace({node: repl}), names + [name]
        key = sympy.srepr(cur)
        if names and key not in seen and cur != 0:
            seen.add(key)
            out.append((sympy.sstr(cur), " + ".join(names)))
    return out


def _integrates_numerically(e: Any, x: Any) -> str | None:  # runs in the child
    """Why quadrature of ``e`` over the ttrl check's domain gives no finite number, or None if it does."""
    import mpmath
    import sympy

    from strop.verifiers.integral import PRESETS, check_domain

    lo, hi = check_domain(PRESETS["ttrl"], e)  # [-10, 10], or [0.1, 10] under a log or a root
    try:
        value = complex(mpmath.quad(sympy.lambdify(x, e, "mpmath"), [lo, hi]))
    except Exception as err:  # noqa: BLE001 - any failure to evaluate means "does not integrate numerically"
        return f"no numerical integral on [{lo:g}, {hi:g}] ({type(err).__name__})"
    return None if np.isfinite(value) else f"the numerical integral on [{lo:g}, {hi:g}] is not finite"


def _validate(integrand: str, validity: str = "sympy") -> dict[str, Any]:  # runs in the child
    """Canonical key, antiderivative (None under validity "numeric") and difficulty of an integrand, or why it is no usable problem."""
    import sympy

    from strop.verifiers.integral import _attempt

    x = sympy.Symbol("x")
    e = _parse(integrand)
    if not isinstance(e, sympy.Expr) or e.free_symbols - {x}:
        return {"ok": False, "why": f"not an expression in x alone: {sorted(map(str, getattr(e, 'free_symbols', [])))}"}
    if e.has(sympy.Integral, sympy.zoo, sympy.nan, sympy.oo) or e == 0:
        return {"ok": False, "why": "trivial or undefined"}
    if validity == "numeric":
        why = _integrates_numerically(e, x)
        if why is not None:
            return {"ok": False, "why": why}
        return {"ok": True, "integrand": sympy.sstr(e), "answer": None, "key": sympy.srepr(sympy.expand(e)),
                "ops": int(sympy.count_ops(e))}
    F = sympy.integrate(e, x)
    if F.has(sympy.Integral):
        return {"ok": False, "why": "SymPy finds no antiderivative"}
    text = sympy.sstr(e)
    answer = sympy.sstr(F)
    if check_expression_text(answer) is not None:
        return {"ok": False, "why": f"antiderivative uses functions outside the verifier's names: {answer[:80]}"}
    verdict, detail = _attempt(text, answer, 0)
    if verdict != "correct":
        return {"ok": False, "why": f"the verifier cannot confirm SymPy's antiderivative ({verdict}: {detail[:80]})"}
    return {"ok": True, "integrand": text, "answer": answer, "key": sympy.srepr(sympy.expand(e)), "ops": int(sympy.count_ops(e))}


# ------------------------------------------------------------ parent side
def validate_integrand(integrand: str, validity: str = "sympy") -> dict[str, Any]:
    """``{"ok": True, integrand, answer, key, ops}`` for a usable integrand, else ``{"ok": False, "why": ...}``.

    ``validity``: "sympy" (SymPy finds an antiderivative the verifier confirms) or "numeric" (the integral
    evaluates numerically, as TTRL's check; ``answer`` is None).
    """
    if validity not in VALIDITY:
        raise ConfigError(f"validity must be one of {', '.join(VALIDITY)}, got {validity!r}")
    if not isinstance(integrand, str) or not integrand.strip():
        return {"ok": False, "why": "empty"}
    why = check_expression_text(integrand)
    if why is not None:
        return {"ok": False, "why": why}
    out = run_isolated(_validate, (integrand.strip(), validity), timeout_s=VALIDATE_TIMEOUT_S, memory_mb=1024)
    if out.timed_out:
        return {"ok": False, "why": f"SymPy took over {VALIDATE_TIMEOUT_S} s"}
    if not out.ok:
        return {"ok": False, "why": f"does not parse: {out.error[:100]}"}
    return out.value


def symbolic_integral_variants(integrand: str, n: int, seed: int) -> list[tuple[str, str]]:
    """Up to ``n`` (integrand, transform) easier variants of a whitelisted integrand (not yet validated)."""
    if check_expression_text(integrand) is not None:
        return []
    out = run_isolated(_symbolic_children, (integrand, n, seed), timeout_s=VALIDATE_TIMEOUT_S, memory_mb=1024)
    return list(out.value) if out.ok else []


def _keys(integrands: Sequence[str]) -> list[str | None]:  # runs in the child
    import sympy

    out: list[str | None] = []
    for s in integrands:
        try:
            out.append(sympy.srepr(sympy.expand(_parse(s))))
        except Exception:  # noqa: BLE001 - an unparsable entry has no key
            out.append(None)
    return out


def integrand_keys(integrands: Sequence[str]) -> set[str]:
    """Canonical keys (as in ``validate_integrand``) of trusted integrands, e.g. a test set's, for de-duplication."""
    ok = [s for s in integrands if check_expression_text(s) is None]
    out = run_isolated(_keys, (ok,), timeout_s=VALIDATE_TIMEOUT_S + len(ok), memory_mb=2048)
    if not out.ok:
        raise ConfigError(f"could not read the integrands to exclude: {out.error[:200]}")
    return {k for k in out.value if k is not None}
