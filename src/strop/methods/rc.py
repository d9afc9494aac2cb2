"""RC: iterative reasoning where each turn continues from a summary of the last (Wu et al., arXiv 2602.03773).

Turn t = 1..T: reason from (problem, summary s_{t-1}) for at most H_R tokens,
then summarise (problem, reasoning r_t, s_{t-1}) in at most H_S tokens. Only
the latest summary is carried; earlier reasoning is dropped. Every turn's
boxed answer is recorded and all T turns run (no early stop); the final
answer is the last turn's.

Comparison points from the paper, same interface:
- ``long``: one generation with the whole budget, T * (H_R + H_S) tokens;
- ``self-refine``: turns that carry the full previous attempt instead of a summary.

Prompts are named templates (``strop.methods.rc_prompts``): strop's own by
default, or a folder of text files (``--rc-prompts DIR``), the same ones RC
training uses. For thinking models, a reasoning turn's answer and every
summary carried to the next turn are read from the visible text only
(``strop.backends.thinking``, with the backend's ``think_tags``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from strop.backends.base import Backend, Generation, GenRequest, SamplingParams
from strop.backends.chat import user_turn
from strop.backends.thinking import THINK, ThinkTags, strip_thinking, thinking_text
from strop.errors import ConfigError
from strop.methods.base import Events, MethodResult, MethodSpec, Progress, register_method
from strop.methods.basic import TEMPERATURE, TOP_P
from strop.methods.options import PANEL_R, Option, Settings
from strop.methods.rc_prompts import RCPrompts, load_prompts
from strop.verifiers.extract import extract_answer


@dataclass(frozen=True)
class RCConfig:
    """Settings of RC decoding (and of its comparison points).

    Attributes:
        turns: T, reasoning turns (all of them run).
        reasoning_tokens: H_R, most tokens per reasoning turn.
        summary_tokens: H_S, most tokens per summary.
        temperature, top_p: sampling for reasoning and summaries.
        prompts: the templates (``strop.methods.rc_prompts``): strop's own, or a folder's (``--rc-prompts DIR``).
        summarise_thinking: what the summariser (and self-refine's next turn) reads of a thinking model's
            reasoning turn. False: its visible text, reasoning blocks removed. True: its reasoning blocks'
            text, tags removed (the whole turn if it has none), as the reference code does: a turn cut off
            by H_R while still thinking has no visible text to summarise.
    """

    turns: int = 4
    reasoning_tokens: int = 256
    summary_tokens: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    prompts: RCPrompts = field(default_factory=RCPrompts)
    summarise_thinking: bool = False

    def __post_init__(self) -> None:
        for name in ("turns", "reasoning_tokens", "summary_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        SamplingParams(temperature=self.temperature, top_p=self.top_p)  # validates both
        if not isinstance(self.prompts, RCPrompts):
            raise ConfigError(f"prompts must be an RCPrompts (strop.methods.rc_prompts), got {type(self.prompts).__name__}")
        if not isinstance(self.summarise_thinking, bool):
            raise ConfigError(f"summarise_thinking must be true or false, got {self.summarise_thinking!r}")

    def params(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p)


def reason_prompt(config: RCConfig, question: str, summary: str) -> str:
    """The reasoning turn's instruction: the problem alone at the start, else the problem and the latest summary.

    RC training builds its traces' prompts here too, so a trained model is
    evaluated on exactly the prompts it was trained on.
    """
    return config.prompts.reason_prompt(question, summary)


def summary_prompt(config: RCConfig, question: str, reasoning: str, summary: str) -> str:
    """The summariser's instruction: problem, the previous summary (if any) and the latest reasoning."""
    return config.prompts.summary_prompt(question, reasoning, summary)


def _read(config: RCConfig, text: str, tags: ThinkTags) -> str:
    """What the summariser (or self-refine's next turn) reads of a reasoning turn (``RCConfig.summarise_thinking``)."""
    return thinking_text(text, tags) if config.summarise_thinking else strip_thinking(text, tags)


def _ask(model: Backend, system: str | None, text: str, params: SamplingParams, rng: np.random.Generator) -> GenRequest:
    return GenRequest(model.chat_prompt(user_turn(text, system)), params, rng)


def _tags(model: Backend) -> ThinkTags:
    return getattr(model, "think_tags", THINK)


def _result(name: str, config: RCConfig, gens: list[Generation], turns: list[dict[str, Any]], elapsed_s: float, extract,
            tags: ThinkTags) -> MethodResult:
    last = gens[-1] if not turns else gens[turns[-1]["reasoning_index"]]
    stats = {
        "turns": turns,
        "decoded_tokens": sum(g.completion_tokens for g in gens),
        "elapsed_s": elapsed_s,
    }
    return MethodResult(name, asdict(config), tuple(gens), gens.index(last), extract(strip_thinking(last.text, tags)), stats)


def rc(model: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None, system: str | None = None,
       config: RCConfig | None = None, summary: str = "", extract: Callable[[str], str | None] = extract_answer,
       events: Events | None = None):
    """RC decoding as a step machine: turn t sees only the problem and the summary of turns < t.

    ``summary`` starts from a given summary instead of the empty one (RC
    training resumes rollouts from its replay buffer this way).
    ``events("turn", turn)`` sees each finished turn (the server streams turns this way).
    """
    config = config or RCConfig()
    tags = _tags(model)
    started = time.perf_counter()
    gens: list[Generation] = []
    turns: list[dict[str, Any]] = []
    current = summary
    for t in range(1, config.turns + 1):
        (r,) = yield [_ask(model, system, reason_prompt(config, question, current), config.params(config.reasoning_tokens), rng)]
        (s,) = yield [_ask(model, system, summary_prompt(config, question, _read(config, r.text, tags), current),
                           config.params(config.summary_tokens), rng)]
        gens += [r, s]
        # The next turn reads what the summariser said, not what it thought (its candidates keep the whole text).
        carried = strip_thinking(s.text, tags)
        turn = {"turn": t, "reasoning": r.text, "summary": carried, "answer": extract(strip_thinking(r.text, tags)),
                "reasoning_tokens": r.completion_tokens, "summary_tokens": s.completion_tokens,
                "conditioned_on_summary": current, "reasoning_index": len(gens) - 2}
        turns.append(turn)
        if events:
            events("turn", {k: turn[k] for k in ("turn", "reasoning", "summary", "answer")})
        current = carried
        if progress:
            progress(t, config.turns)
    return _result("rc", config, gens, turns, time.perf_counter() - started, extract, tags)


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
    tags = _tags(model)
    started = time.perf_counter()
    gens: list[Generation] = []
    turns: list[dict[str, Any]] = []
    attempt = ""
    for t in range(1, config.turns + 1):
        prompt = config.prompts.refine_prompt(question, attempt)
        (r,) = yield [_ask(model, system, prompt, config.params(config.reasoning_tokens), rng)]
        gens.append(r)
        turns.append({"turn": t, "reasoning": r.text, "answer": extract(strip_thinking(r.text, tags)), "reasoning_tokens": r.completion_tokens,
                      "conditioned_on_attempt": attempt, "reasoning_index": len(gens) - 1})
        attempt = _read(config, r.text, tags)
        if progress:
            progress(t, config.turns)
    return _result("self-refine", config, gens, turns, time.perf_counter() - started, extract, tags)


def long_generation(model: Backend, question: str, rng: np.random.Generator, *, progress: Progress | None = None,
                    system: str | None = None, config: RCConfig | None = None,
                    extract: Callable[[str], str | None] = extract_answer):
    """One generation with RC's whole budget, T * (H_R + H_S) tokens."""
    config = config or RCConfig()
    started = time.perf_counter()
    (g,) = yield [_ask(model, system, config.prompts.reason_prompt(question, ""),
                       config.params(config.turns * (config.reasoning_tokens + config.summary_tokens)), rng)]
    return _result("long", config, [g], [], time.perf_counter() - started, extract, _tags(model))


TURNS = Option("turns", int, 4, "rc/self-refine: turns T (long: budget T * (H_R + H_S)).", ge=1, panel=PANEL_R)
REASONING_TOKENS = Option("reasoning_tokens", int, 256, "rc: most tokens per reasoning turn (H_R).", ge=1, panel=PANEL_R)
SUMMARY_TOKENS = Option("summary_tokens", int, 96, "rc: most tokens per summary (H_S).", ge=1, panel=PANEL_R)
# On the command line and in recipes a folder of templates; the server sets them for all requests (strop serve --rc-prompts).
RC_PROMPTS = Option("rc_prompts", str, None, "rc/self-refine/long: a folder of prompt templates (reason.txt, summarize.txt, ...;"
                                             " docs/evaluation.md); default: strop's own.", nullable=True, panel=PANEL_R,
                    parse=load_prompts, server=False)
SUMMARISE_THINKING = Option("summarise_thinking", bool, False, "rc/self-refine: summarise a thinking model's reasoning blocks (the"
                                                               " reference code's way) instead of its visible text.", panel=PANEL_R)
RC_OPTIONS = (TURNS, REASONING_TOKENS, SUMMARY_TOKENS, RC_PROMPTS, SUMMARISE_THINKING, TEMPERATURE, TOP_P)


def _settings(f: Settings) -> dict:
    return {"config": RCConfig(turns=f.turns, reasoning_tokens=f.reasoning_tokens, summary_tokens=f.summary_tokens,
                               temperature=f.temperature, top_p=f.top_p, prompts=f.rc_prompts or RCPrompts(),
                               summarise_thinking=f.summarise_thinking)}


def _rc_budget(kw: dict) -> int:
    cfg = kw["config"]
    return cfg.turns * (cfg.reasoning_tokens + cfg.summary_tokens)


register_method(MethodSpec("rc", rc, _settings, _rc_budget, input="question", events=("turn",), unit="turns", options=RC_OPTIONS,
                           help="RC: reasoning turns, each from a summary of the last (--turns, --reasoning-tokens, --summary-tokens)"))
register_method(MethodSpec("self-refine", self_refine, _settings, lambda kw: kw["config"].turns * kw["config"].reasoning_tokens,
                           input="question", options=RC_OPTIONS, unit="turns", help="turns that carry the whole previous attempt (RC's comparison point)"))
register_method(MethodSpec("long", long_generation, _settings, _rc_budget, input="question", options=RC_OPTIONS,
                           help="one generation with RC's whole budget, T * (H_R + H_S) tokens"))
