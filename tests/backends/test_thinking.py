"""Thinking models: reasoning blocks are hidden from answers, chat-template switches reach the template, hidden tokens are counted."""

from __future__ import annotations

import numpy as np
import pytest

from strop.backends.chat import render_chat
from strop.backends.scripted import ScriptedBackend
from strop.backends.thinking import ThinkTags, hidden_token_count, strip_thinking, thinking_spans, thinking_text
from strop.errors import ConfigError
from strop.methods import run_method
from strop.tasks import get_task
from strop.verifiers import extract_answer, extract_boxed, verify_math

BRACKETS = ThinkTags("[THINK]", "[/THINK]")


@pytest.mark.parametrize(("text", "visible"), [
    ("<think>maybe 41</think>The answer is 42.", "The answer is 42."),
    ("<think>a</think>b<think>c</think>d", "bd"),
    ("so far \\boxed{5} <think>no, \\boxed{6}, or", "so far \\boxed{5}"),  # cut off while thinking: nothing after <think>
    ("thinking opened by the template</think>\n\n42", "42"),                # the prompt ended with <think>
    ("<think>a</think>b</think>c", "bc"),                                   # a stray close tag is markup, dropped
    ("no tags at all, 7", "no tags at all, 7"),
    ("", ""),
])
def test_what_is_visible(text, visible):
    assert strip_thinking(text) == visible
    assert strip_thinking(strip_thinking(text)) == visible  # extraction strips at each entry: twice is once


def test_custom_tags_and_their_validation():
    assert strip_thinking("[THINK]6?[/THINK]7 <think>stays</think>", BRACKETS) == "7 <think>stays</think>"
    assert thinking_text("[THINK]try 6[/THINK]7", BRACKETS) == "try 6"
    with pytest.raises(ConfigError, match="differ"):
        ThinkTags("|", "|")
    with pytest.raises(ConfigError, match="close"):
        ThinkTags("<t>", " ")


def test_scanning_hostile_text_stays_linear():
    text = "<think>" * 200_000 + "x"  # every open tag after the first sits inside the first block
    assert thinking_spans(text) == [(0, len(text))] and strip_thinking(text) == ""


@pytest.mark.parametrize(("completion", "visible_answer", "tag_answer"), [
    ("<think>draft \\boxed{41}</think>so \\boxed{42} done", "42", "42"),
    ("\\boxed{5} <think>hmm, \\boxed{6}", "5", "6"),                     # the old reading: the unclosed thought's box
    ("The answer is 8.<think>or is the answer is 9", "8", "9"),
    ("12 + 30 = 42 <think>43", "42", "43"),
])
def test_answer_extraction_reads_only_the_visible_text(completion, visible_answer, tag_answer):
    assert extract_answer(completion) == visible_answer
    assert extract_answer(completion.replace("<think>", "")) == tag_answer  # the same text without the block reads otherwise


def test_every_verifier_entry_ignores_the_reasoning_block():
    assert extract_boxed("\\boxed{5} <think>\\boxed{6}") == "5"
    assert verify_math("6", "\\boxed{5} <think>maybe \\boxed{6}").verdict.value == "incorrect"
    assert verify_math("5", "<think>maybe \\boxed{6}</think> \\boxed{5}").verdict.value == "correct"
    arith = get_task("arithmetic")
    p = arith.load(seed=3)[0]
    right = str(p.gold)
    assert arith.check(p, f"<think>\\boxed{{{right}}}</think> \\boxed{{{int(right) + 1}}}").correct is False
    assert arith.check(p, f"<think>\\boxed{{{int(right) + 1}}}</think> \\boxed{{{right}}}").correct is True
    from strop.verifiers.countdown import extract_expression

    assert extract_expression("<answer>1+2</answer> <think><answer>3*4</answer>") == "1+2"


def test_hidden_tokens_are_counted_on_multi_character_tokens():
    vocab = ["<think>", "ab", "c", "</think>", "x", "yz"]

    def detok(ids):
        return "".join(vocab[i] for i in ids)

    ids = [4, 0, 1, 2, 3, 5]  # x <think> ab c </think> yz
    assert hidden_token_count(detok, ids, detok(ids)) == 4
    ids = [4, 0, 1, 2]  # cut off while thinking
    assert hidden_token_count(detok, ids, detok(ids)) == 3
    assert hidden_token_count(detok, [4, 5], "xyz") == 0


def test_methods_count_thinking_tokens_and_use_the_backends_own_tags():
    b = ScriptedBackend(lambda p: "[THINK]I guess \\boxed{1}[/THINK]It is \\boxed{2}")
    r = run_method("sample", b, "Q?", np.random.default_rng(0))
    assert r.answer == "2"  # last box; strop's default tags do not match these, so nothing is hidden
    assert r.stats["thinking_tokens"] == 0
    b.think_tags = BRACKETS
    r = run_method("majority", b, "Q?", np.random.default_rng(0), n=3)
    assert r.answer == "2" and r.stats["thinking_tokens"] == 3 * len("[THINK]I guess \\boxed{1}[/THINK]")
    b2 = ScriptedBackend(lambda p: "It is \\boxed{2}[THINK]no, \\boxed{1}")
    b2.think_tags = BRACKETS
    assert run_method("greedy", b2, "Q?", np.random.default_rng(0)).answer == "2"


# ------------------------------------------------------------- chat-template switches
SWITCHED = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% if enable_thinking is defined and not enable_thinking %}"
            "<think></think>{% endif %}{% endif %}")


def test_chat_template_switches_reach_the_template():
    msgs = [{"role": "user", "content": "hi"}]
    assert render_chat(SWITCHED, msgs) == "<user>hi<assistant>"
    assert render_chat(SWITCHED, msgs, template_kwargs={"enable_thinking": False}) == "<user>hi<assistant><think></think>"
    with pytest.raises(ConfigError, match="messages"):
        render_chat(SWITCHED, msgs, template_kwargs={"messages": []})


def test_chat_prompt_passes_the_backends_switches_and_a_calls_own():
    b = ScriptedBackend(lambda p: "ok")
    b.chat_template = SWITCHED
    assert b.detokenize(b.chat_prompt("hi")) == "<user>hi<assistant>"
    b.chat_template_kwargs = {"enable_thinking": False}
    assert b.detokenize(b.chat_prompt("hi")) == "<user>hi<assistant><think></think>"
    assert b.detokenize(b.chat_prompt("hi", template_kwargs={"enable_thinking": True})) == "<user>hi<assistant>"
    # every method's prompts go through chat_prompt, RC's included
    from strop.methods.rc import RCConfig

    run_method("rc", b, "P", np.random.default_rng(0), config=RCConfig(turns=1))
    assert all(p.endswith("<assistant><think></think>") for p in b.prompts)
