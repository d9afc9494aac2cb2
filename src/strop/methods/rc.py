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

from strop.backends.base import Backend, Generation, GenRequest, SamplingParams
from strop.backends.chat import user_turn
from strop.errors import ConfigError
from strop.methods.base import Events, Flat, MethodResult, MethodSpec, Progress, register_method
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


def _ask(model: Backend, system: str | None, text: str, params: SamplingParams, rng: np.random.Generator) -> GenRequest:
    return GenRequest(model.chat_prompt(user_turn(text, system)), params, rng)


def _result(name: str, config: RCConfig, gens: list[Generation], turns: list[dict[str, Any]], elapsed_s: float, extract) -> MethodResult:
    last = gens[-1] if not turns else gens[turns[-1]["reasoning_index"]]
    stats = {
        "turns": turns,
        "decoded_tokens": sum(g.completion_tokens for g in gens),
        "elapsed_s": elapsed_s,
    }
    return MethodResult(name, asdict(config), tuple(gens), gens.index(last), extract(last.text), stats)


def rc(model: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None, system: str | None = None,
       config: RCConfig | None = None, summary: str = "", extract: Callable[[str], str | None] = extract_answer,
       events: Events | None = None):
    """RC decoding as a step machine: turn t sees only the problem and the summary of turns < t.

    ``summary`` starts from a given summary instead of the empty one (RC
    training resumes rollouts from its replay buffer this way).
    ``events("turn", turn)`` sees each finished turn (the server streams turns this way).
    """
    config = config or RCConfig()
    started = time.perf_counter()
    gens: list[Generation] = []
    turns: list[dict[str, Any]] = []
    current = summary
    for t in range(1, config.turns + 1):
        (r,) = yield [_ask(model, system, reason_prompt(config, question, current), config.params(config.reasoning_tokens), rng)]
        (s,) = yield [_ask(model, system, summary_prompt(config, question, r.text, current), config.params(config.summary_tokens), rng)]
        gens += [r, s]
        turn = {"turn": t, "reasoning": r.text, "summary": s.text, "answer": extract(r.text),
                "reasoning_tokens": r.completion_tokens, "summary_tokens": s.completion_tokens,
                "conditioned_on_summary": current, "reasoning_index": len(gens) - 2}
        turns.append(turn)
        if events:
            events("turn", {k: turn[k] for k in ("turn", "reasoning", "summary", "answer")})
        current = s.text
        if progress:
            progress(t, config.turns)
    return _result("rc", config, gens, turns, time.perf_counter() - started, extract)


def rc_batch(backend: Backend, questions: Sequence[str], rngs: Sequence[np.random.Generator], *, config: RCConfig | None = None,
             system: str | None = None, summaries: Sequence[str] | None = None, progress: Progress | None = None,
             extract: Callable[[str], str | None] = extract_answer) -> list[MethodResult]:
    """RC on several questions at once through the engine, row i drawing only from ``rngs[i]``.

    The same random streams as one-question runs (batched float rounding aside,
    see ``strop.engine``). ``summaries`` start rows from a given summary.
    ``progress(done, n)`` counts finished questions.
    """
    from strop.engine import Engine

    if len(rngs) != len(questions) or (summaries is not None and len(summaries) != len(questions)):
        raise ConfigError(f"rc_batch needs one rng (and start summary) per question; got {len(questions)} questions, "
                          f"{len(rngs)} rngs, {len(summaries) if summaries is not None else 'no'} summaries")
    starts = list(summaries) if summaries is not None else [""] * len(questions)
    done = [0]

    def finished(i: int, result: MethodResult) -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(questions))

    return Engine(backend).run([rc(backend, q, r, system=system, config=config, summary=s, extract=extract)
                                for q, r, s in zip(questions, rngs, starts)], on_result=finished)


def self_refine(model: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None,
                system: str | None = None, config: RCConfig | None = None,
                extract: Callable[[str], str | None] = extract_answer):
    """Turns that carry the whole previous attempt instead of a summary (RC's comparison point)."""
    config = config or RCConfig()
    started = time.perf_counter()
    gens: list[Generation] = []
    turns: list[dict[str, Any]] = []
    attempt = ""
    for t in range(1, config.turns + 1):
        prompt = config.reason_template.format(problem=question) if not attempt else config.refine_template.format(problem=question, attempt=attempt)
        (r,) = yield [_ask(model, system, prompt, config.params(config.reasoning_tokens), rng)]
        gens.append(r)
        turns.append({"turn": t, "reasoning": r.text, "answer": extract(r.text), "reasoning_tokens": r.completion_tokens,
                      "conditioned_on_attempt": attempt, "reasoning_index": len(gens) - 1})
        attempt = r.text
        if progress:
            progress(t, config.turns)
    return _result("self-refine", config, gens, turns, time.perf_counter() - started, extract)


def long_generation(model: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None,
                    system: str | None = None, config: RCConfig | None = None,
                    extract: Callable[[str], str | None] = extract_answer):
    """One generation with RC's whole budget, T * (H_R + H_S) tokens."""
    config = config or RCConfig()
    started = time.perf_counter()
    (g,) = yield [_ask(model, system, config.reason_template.format(problem=question),
                       config.params(config.turns * (config.reasoning_tokens + config.summary_tokens)), rng)]
    return _result("long", config, [g], [], time.perf_counter() - started, extract)


def _settings(f: Flat) -> dict:
    return {"config": RCConfig(turns=f.turns, reasoning_tokens=f.reasoning_tokens, summary_tokens=f.summary_tokens,
                               temperature=f.temperature, top_p=f.top_p)}


def _rc_budget(kw: dict) -> int:
    cfg = kw["config"]
    return cfg.turns * (cfg.reasoning_tokens + cfg.summary_tokens)


register_method(MethodSpec("rc", rc, _settings, _rc_budget, input="question", events=("turn",), unit="turns",
                           help="RC: reasoning turns, each from a summary of the last (--turns, --reasoning-tokens, --summary-tokens)"))
register_method(MethodSpec("self-refine", self_refine, _settings, lambda kw: kw["config"].turns * kw["config"].reasoning_tokens,
                           input="question", unit="turns", help="turns that carry the whole previous attempt (RC's comparison point)"))
register_method(MethodSpec("long", long_generation, _settings, _rc_budget, input="question",
                           help="one generation with RC's whole budget, T * (H_R + H_S) tokens"))
