"""One rule for every registry (methods, backends, tasks, solvers, curricula): a name is taken once.

A leaf module (strop.errors only), so every layer can use it. Registering a
name that is already taken is refused: silently replacing a built-in method or
another plugin's is a bug that shows up far from its cause. ``replace=True``
says the override is meant.
"""

from __future__ import annotations

from typing import Any, TypeVar

from strop.errors import ConfigError

T = TypeVar("T")


def check_free(table: dict[str, Any], kind: str, name: str, *, replace: bool = False) -> None:
    """Refuse ``name`` if ``table`` (a registry of ``kind``s) has it already, unless ``replace``."""
    if name in table and not replace:
        raise ConfigError(f"{kind} '{name}' is already registered; choose another name (or pass replace=True to override it on purpose)")


def add(table: dict[str, T], kind: str, name: str, value: T, *, replace: bool = False) -> T:
    """Put ``value`` under ``name`` in ``table`` (a registry of ``kind``s); refuse a taken name unless ``replace``."""
    check_free(table, kind, name, replace=replace)
    table[name] = value
    return value
