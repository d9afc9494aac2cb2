"""``strop demo`` (what ``make run`` shows): plain sampling vs power sampling on the same small questions.

The questions are one-digit sums, where the embedded 135M model is neither
always right nor always wrong: plain sampling at temperature 1 gets about one
in six, power sampling (Metropolis-Hastings towards p^alpha) about half
(docs/power_sampling.md, 100 problems). The demo answers each question with
both methods from the same seed and prints accuracy, decoded tokens and
seconds side by side, so a new user sees in about a minute what strop is for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from strop.backends.base import Backend, SamplingParams
from strop.methods import get_method
from strop.methods.power import PowerConfig
from strop.tasks import arithmetic_problems

# The settings measured in docs/power_sampling.md (accuracy table).
ALPHA, BLOCK, STEPS, MAX_TOKENS = 4.0, 16, 10, 48
DEMO_SEED = 2026


@dataclass(frozen=True)
class DemoRow:
    method: str
    correct: int
    total: int
    decoded_tokens: int
    seconds: float


def demo_methods() -> dict[str, Callable]:
    plain = SamplingParams(max_tokens=MAX_TOKENS, temperature=1.0)
    power = PowerConfig(alpha=ALPHA, block_size=BLOCK, mcmc_steps=STEPS, max_tokens=MAX_TOKENS, cut="uniform")
    return {
        "sample (temperature 1)": lambda be, prompt, rng: get_method("sample")(be, prompt, rng, params=plain),
        f"power (alpha {ALPHA:g}, MH)": lambda be, prompt, rng: get_method("power")(be, prompt, rng, config=power),
    }


def run_demo(backend: Backend, n: int = 20, seed: int = 0, progress: Callable[[str, int, int], None] | None = None) -> list[DemoRow]:
    """Each method on the same ``n`` one-digit sums; attempt i of every method draws from rng([seed, i])."""
    problems = arithmetic_problems(n, seed=DEMO_SEED, digits=1, template="{expr} = ?")
    rows = []
    for name, fn in demo_methods().items():
        correct = tokens = 0
        started = time.perf_counter()
        for i, prob in enumerate(problems):
            res = fn(backend, backend.chat_prompt(prob.question), np.random.default_rng([seed, i]))
            correct += prob.check(res.text)
            tokens += res.decoded_tokens
            if progress:
                progress(name, i + 1, n)
        rows.append(DemoRow(name, correct, n, tokens, time.perf_counter() - started))
    return rows
