"""Problem-level solvers: what ``strop eval --method`` runs besides the decoding methods.

A solver gets the task and one problem (not only its prompt) and may do
anything, e.g. train: test-time variant RL builds variants of the problem,
trains a LoRA adapter on them, answers, and removes the adapter. Solvers are
registered by import path by the packages that own them (``import strop.ladder``
registers ``ttrl``) and loaded only when used, as backends are, so the
evaluation layer never names or imports those packages (``strop.ladder.ttrl``
needs torch and TRL).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from strop.errors import UnknownNameError
from strop.registry import add

# name -> ("module:solve", "module:settings"); register more with ``register_solver``.
#   solve(backend, task, problem, rng, *, system, progress, **kwargs) -> MethodResult
#   settings(flat: strop.methods.Settings, options: dict) -> kwargs (validated)
# strop's own: ``ttrl``, registered by ``strop.ladder`` when it is imported (the CLI does).
_SOLVERS: dict[str, tuple[str, str]] = {}


def register_solver(name: str, solve: str, settings: str, *, replace: bool = False) -> None:
    """Register a problem-level solver by import paths, e.g. ``register_solver("mine", "pkg.mod:solve", "pkg.mod:settings")``
    (a taken name is refused)."""
    add(_SOLVERS, "solver", name, (solve, settings), replace=replace)


def solver_names() -> list[str]:
    return sorted(_SOLVERS)


def is_solver(name: str) -> bool:
    return name in _SOLVERS


def _load(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def solver(name: str) -> Callable[..., Any]:
    if name not in _SOLVERS:
        raise UnknownNameError(f"unknown solver '{name}'; choose one of: {', '.join(solver_names())}")
    return _load(_SOLVERS[name][0])


def solver_settings(name: str, flat: Any, options: dict[str, Any]) -> dict[str, Any]:
    if name not in _SOLVERS:
        raise UnknownNameError(f"unknown solver '{name}'; choose one of: {', '.join(solver_names())}")
    return _load(_SOLVERS[name][1])(flat, options)
