"""What LADDER needs from a problem kind: easier variants, their validation, and model prompts.

Two kinds exist: ``integral`` (checked numerically, no answer key needed) and
``arithmetic`` (answers computed exactly). Each can make variants
symbolically and can ask a model for them; model-written variants pass the
same validation as symbolic ones, so a bad generator only wastes compute.

Model prompts follow the paper (methods.md section 3): each request names
3-5 transformations sampled from a library ordered by difficulty, asks for
several variants at once, takes its temperature from a cycle over 0.8-1.4 and
its persona from a rotation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strop.errors import ConfigError
from strop.ladder.arithmetic import parse_expression, render, symbolic_arithmetic_variants, value_of
from strop.ladder.integrals import VALIDITY, integrand_keys, symbolic_integral_variants, validate_integrand
from strop.tasks import Problem

# The paper cycles sampling temperature over this range across requests.
TEMPERATURES = (0.8, 1.0, 1.2, 1.4)
PERSONAS = (
    "You are a careful calculus teacher writing practice exercises.",
    "Think like Euler: find the simplest case of the problem that still teaches its method.",
    "You are a mathematician who breaks hard problems into easier ones.",
    "You are a student making easier warm-up exercises before an exam.",
)

# Transformations, easiest change first (the paper's library, adapted).
INTEGRAL_TRANSFORMS = (
    "drop a constant coefficient",
    "remove one term of a sum",
    "lower an exponent by one",
    "replace the argument of a function by plain x",
    "remove a nested function",
    "remove one factor of a product",
    "simplify a denominator",
    "replace a root by its radicand",
)
ARITHMETIC_TRANSFORMS = (
    "remove one number and its sign",
    "remove the last digit of one number",
    "round one number to a multiple of ten",
    "make one number a single digit",
)

_INTEGRATE = re.compile(r"integrate\(\s*(.{1,300}?)\s*,\s*x\s*\)", re.IGNORECASE)
_INT_LATEX = re.compile(r"\\int\s*(.{1,300}?)\s*(?:\\,|\s)*d\s*x", re.IGNORECASE)
_ARITH_LINE = re.compile(r"(\d{1,12}(?:\s*[+-]\s*\d{1,12}){0,8})\s*=\s*\?")


@dataclass(frozen=True)
class Candidate:
    """A proposed variant before validation."""

    payload: str  # integrand (integral) or question (arithmetic)
    source: str  # "symbolic" | "model"
    transform: str
    meta: dict[str, Any]


class VariantKind:
    """Interface of a problem kind (see module docstring)."""

    name: str
    task: str
    transforms: Sequence[str]

    def payload(self, problem: Problem) -> str:
        raise NotImplementedError

    def symbolic(self, payload: str, n: int, seed: int) -> list[Candidate]:
        raise NotImplementedError

    def validate(self, payload: str) -> dict[str, Any]:
        """``{"ok": True, "payload", "answer", "key", "row": {...task fields}}`` or ``{"ok": False, "why"}``."""
        raise NotImplementedError

    def with_validity(self, validity: str) -> VariantKind:
        """This kind with another validity rule for variants (``TreeSpec.validity``); only "sympy", the default, here."""
        if validity != "sympy":
            raise ConfigError(f"the {self.name} kind has one validity check; validity {validity!r} applies to integrals")
        return self

    def keys(self, payloads: Sequence[str]) -> set[str]:
        raise NotImplementedError

    def request(self, payload: str, transforms: Sequence[str], n: int) -> str:
        raise NotImplementedError

    def parse(self, text: str) -> list[str]:
        raise NotImplementedError


class IntegralKind(VariantKind):
    name, task, transforms = "integral", "integrals", INTEGRAL_TRANSFORMS

    def __init__(self, validity: str = "sympy") -> None:
        # "sympy": a variant needs an antiderivative SymPy finds; "numeric": its integral need only evaluate (TTRL).
        if validity not in VALIDITY:
            raise ConfigError(f"validity must be one of {', '.join(VALIDITY)}, got {validity!r}")
        self.validity = validity

    def with_validity(self, validity: str) -> VariantKind:
        return self if validity == self.validity else IntegralKind(validity)

    def payload(self, problem: Problem) -> str:
        if "integrand" not in problem.data:
            raise ConfigError(f"problem {problem.id} has no integrand: LADDER's integral kind needs the integrals task")
        return str(problem.data["integrand"])

    def symbolic(self, payload: str, n: int, seed: int) -> list[Candidate]:
        return [Candidate(s, "symbolic", t, {}) for s, t in symbolic_integral_variants(payload, n, seed)]

    def validate(self, payload: str) -> dict[str, Any]:
        v = validate_integrand(payload, self.validity)
        if not v.get("ok"):
            return v
        return {"ok": True, "payload": v["integrand"], "answer": v["answer"], "key": v["key"],
                "row": {"integrand": v["integrand"], "answer": v["answer"], "ops": v["ops"]}}

    def keys(self, payloads: Sequence[str]) -> set[str]:
        return integrand_keys(payloads)

    def request(self, payload: str, transforms: Sequence[str], n: int) -> str:
        steps = "\n".join(f"- {t}" for t in transforms)
        return (f"Here is an integral: integrate({payload}, x)\n\n"
                f"Write {n} easier integrals like it, each using one of these changes:\n{steps}\n\n"
                f"Write each one on its own line, exactly in the form integrate(EXPRESSION, x), "
                f"using * for products and ** for powers.")

    def parse(self, text: str) -> list[str]:
        found = [m.group(1) for m in _INTEGRATE.finditer(text)] + [m.group(1) for m in _INT_LATEX.finditer(text)]
        return [f.replace("^", "**").strip() for f in found]


class ArithmeticKind(VariantKind):
    name, task, transforms = "arithmetic", "arithmetic", ARITHMETIC_TRANSFORMS

    def payload(self, problem: Problem) -> str:
        if parse_expression(problem.question) is None:
            raise ConfigError(f"problem {problem.id}: {problem.question!r} is not of the form 'a + b - c = ?'")
        return problem.question

    def symbolic(self, payload: str, n: int, seed: int) -> list[Candidate]:
        return [Candidate(q, "symbolic", t, {}) for q, _, t in symbolic_arithmetic_variants(payload, n, seed)]

    def validate(self, payload: str) -> dict[str, Any]:
        parsed = parse_expression(payload)
        if parsed is None:
            return {"ok": False, "why": "not of the form 'a + b - c = ?'"}
        value = value_of(*parsed)
        if value < 0:
            return {"ok": False, "why": "negative result"}
        q = render(*parsed)
        return {"ok": True, "payload": q, "answer": value, "key": q, "row": {"question": q, "answer": value}}

    def keys(self, payloads: Sequence[str]) -> set[str]:
        return {render(*p) for p in map(parse_expression, payloads) if p is not None}

    def request(self, payload: str, transforms: Sequence[str], n: int) -> str:
        steps = "\n".join(f"- {t}" for t in transforms)
        return (f"Here is a sum: {payload}\n\nWrite {n} easier sums like it, each using one of these changes:\n{steps}\n\n"
                "Write each one on its own line in the form 12 + 7 = ?")

    def parse(self, text: str) -> list[str]:
        return [f"{m.group(1)} = ?" for m in _ARITH_LINE.finditer(text)]


KINDS: dict[str, VariantKind] = {"integral": IntegralKind(), "arithmetic": ArithmeticKind()}
# Which kind serves a task's problems.
TASK_KINDS = {"integrals": "integral", "mit-integration-bee-2025": "integral", "arithmetic": "arithmetic"}


def kind_for_task(task: str) -> VariantKind:
    if task not in TASK_KINDS:
        raise ConfigError(f"LADDER has no variant generator for task '{task}'; it works on: {', '.join(sorted(TASK_KINDS))}")
    return KINDS[TASK_KINDS[task]]


def request_plan(request_index: int, rng: np.random.Generator, kind: VariantKind) -> dict[str, Any]:
    """The paper's prompt diversity for one request: 3-5 transformations (in library order), temperature, persona."""
    k = int(rng.integers(3, min(5, len(kind.transforms)) + 1))
    picked = sorted(rng.choice(len(kind.transforms), size=k, replace=False))
    return {"transforms": [kind.transforms[int(i)] for i in picked],
            "temperature": TEMPERATURES[request_index % len(TEMPERATURES)],
            "persona": PERSONAS[request_index % len(PERSONAS)]}
