"""The method registry and the result every method returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from strop.backends.base import Backend, Generation
from strop.backends.chat import user_turn
from strop.errors import UnknownNameError


@dataclass(frozen=True, eq=False)
class MethodResult:
    """What a method produced for one prompt.

    ``candidates`` holds every completion the method decoded, ``chosen`` the
    index of the one it answers with; ``stats`` counts the compute it spent
    (decoded tokens include discarded candidates, so methods compare fairly).
    """

    method: str
    config: dict[str, Any]
    candidates: tuple[Generation, ...]
    chosen: int
    answer: str | None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.candidates[self.chosen].text

    @property
    def decoded_tokens(self) -> int:
        """Every token the method generated, discarded candidates and rejected proposals included."""
        if "decoded_tokens" in self.stats:
            return int(self.stats["decoded_tokens"])
        return sum(g.completion_tokens for g in self.candidates)

    def to_dict(self, *, candidates: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "config": self.config,
            "text": self.text,
            "answer": self.answer,
            "chosen": self.chosen,
            "decoded_tokens": self.decoded_tokens,
            "prompt_tokens": self.candidates[self.chosen].prompt_tokens,
            "stats": self.stats,
        }
        if candidates:
            out["candidates"] = [g.to_dict() for g in self.candidates]
        return out


Progress = Callable[[int, int], None]  # (done, total)


class Method(Protocol):
    def __call__(
        self, backend: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None, **config: Any
    ) -> MethodResult: ...


_METHODS: dict[str, Method] = {}
# Methods that build their own prompts (RC: one per turn) take the question text, not prompt ids.
_TAKES_QUESTION: set[str] = set()
# Methods that need the task's problem itself (test-time variant RL makes variants of it and checks them).
_TAKES_PROBLEM: set[str] = set()


def register_method(name: str, *, takes_question: bool = False, takes_problem: bool = False) -> Callable[[Method], Method]:
    def deco(fn: Method) -> Method:
        _METHODS[name] = fn
        if takes_question:
            _TAKES_QUESTION.add(name)
        if takes_problem:
            _TAKES_PROBLEM.add(name)
        return fn

    return deco


def takes_question(name: str) -> bool:
    """Whether the method builds its own prompts from the question text (RC and its comparison points)."""
    return name in _TAKES_QUESTION


def takes_problem(name: str) -> bool:
    return name in _TAKES_PROBLEM


def run_problem_method(
    name: str, backend: Backend, task: Any, problem: Any, rng: np.random.Generator, *, system: str | None = None,
    progress: Progress | None = None, **config: Any
) -> MethodResult:
    """Run a method that needs a task's problem (``takes_problem``); any other method gets the problem's prompt."""
    if name in _TAKES_PROBLEM:
        return get_method(name)(backend, task, problem, rng, progress=progress, system=system, **config)
    return run_method(name, backend, task.prompt(problem), rng, system=system, progress=progress, **config)


def run_method(
    name: str, backend: Backend, question: str, rng: np.random.Generator, *, system: str | None = None,
    progress: Progress | None = None, **config: Any
) -> MethodResult:
    """Run method ``name`` on one question: the one call the CLI and the eval harness make."""
    fn = get_method(name)
    if name in _TAKES_PROBLEM:
        raise UnknownNameError(f"method '{name}' works on a task's problems, not on a bare question: use strop eval --method {name}")
    if name in _TAKES_QUESTION:
        return fn(backend, question, rng, progress=progress, system=system, **config)
    return fn(backend, backend.chat_prompt(user_turn(question, system)), rng, progress=progress, **config)


def method_names() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise UnknownNameError(f"unknown method '{name}'; choose one of: {', '.join(method_names())}")
    return _METHODS[name]
