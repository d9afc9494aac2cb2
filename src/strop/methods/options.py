"""Method settings, each declared once: the CLI's flags, the server's ``strop`` fields and recipe keys are made here.

A method module declares the settings it reads as ``Option`` constants and
lists them in its ``MethodSpec`` (``options=``). A setting several methods
read is one constant, declared by the module that owns it (sampling's
``temperature``, ``top_p``, ``top_k``, ``max_tokens`` in ``strop.methods.basic``;
the RC family's in ``strop.methods.rc``) and listed by the others. Registering
two different declarations under one name is refused, so a name means one
thing everywhere.

From the registered options:
- ``strop solve`` and ``strop eval`` each get a flag per option
  (``--block-size`` for ``block_size``; ``strop.cli.app``);
- ``strop serve`` accepts ``extra_body={"strop": {"block_size": ...}}``, with
  the option's bounds as the request's (``strop.server.schemas``);
- a training recipe's ``eval:`` section takes the option names as keys.

``Settings`` holds a value for every registered option (its default when not
given) and is what ``MethodSpec.settings`` turns into the method's keyword
arguments, validated by the method's own config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from strop.errors import ConfigError

PANEL_S, PANEL_P, PANEL_R = "Sampling", "Power sampling", "RC / self-refine / long"


@dataclass(frozen=True)
class Option:
    """One setting of one or more methods.

    Attributes:
        name: the Python name (``block_size``): the keyword, the server field, the recipe key; the CLI flag is
            ``--block-size`` unless ``flags`` says otherwise.
        type: int, float, str or bool.
        default: the value when nobody sets it (``strop solve``'s default).
        help: one line for ``--help`` and the server's schema.
        nullable: None is a value (``top_k``: no truncation); the CLI and server then default to None.
        choices: the allowed strings (documented; the method's config checks them).
        ge, gt, le: bounds of a number (the server refuses values outside them with a 400 naming the field;
            the method's config checks them everywhere).
        panel: the ``--help`` section the flag is listed in.
        flags: the CLI's flags, when not ``--<name with dashes>``.
        parse: turns the CLI's or a recipe's text into the value (``rc_prompts``: a folder into templates).
        server: whether a request may set it (False: the server sets it from its own configuration).
    """

    name: str
    type: type
    default: Any
    help: str
    nullable: bool = False
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    panel: str = PANEL_S
    flags: tuple[str, ...] = ()
    parse: Callable[[Any], Any] | None = None
    server: bool = True

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("_"):
            raise ConfigError(f"an option name must be a Python identifier without a leading underscore, got {self.name!r}")
        if self.type not in (int, float, str, bool):
            raise ConfigError(f"option {self.name!r}: type must be int, float, str or bool, got {self.type!r}")

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)


_OPTIONS: dict[str, Option] = {}


def register_options(options: tuple[Option, ...], owner: str) -> None:
    """Make ``options`` known (called by ``register_method``); one name, one declaration."""
    for o in options:
        if not isinstance(o, Option):
            raise ConfigError(f"method {owner!r}: options must be strop.methods.Option, got {type(o).__name__}")
        known = _OPTIONS.get(o.name)
        if known is not None and known != o:
            raise ConfigError(f"method {owner!r} declares option {o.name!r} differently from the one already registered; "
                              f"use that declaration (strop.methods.option({o.name!r})) or another name")
    for o in options:
        _OPTIONS.setdefault(o.name, o)


def options() -> Mapping[str, Option]:
    """Every registered option, by name, in registration order."""
    return dict(_OPTIONS)


def option(name: str) -> Option:
    """The registered option ``name`` (for a method that reads a setting another module declares)."""
    if name not in _OPTIONS:
        raise ConfigError(f"no option {name!r} is registered; options: {', '.join(_OPTIONS)}")
    return _OPTIONS[name]


def parsed(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings given as text (flags, recipe keys) as values, where an option says how (``rc_prompts``: a folder)."""
    known = _OPTIONS
    return {k: (known[k].parse(v) if k in known and known[k].parse is not None and v is not None else v) for k, v in values.items()}


class Settings(Mapping[str, Any]):
    """A value for every registered option: what the CLI, the server and recipes hand to a method's ``settings``.

    ``Settings(alpha=2)`` holds alpha 2 and every other option's default; a name no method declared is a
    ``ConfigError``. Read as attributes (``s.alpha``) or as a mapping. Frozen.
    """

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        known = _OPTIONS
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; settings: {', '.join(known)}")
        object.__setattr__(self, "_values", {name: values.get(name, o.default) for name, o in known.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Settings are frozen; build new ones")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"
