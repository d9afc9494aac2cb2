"""RC decoding on a scripted backend: exactly what each turn is conditioned on."""

from __future__ import annotations

import numpy as np
import pytest

from strop.backends.scripted import ScriptedBackend
from strop.errors import ConfigError
from strop.methods import run_method
from strop.methods.rc import RCConfig


def scripted():
    """Reasoning turn k answers \\boxed{k}; summary k says 'S<k>'. Counts calls to know which turn it is."""
    state = {"r": 0, "s": 0}

    def respond(prompt: str) -> str:
        if "Write a first-person summary" in prompt:
            state["s"] += 1
            return f"S{state['s']}"
        state["r"] += 1
        return f"reasoning {state['r']} so \\boxed{{{state['r']}}}"

    return ScriptedBackend(respond)


def test_turn_t_sees_only_the_problem_and_the_summary_of_turn_t_minus_1():
    b = scripted()
    r = run_method("rc", b, "PROBLEM-X", np.random.default_rng(0), config=RCConfig(turns=3))
    reason_prompts = [p for p in b.prompts if "Write a first-person summary" not in p]
    summary_prompts = [p for p in b.prompts if "Write a first-person summary" in p]
    assert len(reason_prompts) == len(summary_prompts) == 3
    # turn 1: no summary; turn t: summary of turn t-1 only, never earlier reasoning or summaries
    assert "summary of my earlier attempt" not in reason_prompts[0]
    assert "S1" in reason_prompts[1] and "reasoning 1" not in reason_prompts[1]
    assert "S2" in reason_prompts[2] and "S1" not in reason_prompts[2] and "reasoning" not in reason_prompts[2].replace("PROBLEM-X", "")
    assert all("PROBLEM-X" in p for p in b.prompts)
    # the summary of turn t sees the problem, turn t's reasoning and the summary of turn t-1
    assert "reasoning 2" in summary_prompts[1] and "S1" in summary_prompts[1] and "reasoning 1" not in summary_prompts[1]
    assert "S" not in summary_prompts[0].split("Here is my latest attempt")[0].replace("PROBLEM-X", "").replace("Summary", "")
    turns = r.stats["turns"]
    assert [t["answer"] for t in turns] == ["1", "2", "3"] and r.answer == "3"
    assert [t["conditioned_on_summary"] for t in turns] == ["", "S1", "S2"]
    assert r.decoded_tokens == sum(g.completion_tokens for g in r.candidates)


def test_budgets_cap_reasoning_and_summaries():
    b = ScriptedBackend(lambda p: "x" * 1000)
    r = run_method("rc", b, "P", np.random.default_rng(0), config=RCConfig(turns=2, reasoning_tokens=50, summary_tokens=7))
    assert [t["reasoning_tokens"] for t in r.stats["turns"]] == [50, 50]
    assert [t["summary_tokens"] for t in r.stats["turns"]] == [7, 7]


def test_self_refine_carries_the_whole_previous_attempt_and_long_gets_the_whole_budget():
    b = scripted()
    run_method("self-refine", b, "P", np.random.default_rng(0), config=RCConfig(turns=3))
    assert "reasoning 1" in b.prompts[1] and "reasoning 2" in b.prompts[2] and "reasoning 1" not in b.prompts[2]
    long_b = ScriptedBackend(lambda p: "y" * 10_000)
    r = run_method("long", long_b, "P", np.random.default_rng(0), config=RCConfig(turns=3, reasoning_tokens=100, summary_tokens=20))
    assert r.decoded_tokens == 3 * (100 + 20) and len(long_b.prompts) == 1


def test_config_validation():
    with pytest.raises(ConfigError, match="turns"):
        RCConfig(turns=0)
    with pytest.raises(ConfigError, match="temperature"):
        RCConfig(temperature=-1)
