"""RC decoding on a scripted backend: exactly what each turn is conditioned on."""

from __future__ import annotations

import json
from dataclasses import asdict

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


# ---------------------------------------------------------------- templates from files
def _records(result):
    """What an RC result says, without its wall times."""
    d = result.to_dict()
    d["stats"] = {k: v for k, v in d["stats"].items() if k != "elapsed_s"}
    d["candidates"] = [{k: v for k, v in c.items() if k not in ("seconds", "elapsed_s")} for c in d["candidates"]]
    return d


@pytest.mark.parametrize("method", ["rc", "self-refine", "long"])
def test_templates_loaded_from_files_holding_the_default_text_give_identical_records(tmp_path, method):
    from strop.methods.rc_prompts import RCPrompts, load_prompts, write_prompts

    loaded = load_prompts(write_prompts(RCPrompts(), tmp_path / "prompts"))
    assert loaded == RCPrompts()
    runs = []
    for prompts in (RCPrompts(), loaded):
        b = scripted()
        r = run_method(method, b, "PROBLEM-X", np.random.default_rng(0), config=RCConfig(turns=3, prompts=prompts))
        runs.append((b.prompts, _records(r)))
    assert runs[0] == runs[1]
    assert runs[0][0][0].startswith("Question: PROBLEM-X\n\nSolve the problem step by step")  # strop's own wording


def test_the_harness_gives_identical_records_with_default_and_file_templates(tmp_path):
    from strop.evaluation.harness import EvalSpec, evaluate
    from strop.methods import Settings, method_spec
    from strop.methods.rc_prompts import RCPrompts, load_prompts, write_prompts
    from strop.tasks import get_task

    task = get_task("arithmetic")
    problems = task.load(seed=3)[:4]
    loaded = load_prompts(write_prompts(RCPrompts(), tmp_path / "prompts"))
    out = []
    for name, prompts in (("default", RCPrompts()), ("files", loaded)):
        kwargs = method_spec("rc").settings(Settings(turns=2, reasoning_tokens=40, summary_tokens=10, rc_prompts=prompts))
        spec = EvalSpec("arithmetic", "rc", "scripted", None, samples=2, method_config={"config": asdict(kwargs["config"])})
        evaluate(spec, task, problems, scripted(), tmp_path / name, method_kwargs=kwargs, batch_size=1)
        rows = [json.loads(x) for x in (tmp_path / name / "records.jsonl").read_text().splitlines()]
        out.append(sorted(({k: v for k, v in r.items() if k not in ("seconds", "pid", "stats")} for r in rows),
                          key=lambda r: (r["id"], r["sample"])))
    assert out[0] == out[1] and len(out[0]) == 8
    assert out[0][0]["config"]["config"]["prompts"]["reason"] == RCPrompts().reason  # the records name the templates


def test_one_template_file_per_role_serves_every_turn_with_an_empty_summary_on_turn_one(tmp_path):
    """The reference code's layout: one reasoning and one summarising prompt, each with a summary section."""
    from strop.methods.rc_prompts import load_prompts

    (tmp_path / "reason.txt").write_text("R|{problem}|prev:{summary}|\\boxed{{}}")
    (tmp_path / "summarize.txt").write_text("S|{problem}|old:{summary}|new:{reasoning}")
    prompts = load_prompts(tmp_path)
    b = ScriptedBackend(lambda p: "sum" if "S|" in p else "think \\boxed{4}")
    r = run_method("rc", b, "Q7", np.random.default_rng(0), config=RCConfig(turns=2, prompts=prompts))
    # ScriptedBackend has no chat template: strop's plain one wraps each prompt as "Question: ...\nAnswer:".
    assert b.prompts == ["Question: R|Q7|prev:|\\boxed{}\nAnswer:",
                         "Question: S|Q7|old:|new:think \\boxed{4}\nAnswer:",
                         "Question: R|Q7|prev:sum|\\boxed{}\nAnswer:",
                         "Question: S|Q7|old:sum|new:think \\boxed{4}\nAnswer:"]
    assert r.answer == "4"


def test_template_problems_are_one_error_naming_every_one(tmp_path):
    from strop.methods.rc_prompts import RCPrompts, load_prompts

    (tmp_path / "reason.txt").write_text("{problem} {curr_summary}")           # the reference's name for the summary
    (tmp_path / "summarize.txt").write_text("{reasoning} and a stray } brace")  # and no {problem}
    (tmp_path / "reasoning_prompt.txt").write_text("x")                        # not a template name
    with pytest.raises(ConfigError) as e:
        load_prompts(tmp_path)
    msg = str(e.value)
    for part in ("{curr_summary} (rename it {summary})", "reasoning_prompt.txt", "Single '}'", "reason_from_summary"):
        assert part in msg, (part, msg)
    assert msg.count("\n") >= 3  # every problem on its own line, in one error
    (tmp_path / "reasoning_prompt.txt").unlink()
    (tmp_path / "summarize.txt").write_text("{reasoning} only")
    (tmp_path / "reason.txt").write_text("{problem} {summary}")
    with pytest.raises(ConfigError, match=r"missing field \{problem\}"):
        load_prompts(tmp_path)
    with pytest.raises(ConfigError, match="missing reason.txt"):
        load_prompts(_empty(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="not a folder"):
        load_prompts(tmp_path / "nothing-here")
    with pytest.raises(ConfigError, match=r"unknown field \{attempt\}"):
        RCPrompts(reason_from_summary="{problem} {summary} {attempt}")
    with pytest.raises(ConfigError, match="positional|unknown field"):
        RCPrompts(reason="{problem} \\boxed{}")  # an unescaped brace pair is a positional field


def _empty(folder):
    folder.mkdir()
    return folder


# ---------------------------------------------------------------- thinking models
def thinking_scripted():
    """Reasoning: drafts \\boxed{7} while thinking, answers \\boxed{3}; summaries think 'secret' and say 'S<k>'."""
    state = {"s": 0}

    def respond(prompt: str) -> str:
        if "Write a first-person summary" in prompt:
            state["s"] += 1
            return f"<think>secret {state['s']}</think>S{state['s']}"
        return "<think>draft: maybe \\boxed{7}</think>So \\boxed{3}"

    return ScriptedBackend(respond)


def test_rc_reads_answers_and_carries_summaries_from_the_visible_text_of_a_thinking_model():
    b = thinking_scripted()
    r = run_method("rc", b, "P", np.random.default_rng(0), config=RCConfig(turns=2))
    turns = r.stats["turns"]
    assert [t["answer"] for t in turns] == ["3", "3"] and r.answer == "3"
    assert [t["summary"] for t in turns] == ["S1", "S2"]
    summarise, reason2 = b.prompts[1], b.prompts[2]
    assert "So \\boxed{3}" in summarise and "draft" not in summarise  # the summariser reads the visible text
    assert "S1" in reason2 and "secret" not in reason2  # the next turn reads what the summariser said
    # hidden tokens: the scripted backend has one token per character
    hidden = 2 * len("<think>draft: maybe \\boxed{7}</think>") + len("<think>secret 1</think>") + len("<think>secret 2</think>")
    assert r.stats["thinking_tokens"] == hidden


def test_summarise_thinking_gives_the_summariser_the_reasoning_blocks_as_the_reference_does():
    b = thinking_scripted()
    run_method("rc", b, "P", np.random.default_rng(0), config=RCConfig(turns=1, summarise_thinking=True))
    assert "draft: maybe \\boxed{7}" in b.prompts[1] and "So \\boxed{3}" not in b.prompts[1] and "<think>" not in b.prompts[1]


def test_a_reasoning_turn_cut_off_while_thinking_has_no_answer():
    b = ScriptedBackend(lambda p: "S" if "Write a first-person summary" in p else "\\boxed{5} <think>no wait, \\boxed{6} or")
    r = run_method("rc", b, "P", np.random.default_rng(0), config=RCConfig(turns=1))
    assert r.answer == "5"
