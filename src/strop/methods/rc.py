"""RC: iterative reasoning where each turn continues from a summary of the last (Wu et al., arXiv 2602.03773).

Turn t = 1..T: reason from (problem, summary s_{t-1}) for at most H_R tokens,
then summarise (problem, reasoning r_t, s_{t-1}) in at most H_S tokens. Only
the latest summary is carried; earlier reasoning is dropped. Every turn's
boxed answer is recorded and all T turns run (no early stop); the final
answer is the last turn's.

Comparison points from the paper, same interface:
- ``long``: one generation with the whole budget, T * (H_R + H_S) tokens;
- ``self-refine``: turns that carry the full previous attempt instead of a summary.

Prompts are templates (``RCConfig``), editable per run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from strop.backends.base import Backend, Generation, SamplingParams
from strop.backends.chat import user_turn
from strop.errors import ConfigError
from strop.methods.base import MethodResult, Progress, register_method
from strop.verifiers.extract import extract_answer

REASON = (
    "{problem}\n\nSolve the problem step by step and put your final answer in \\boxed{{}}."
)
REASON_FROM_SUMMARY = (
    "{problem}\n\nHere is a summary of my earlier attempt at this problem:\n{summary}\n\n"
    "Improve on it: check the summary, verify its answer or prove it another way, try a different strategy, "
    "or continue where it left off. Put your final answer in \\boxed{{}}."
)
SUMMARIZE = (
    "{problem}\n\n{previous}Here is my latest attempt:\n{reasoning}\n\n"
    "Write a first-person summary of my work so far in at most two short paragraphs: what I tried, what I found, "
    "and my current answer. Keep what matters from the earlier summary. Do not add new reasoning."
)
PREVIOUS_SUMMARY = "Summary of my earlier attempts:\n{summary}\n\n"
REFINE = (
    "{problem}\n\nHere is my previous attempt:\n{attempt}\n\n"
    "Improve on it: check it, fix mistakes or try another way. Put your final answer in \\boxed{{}}."
)


@dataclass(frozen=True)
class RCConfig:
    """Settings of RC decoding (and of its comparison points).

    Attributes:
        turns: T, reasoning turns (all of them run).
        reasoning_tokens: H_R, most tokens per reasoning turn.
        summary_tokens: H_S, most tokens per summary.
        temperature, top_p: sampling for reasoning and summaries.
        reason_template / reason_from_summary_template / summary_template / refine_template:
            the prompts; ``{problem}``, ``{summary}``, ``{reasoning}``, ``{previous}``, ``{attempt}`` are filled in.
    """

    turns: int = 4
    reasoning_tokens: int = 256
    summary_tokens: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    reason_template: str = REASON
    reason_from_summary_template: str = REASON_FROM_SUMMARY
    summary_template: str = SUMMARIZE
    refine_template: str = REFINE

    def __post_init__(self) -> None:
        for name in ("turns", "reasoning_tokens", "summary_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        SamplingParams(temperature=self.temperature, top_p=self.top_p)  # validates both

    def params(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p)


def reason_prompt(config: RCConfig, question: str, summary: str) -> str:
    """The reasoning turn's instruction: the problem alone at the start, else the problem and the latest summary.

    RC training builds its traces' prompts here too, so a trained model is
    evaluated on exactly the prompts it was trained on.
    """
    if not summary:
        return config.reason_template.format(problem=question)
    return config.reason_from_summary_template.format(problem=question, summary=summary)


def summary_prompt(config: RCConfig, question: str, reasoning: str, summary: str) -> str:
    """The summariser's instruction: problem, the previous summary (if any) and the latest reasoning."""
    previous = PREVIOUS_SUMMARY.format(summary=summary) if summary else ""
    return config.summary_template.format(problem=question, previous=previous, reasoning=reasoning)


def _ask(backend: Backend, system: str | None, text: str, params: SamplingParams, rng: np.random.Generator) -> Generation:
    return backend.generate(backend.chat_prompt(user_turn(text, system)), params, rng)


def _result(name: str, config: RCConfig, gens: list[Generation], turns: list[dict[str, Any]], elapsed_s: float, extract) -> MethodResult:
    last = gens[-1] if not turns else gens[turns[-1]["reasoning_index"]]
    stats = {
        "turns": turns,
        "decoded_tokens": sum(g.completion_tokens for g in gens),
        "elapsed_s": elapsed_s,
    }
    return MethodResult(name, asdict(config), tuple(gens), gens.index(last), extract(last.text), stats)


def rc_batch(backend: Backend, questions: Sequence[str], rngs: Sequence[np.random.Generator], *, config: RCConfig | None = None,
             system: str | None = None, summaries: Sequence[str] | None = None, progress: Progress | None = None,
             extract: Callable[[str], str | None] = extract_answer,
             on_turn: Callable[[int, dict[str, Any]], None] | None = None) -> list[MethodResult]:
    """RC on several questions at once: each turn's reasoning steps are one batch, then its summaries.

    Row i draws only from ``rngs[i]`` (reasoning, then summary, turn by turn),
    as a one-question run with that rng does, so batching changes no random
    stream (batched float rounding aside, see ``HFBackend.generate_batch``).
    ``summaries`` start rows from a given summary instead of the empty one
    (RC training resumes rollouts from its replay buffer this way). Each
    result's ``elapsed_s`` is its share of the batch's wall time.
    ``on_turn(i, turn)`` is called as each row's turn finishes (the server streams turns this way).
    """
    config = config or RCConfig()
    if len(rngs) != len(questions) or (summaries is not None and len(summaries) != len(questions)):
        raise ConfigError(f"rc_batch needs one rng (and start summary) per question; got {len(questions)} questions, "
                          f"{len(rngs)} rngs, {len(summaries) if summaries is not None else 'no'} summaries")
    started = time.perf_counter()
    n = len(questions)
    gens: list[list[Generation]] = [[] for _ in range(n)]
    turns: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    current = list(summaries) if summaries is not None else [""] * n

    def ask_all(texts: list[str], max_tokens: int) -> list[Generation]:
        prompts = [backend.chat_prompt(user_turn(t, system)) for t in texts]
        return backend.generate_batch(prompts, config.params(max_tokens), rngs)

    for t in range(1, config.turns + 1):
        reasoning = ask_all([reason_prompt(config, q, s) for q, s in zip(questions, current)], config.reasoning_tokens)
        summary = ask_all([summary_prompt(config, q, r.text, s) for q, r, s in zip(questions, reasoning, current)], config.summary_tokens)
        for i, (r, s) in enumerate(zip(reasoning, summary)):
            gens[i] += [r, s]
            turns[i].append({"turn": t, "reasoning": r.text, "summary": s.text, "answer": extract(r.text),
                             "reasoning_tokens": r.completion_tokens, "summary_tokens": s.completion_tokens,
                             "conditioned_on_summary": current[i], "reasoning_index": len(gens[i]) - 2})
            if on_turn:
                on_turn(i, turns[i][-1])
        current = [s.text for s in summary]
        if progress:
            progress(t, config.turns)
    elapsed = (time.perf_counter() - started) / max(n, 1)
    return [_result("rc", config, g, ts, elapsed, extract) for g, ts in zip(gens, turns)]


@register_method("rc", takes_question=True)
def rc(backend: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None, system: str | None = None,
       config: RCConfig | None = None, extract: Callable[[str], str | None] = extract_answer,
       on_turn: Callable[[dict[str, Any]], None] | None = None) -> MethodResult:
    """RC decoding: turn t sees only the problem and the summary of turns < t. ``on_turn(turn)`` sees each finished turn."""
    return rc_batch(backend, [question], [rng], config=config, system=system, progress=progress, extract=extract,
                    on_turn=(lambda _, t: on_turn(t)) if on_turn else None)[0]


@register_method("self-refine", takes_question=True)
def self_refine(backend: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None,
                system: str | None = None, config: RCConfig | None = None,
                extract: Callable[[str], str | None] = extract_answer) -> MethodResult:
    """Turns that carry the whole previous attempt instead of a summary (RC's comparison point)."""
    config = config or RCConfig()
    started = time.perf_counter()
    gens: list[Generation] = []
    turns: list[dict[str, Any]] = []
    attempt = ""
    for t in range(1, config.turns + 1):
        prompt = config.reason_template.format(problem=question) if not attempt else config.refine_template.format(problem=question, attempt=attempt)
        r = _ask(backend, system, prompt, config.params(config.reasoning_tokens), rng)
        gens.append(r)
        turns.append({"turn": t, "reasoning": r.text, "answer": extract(r.text), "reasoning_tokens": r.completion_tokens,
                      "conditioned_on_attempt": attempt, "reasoning_index": len(gens) - 1})
        attempt = r.text
        if progress:
            progress(t, config.turns)
    return _result("self-refine", config, gens, turns, time.perf_counter() - started, extract)


@register_method("long", takes_question=True)
def long_generation(backend: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None,
                    system: str | None = None, config: RCConfig | None = None,
                    extract: Callable[[str], str | None] = extract_answer) -> MethodResult:
    """One generation with RC's whole budget, T * (H_R + H_S) tokens."""
    config = config or RCConfig()
    started = time.perf_counter()
    g = _ask(backend, system, config.reason_template.format(problem=question),
             config.params(config.turns * (config.reasoning_tokens + config.summary_tokens)), rng)
    return _result("long", config, [g], [], time.perf_counter() - started, extract)
