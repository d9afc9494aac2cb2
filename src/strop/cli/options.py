"""The method settings on the command line: a flag per registered option (``strop.methods.options``).

``strop solve`` and ``strop eval`` declare only their own parameters and take
the methods' settings as ``**settings``; ``with_method_options`` adds one
typer option per registered option to the command's signature (typer builds
the flags from it), so a method registered in one module, a plugin's
included, brings its flags with it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from strop.errors import ConfigError
from strop.methods import options


def with_method_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (which ends in ``**settings``) with a keyword parameter per registered option in its signature."""
    sig = inspect.signature(fn, eval_str=True)  # the own parameters with their typer annotations as objects
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in own}
    extra = []
    for o in options().values():
        if o.name in taken:
            raise ConfigError(f"the method option {o.name!r} clashes with strop {fn.__name__.removesuffix('_cmd')}'s own --"
                              f"{o.name.replace('_', '-')}; register it under another name")
        kind = (o.type | None) if o.nullable else o.type
        info = typer.Option(*o.cli_flags, help=o.help, rich_help_panel=o.panel)
        extra.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=Annotated[kind, info]))
        fn.__annotations__[o.name] = kind  # what typing.get_type_hints (typer) reads; the signature carries the flag
    fn.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    return fn
