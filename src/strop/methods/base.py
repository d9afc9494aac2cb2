"""The method registry and the result every method returns.

A method is one module: a step machine (a generator that yields generation
requests and returns a ``MethodResult``, see ``strop.engine``) and a
``MethodSpec`` registered under its name. The spec is the method's whole
description for the CLI, the eval harness and the server: what input it takes
(prompt ids or the question text), how its settings are built from flat
options (command-line flags, request fields) and validated, the most tokens
one attempt may decode, whether stop strings apply, which events it emits.
Nothing outside the registry branches on method names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from strop.backends.base import Backend, Generation
from strop.backends.chat import user_turn
from strop.backends.thinking import THINK, hidden_token_count, strip_thinking
from strop.errors import ConfigError, UnknownNameError
from strop.methods.options import Option, Settings, register_options
from strop.registry import check_free
from strop.verifiers.extract import extract_answer


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
#: ``events(kind, payload)``: a method's intermediate results as they happen (RC turns, power blocks)
Events = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class MethodSpec:
    """Everything the CLI, the harness and the server need to know about a method.

    Attributes:
        name: the registered name (``--method NAME``, ``<NAME>/model`` on the server).
        steps: ``steps(model, input, rng, **kwargs) -> Steps``; ``input`` is prompt ids or the question text.
            ``model`` is used only for tokenising and its limits, never to generate.
        settings: ``Settings`` (a value for every registered option) -> the keyword arguments of ``steps``
            (validated: raises ConfigError).
        budget: keyword arguments -> the most tokens one attempt may decode (the server's request limit).
        input: "prompt" (chat prompt ids built from the question or the messages) or "question" (the method
            builds its own prompts from the text: RC and its comparison points).
        takes_stop: whether stop strings apply (they would cut a turn or a chain midway otherwise).
        events: the kinds ``steps`` reports through its ``events`` callback (streamed by the server).
        unit: what its progress counts (shown by the CLI).
        options: the settings it reads (``strop.methods.options``): each becomes a CLI flag, a server field and
            a recipe key. A setting shared with other methods is the same ``Option`` object in each spec.
        help: one line for ``--help`` and ``strop info``.
    """

    name: str
    steps: Callable[..., Any]
    settings: Callable[[Settings], dict[str, Any]]
    budget: Callable[[dict[str, Any]], int]
    input: Literal["prompt", "question"] = "prompt"
    takes_stop: bool = False
    events: tuple[str, ...] = ()
    unit: str = "samples"
    help: str = ""
    options: tuple[Option, ...] = ()


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Make a method usable by name from ``strop solve``, ``strop eval`` and ``strop serve`` (a taken name is refused)."""
    if not spec.name or "/" in spec.name:
        raise ConfigError(f"a method name must be non-empty and without '/', got {spec.name!r}")
    check_free(_METHODS, "method", spec.name, replace=replace)  # before its options are: a refused method adds none
    register_options(tuple(spec.options), spec.name)
    _METHODS[spec.name] = spec
    return spec


_entry_points: list[str] | None = None  # the ``strop.methods`` entry points, read once
_loaded: set[str] = set()  # plugin modules imported (or being imported) in this process


def load_plugins() -> list[str]:
    """Import the modules that register more methods (each once); returns their names.

    Two ways to add a method without touching strop: a package declaring an
    entry point in the group ``strop.methods`` (value: the module to import),
    or ``STROP_PLUGINS=module[,module...]`` in the environment, read at every
    call (a program may set it late). A plugin that fails to import is an
    error naming it, not a silently missing method (and the next look-up tries
    again). Method look-ups call this first, so a program never sees the
    registry without its plugins.
    """
    global _entry_points
    import importlib
    import os

    if _entry_points is None:
        from importlib.metadata import entry_points

        _entry_points = [ep.value for ep in entry_points(group="strop.methods")]
    names = _entry_points + [m.strip() for m in os.environ.get("STROP_PLUGINS", "").split(",") if m.strip()]
    for name in names:
        if name in _loaded:
            continue
        _loaded.add(name)  # before importing: a plugin that looks methods up while it loads must not load itself again
        try:
            importlib.import_module(name.split(":")[0])
        except Exception as e:
            _loaded.discard(name)
            raise ConfigError(f"could not load the strop plugin {name!r}: {type(e).__name__}: {e}") from e
    return names


def method_names() -> list[str]:
    load_plugins()
    return sorted(_METHODS)


def method_spec(name: str) -> MethodSpec:
    if name not in _METHODS:
        load_plugins()
    if name not in _METHODS:
        raise UnknownNameError(f"unknown method '{name}'; choose one of: {', '.join(method_names())}")
    return _METHODS[name]


def takes_question(name: str) -> bool:
    """Whether the method builds its own prompts from the question text (RC and its comparison points)."""
    return method_spec(name).input == "question"


def settings_record(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A method's keyword settings as a run records them (``EvalSpec.method_config``): config dataclasses as dicts."""
    from dataclasses import asdict, is_dataclass

    return {k: (asdict(v) if is_dataclass(v) else v) for k, v in kwargs.items()}


def method_settings(name: str, **settings: Any) -> dict[str, Any]:
    """Keyword arguments for method ``name`` from settings by option name (``Settings``), validated."""
    spec = method_spec(name)
    return spec.settings(Settings(**settings))


def make_steps(name: str, model: Backend, question: str | None, rng: np.random.Generator, *, prompt_ids: Sequence[int] | None = None,
               system: str | None = None, progress: Progress | None = None, events: Events | None = None, **kwargs: Any) -> Any:
    """A step machine of method ``name`` for one attempt.

    ``question`` is the problem text; methods that take prompt ids get the chat
    prompt of (``system``, ``question``) unless ``prompt_ids`` are given (a
    whole conversation, or a raw completion prompt on the server).
    """
    spec = method_spec(name)
    extra: dict[str, Any] = {"progress": progress}
    if spec.events and events is not None:
        extra["events"] = events
    tags = getattr(model, "think_tags", THINK)
    if tags != THINK and "extract" not in kwargs and "extract" in inspect.signature(spec.steps).parameters:
        # Extraction drops strop's default reasoning blocks by itself; other tags are the model's, so say them here.
        extra["extract"] = lambda text: extract_answer(strip_thinking(text, tags))
    if spec.input == "question":
        if question is None:
            raise ConfigError(f"method '{name}' needs the question text (it builds its own prompts)")
        return _count_thinking(model, spec.steps(model, question, rng, system=system, **extra, **kwargs))
    if prompt_ids is None:
        if question is None:
            raise ConfigError(f"method '{name}' needs a question or prompt ids")
        prompt_ids = model.chat_prompt(user_turn(question, system))
    return _count_thinking(model, spec.steps(model, list(prompt_ids), rng, **extra, **kwargs))


def thinking_tokens(model: Backend, result: MethodResult) -> int:
    """Tokens of ``result``'s candidates that lie in reasoning blocks (the model's ``think_tags``): hidden from the answer.

    Counted over every completion the method kept (RC's turns and summaries,
    best-of-n's samples); power sampling's rejected proposals are not kept, so
    not counted.
    """
    tags = getattr(model, "think_tags", THINK)
    return sum(hidden_token_count(model.detokenize, g.token_ids, g.text, tags) for g in result.candidates)


def _count_thinking(model: Backend, machine: Any) -> Any:
    """``machine``, whose result also says in ``stats["thinking_tokens"]`` how many of its tokens were hidden reasoning."""
    result = yield from machine
    if isinstance(result, MethodResult):
        result.stats["thinking_tokens"] = thinking_tokens(model, result)
    return result


def run_method(name: str, backend: Backend, question: str, rng: np.random.Generator, *, system: str | None = None,
               progress: Progress | None = None, events: Events | None = None, **config: Any) -> MethodResult:
    """Run method ``name`` on one question, alone: the one call ``strop solve`` makes."""
    from strop.engine import run_steps

    return run_steps(backend, make_steps(name, backend, question, rng, system=system, progress=progress, events=events, **config))


def get_method(name: str) -> Callable[..., MethodResult]:
    """Method ``name`` as a plain function ``fn(backend, input, rng, **kwargs) -> MethodResult`` (run alone)."""
    spec = method_spec(name)

    def call(backend: Backend, inp: Any, rng: np.random.Generator, **kwargs: Any) -> MethodResult:
        from strop.engine import run_steps

        return run_steps(backend, spec.steps(backend, inp, rng, **kwargs))

    call.__name__ = name.replace("-", "_")
    call.__doc__ = spec.steps.__doc__
    return call
