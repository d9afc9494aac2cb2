"""LADDER training: a recipe whose problems are a variant tree's nodes and whose arms are its depths."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strop.errors import ConfigError
from strop.ladder.variants import KINDS
from strop.records import read_records
from strop.training.recipe import TrainRecipe, load_recipe


def tree_task_and_arms(tree: str | Path) -> tuple[str, list[str]]:
    """The task a tree's rows belong to, and its depth categories deepest (easiest) first."""
    path = Path(tree)
    log = Path(str(path) + ".expanded")
    if not path.is_file() or not log.is_file():
        raise ConfigError(f"{tree} is not a tree written by strop ladder build (needs the file and {log.name})")
    header = read_records(log)[:1]
    kind = header[0].get("kind") if header else None
    if kind not in KINDS:
        raise ConfigError(f"{log} does not name a known variant kind ({kind!r})")
    nodes = read_records(path)
    if not nodes:
        raise ConfigError(f"{tree} has no nodes")
    depths = sorted({int(n["depth"]) for n in nodes}, reverse=True)
    return KINDS[kind].task, [f"depth{d}" for d in depths]


def ladder_recipe(tree: str | Path, recipe: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainRecipe:
    """``recipe`` with its data taken from ``tree``: task, file and arms (a recipe's own data.categories may reorder or subset them)."""
    task, arms = tree_task_and_arms(tree)
    over = {"data.task": task, "data.data": str(tree), **(overrides or {})}
    r = load_recipe(recipe, over)
    if r.data.categories is None:
        r = load_recipe(recipe, {**over, "data.categories": arms})
    return r
