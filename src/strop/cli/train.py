"""``strop train`` and ``strop ladder``: training runs from recipes, variant trees and GRPO on them."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from strop.cli.common import BackendOpt, BaseUrlOpt, CategoryOpt, MaxWallOpt, ModelOpt, TokOpt, TrainSeedOpt, err, load


def train(
    recipe: Annotated[str, typer.Argument(help="YAML recipe (see docs/training.md and recipes/).")],
    max_steps: Annotated[int | None, typer.Option(help="Override grpo.max_steps (a finished run can be extended).")] = None,
    output: Annotated[str | None, typer.Option(help="Override the recipe's output folder.")] = None,
    train_seed: TrainSeedOpt = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or per-step lines.")] = False,
    max_wall_s: MaxWallOpt = None,
) -> None:
    """GRPO on a strop task through TRL, with a curriculum (SEC, random, schedule). Resumes from the last checkpoint in the output folder."""
    from strop.training.recipe import load_recipe

    _run_recipe(lambda overrides: load_recipe(recipe, overrides), max_steps, output, quiet, train_seed, max_wall_s)


@contextlib.contextmanager
def _training_progress(show: bool) -> Iterator[None]:
    """Show the library's progress lines (logger ``strop.training``, INFO) as plain lines on stdout while training.

    Only that logger's own INFO records (a line per step, "resuming from ...")
    are shown this way; warnings of it and its children still go to the root
    handlers, and its children's INFO stays hidden. Nothing changes when
    ``show`` is false (``--quiet``).
    """
    if not show:
        yield
        return
    logger = logging.getLogger("strop.training")
    lines = logging.StreamHandler(sys.stdout)
    lines.setFormatter(logging.Formatter("%(message)s"))
    lines.addFilter(lambda r: r.name == logger.name and r.levelno == logging.INFO)
    # Not propagated while on (the root handler would print the INFO lines again, on stderr with a prefix);
    # warnings and errors of the library, children included, still go to the root handlers.
    to_root = _ToRoot(logging.WARNING)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(lines)
    logger.addHandler(to_root)
    try:
        yield
    finally:
        logger.removeHandler(lines)
        logger.removeHandler(to_root)
        logger.setLevel(saved[0])  # setLevel, not .level =: it also clears logging's cache of enabled levels
        logger.propagate = saved[1]


class _ToRoot(logging.Handler):
    """Hands records to the root logger's handlers (for a logger that does not propagate)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def _run_recipe(load: Any, max_steps: int | None, output: str | None, quiet: bool, seed: int | None = None,
                max_wall_s: float | None = None) -> None:
    """Train ``load(overrides)`` with the command line's overrides and print where everything went."""
    from strop.training.entry import train as run_training

    overrides: dict[str, Any] = {}
    if max_wall_s is not None:
        overrides["max_wall_s"] = max_wall_s
    if seed is not None:
        overrides["grpo.seed"] = overrides["curriculum.seed"] = seed
    if max_steps is not None:
        overrides["grpo.max_steps"] = max_steps
    if output is not None:
        overrides["output"] = output
    with _training_progress(not quiet):
        result = run_training(load(overrides), quiet=quiet)
    if not result.main_process:
        return  # under accelerate launch, one summary (rank 0's)
    typer.echo(f"trained {result.steps} steps in {result.wall_s:.0f}s"
               + (f" (resumed from {result.resumed_from.name})" if result.resumed_from else ""))
    typer.echo(f"metrics: {result.output / 'metrics.jsonl'}; curriculum: {result.output / 'curriculum.jsonl'}")
    typer.echo(f"model: {result.final_model}  (evaluate: strop eval --backend hf --model {result.final_model} ...)")


ladder_app = typer.Typer(help="LADDER: trees of easier variants, and GRPO on them.", no_args_is_help=True)


@ladder_app.command("build")
def ladder_build(
    task: Annotated[str, typer.Option(help="Task whose problems are the roots: integrals, mit-integration-bee-2025, arithmetic.")],
    out: Annotated[str, typer.Option(help="Tree file (JSON lines; a .expanded log beside it). Re-running resumes.")],
    data: Annotated[str | None, typer.Option(help="Problems file; default: the task's own source.")] = None,
    seed: Annotated[int, typer.Option(help="Generator seed of a built-in task, and of the variants.")] = 1,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    category: CategoryOpt = None,
    depth: Annotated[int, typer.Option(help="Depth cap (the paper uses 2-3; arithmetic needs more to reach one digit).")] = 2,
    symbolic: Annotated[int, typer.Option(help="Symbolic variants tried per node (0: none).")] = 4,
    model_requests: Annotated[int, typer.Option(help="Requests to the model per node for written variants (0: none).")] = 0,
    variants_per_request: Annotated[int, typer.Option(help="Variants asked for in one request.")] = 10,
    validity: Annotated[str, typer.Option(help="Integrals: keep a variant if SymPy finds its antiderivative (sympy) or if it"
                                               " integrates numerically (numeric, the TTRL code's check; no answer stored).")] = "sympy",
    exclude_data: Annotated[str | None, typer.Option(help="Test set file of the same task: its problems never enter the tree.")] = None,
    exclude_seed: Annotated[int | None, typer.Option(help="Built-in task: exclude the problems of this generator seed (what strop eval --seed uses).")] = None,
    backend: BackendOpt = "llamacpp", model: ModelOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None,
) -> None:
    """Build a variant tree of TASK's problems: symbolic and/or model-written variants, validated and de-duplicated."""
    import contextlib

    from strop.ladder.tree import TreeSpec, build_tree, tree_summary
    from strop.ladder.variants import kind_for_task
    from strop.tasks import get_task

    t = get_task(task)
    kind = kind_for_task(task)
    spec = TreeSpec(depth=depth, symbolic_per_node=symbolic, model_requests=model_requests,
                    variants_per_request=variants_per_request, seed=seed, validity=validity)
    problems = t.load(data, limit=limit, seed=seed, categories=category)
    exclude: set[str] = set()
    if exclude_data is not None or exclude_seed is not None:
        held = t.load(exclude_data, seed=exclude_seed if exclude_seed is not None else 0)
        exclude = kind.keys([kind.payload(p) for p in held])
    be = load(backend, model, base_url, tokenizer, None) if model_requests else None
    with be if be is not None else contextlib.nullcontext():
        result = build_tree(problems, kind, spec, out, backend=be, exclude_keys=exclude, progress=lambda m: err.print(m, highlight=False))
    summary = tree_summary(result.nodes)
    typer.echo(f"{out}: {summary['nodes']} nodes {summary['per_depth']} by source {summary['per_source']}")
    if result.rejected:
        typer.echo(f"rejected candidates: {dict(result.rejected)}")


@ladder_app.command("train")
def ladder_train(
    tree: Annotated[str, typer.Argument(help="Tree file written by strop ladder build.")],
    recipe: Annotated[str, typer.Option(help="YAML recipe for the model, curriculum, reward and GRPO settings (data comes from the tree).")],
    max_steps: Annotated[int | None, typer.Option(help="Override grpo.max_steps.")] = None,
    output: Annotated[str | None, typer.Option(help="Override the recipe's output folder.")] = None,
    train_seed: TrainSeedOpt = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or per-step lines.")] = False,
    max_wall_s: MaxWallOpt = None,
) -> None:
    """GRPO on a variant tree: its depths are the curriculum's arms, easiest (deepest) first."""
    from strop.ladder.training import ladder_recipe

    _run_recipe(lambda overrides: ladder_recipe(tree, recipe, overrides), max_steps, output, quiet, train_seed, max_wall_s)
