"""The ``strop`` commands (typer): solve, eval and report here; the others in their modules, registered below.

The entry point, with its error handling, is ``strop.cli.main``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import numpy as np
import typer

from strop.cli.common import (
    BackendOpt,
    BaseUrlOpt,
    CategoryOpt,
    ChatKwOpt,
    KvLayoutOpt,
    MethodOpt,
    ModelOpt,
    NCtxOpt,
    SeedOpt,
    SystemOpt,
    ThinkTagsOpt,
    TokOpt,
    TTDepthOpt,
    TTLrOpt,
    TTPassOpt,
    TTReqOpt,
    TTStepsOpt,
    TTValidOpt,
    TTVarOpt,
    err,
    load,
    model_format,
)
from strop.cli.options import with_method_options
from strop.cli.serve import serve
from strop.cli.tools import bench_app, demo, info
from strop.cli.train import ladder_app, train
from strop.errors import StropError
from strop.evaluation.solvers import is_solver, solver_settings
from strop.methods import Settings, method_settings, method_spec, settings_record
from strop.methods.options import parsed

app = typer.Typer(
    name="strop",
    help="Make language models reason better: test-time compute and RL on verified outputs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
@with_method_options
def solve(
    question: Annotated[str, typer.Argument(help="The question to answer, or '-' to read it from stdin.")],
    method: MethodOpt = "greedy", backend: BackendOpt = "llamacpp", model: ModelOpt = None, seed: SeedOpt = 0,
    system: SystemOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None, n_ctx: NCtxOpt = None,
    kv_layout: KvLayoutOpt = None, think_tags: ThinkTagsOpt = None, chat_template_kwarg: ChatKwOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON (tokens, log-probs, timing).")] = False,
    **settings: Any,
) -> None:
    """Answer QUESTION with a model and print the answer."""
    from strop.backends.text import check_text
    from strop.methods import run_method

    if question == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        question = stdin.read().decode("utf-8", "surrogateescape") if stdin is not None else sys.stdin.read()
    check_text(question, "the question")
    if system is not None:
        check_text(system, "the system message")
    if not question.strip():
        raise StropError("the question is empty")
    if is_solver(method):
        raise StropError(f"method '{method}' works on a task's problems, not on a bare question: use strop eval --method {method}")
    kwargs = method_settings(method, **parsed(settings))
    be = load(backend, model, base_url, tokenizer, n_ctx, kv_layout, **model_format(think_tags, chat_template_kwarg))
    with be:
        with err.status(f"{method}: generating...") as status:
            unit = method_spec(method).unit

            def progress(done: int, total: int) -> None:
                status.update(f"{method}: {done}/{total} {unit}")

            result = run_method(method, be, question, np.random.default_rng(seed), system=system, progress=progress, **kwargs)
    if as_json:
        out = result.to_dict()
        out.update(backend=be.name, model=be.model_id, question=question, seed=seed)
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        typer.echo(result.text.strip())


@app.command("eval")
@with_method_options
def eval_cmd(
    task: Annotated[str, typer.Option(help="Task: gsm8k, math500, aime2024, mit-integration-bee-2025, countdown, humaneval, arithmetic,"
                                                 " or jsonl (with --field).")],
    out: Annotated[str, typer.Option(help="Run folder: records.jsonl (as it goes), metrics.json, plots. Re-running resumes.")],
    data: Annotated[str | None, typer.Option(help="JSON/JSONL/parquet file, or hub:DATASET[:SPLIT] (online). Default: the task's own source.")] = None,
    field: Annotated[list[str] | None, typer.Option(help="jsonl task: NAME=COLUMN for question, answer, id, category (repeatable).")] = None,
    verifier: Annotated[str | None, typer.Option(help="The check, for tasks with several: jsonl math (default) |"
                                                      " math-verify | exact | number; gsm8k, math500: strop (default) |"
                                                      " math-verify (Math-Verify's default parse/verify); integrals and"
                                                      " mit-integration-bee-2025: strop (default) | ladder | ttrl"
                                                      " (the reference code's numerical checkers; docs/evaluation.md).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    category: CategoryOpt = None,
    samples: Annotated[int, typer.Option(help="Attempts per problem (for pass@k and majority@k).")] = 1,
    method: MethodOpt = "sample", backend: BackendOpt = "llamacpp", model: ModelOpt = None, seed: SeedOpt = 0,
    system: SystemOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None, n_ctx: NCtxOpt = None,
    kv_layout: KvLayoutOpt = None, think_tags: ThinkTagsOpt = None, chat_template_kwarg: ChatKwOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Attempts in flight at once, their requests decoded together"
                                                         " (default: the backend's batch size; same random streams, rounding can flip a rare token).")] = None,
    ttrl_steps: TTStepsOpt = 8, ttrl_depth: TTDepthOpt = 2, ttrl_variants: TTVarOpt = 4, ttrl_model_requests: TTReqOpt = 0,
    ttrl_lr: TTLrOpt = 1e-4, ttrl_pass_samples: TTPassOpt = 8, ttrl_validity: TTValidOpt = "sympy",
    **settings: Any,
) -> None:
    """Run METHOD on TASK, writing one JSON line per (problem, sample) as it goes; print and save metrics and plots."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from strop.evaluation.harness import EvalSpec, evaluate
    from strop.evaluation.report import plot_runs, plot_turns, table
    from strop.tasks import resolve_task
    from strop.verifiers.voting import check_vote

    if samples < 1 or (limit is not None and limit < 1) or (batch_size is not None and batch_size < 1):
        raise StropError(f"--samples, --limit and --batch-size must be >= 1, got samples={samples}, limit={limit}, batch_size={batch_size}")
    pairs = [f.split("=", 1) for f in field or []]
    if any(len(p) != 2 for p in pairs):
        raise StropError(f"--field takes NAME=COLUMN, got {field}")
    t = resolve_task(task, dict(pairs), verifier, data)
    vote = settings["vote"]
    check_vote(vote)  # before the model loads: it also decides maj@k, whatever the method
    flat = Settings(**parsed(settings))
    fmt = model_format(think_tags, chat_template_kwarg)
    if is_solver(method):
        kwargs = solver_settings(method, flat, {"steps": ttrl_steps, "depth": ttrl_depth, "variants_per_node": ttrl_variants,
                                                "model_requests": ttrl_model_requests, "learning_rate": ttrl_lr,
                                                "pass_samples": ttrl_pass_samples,
                                                "validity": ttrl_validity})
    else:
        kwargs = method_spec(method).settings(flat)
    problems = t.load(data, limit=limit, seed=seed, categories=category)
    if not problems:
        raise StropError(f"task '{task}' has no problems in {data or 'its source'}")
    spec = EvalSpec(task=task, method=method, backend=backend, model=model, samples=samples, limit=limit, seed=seed, data=data,
                    system=system, method_config=settings_record(kwargs), categories=category or None,
                    think_tags=list(think_tags) if think_tags else None, chat_template_kwargs=fmt.get("chat_template_kwargs"),
                    verifier=t.verifier if t.verifier != resolve_task(task, dict(pairs), None, data).verifier else None)
    be = load(backend, model, base_url, tokenizer, n_ctx, kv_layout, **fmt)
    with be, Progress(TextColumn(f"{task} / {method}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=err, transient=False) as bar:
        job = bar.add_task("eval", total=len(problems) * samples)
        metrics = evaluate(spec, t, problems, be, Path(out), method_kwargs=kwargs, batch_size=batch_size, vote=vote,
                           progress=lambda done, total: bar.update(job, completed=done, total=total))
    folder = Path(out)
    plot_runs([metrics], folder / "accuracy_vs_tokens.png", title=f"{task}: {method}")
    plot_turns(metrics, folder / "accuracy_vs_turn.png")
    for row in table([metrics], [str(folder)]):
        typer.echo(row)
    typer.echo(f"records: {folder / 'records.jsonl'}  metrics: {folder / 'metrics.json'}")


@app.command()
def report(
    runs: Annotated[list[str], typer.Argument(help="Run folders written by `strop eval`, or by `strop train` (not mixed).")],
    plot: Annotated[str | None, typer.Option(help="Also draw a PNG: accuracy vs tokens of eval runs, or reward, arm mix and Q of training runs.")] = None,
    audit: Annotated[bool, typer.Option(help="Eval runs: re-grade every record and list where strop's verdict differs from "
                                             "Math-Verify's default parse/verify (integrals: the numeric check), and the "
                                             "answers not found by finish reason; writes RUN/audit.jsonl and metrics.json's audit.")] = False,
    regrade: Annotated[bool, typer.Option(help="With --audit: write today's verdicts and answers into the records (the old "
                                               "ones kept as regraded_from) and recompute metrics.json, as a fresh run "
                                               "would grade them.")] = False,
) -> None:
    """Compare finished eval runs, or training runs, side by side (--audit: where graders disagree)."""
    from pathlib import Path

    from strop.training.report import is_training_run

    if regrade and not audit:
        raise StropError("--regrade goes with --audit: strop report --audit --regrade RUN")
    if audit:
        from strop.evaluation.audit import audit_run, audit_table

        for row in audit_table([audit_run(r, regrade=regrade) for r in runs]):
            typer.echo(row)
        return

    kinds = {is_training_run(r) for r in runs}
    if len(kinds) > 1:
        raise StropError("report either eval runs or training runs, not both at once")
    if kinds == {True}:
        from strop.training.report import load_run, plot_training, training_table

        loaded = [load_run(r) for r in runs]
        lines, draw = training_table(loaded), lambda p: plot_training(loaded, p)
    else:
        from strop.evaluation.report import load_metrics, plot_runs, table

        metrics = [load_metrics(r) for r in runs]
        lines, draw = table(metrics, runs), lambda p: plot_runs(metrics, p)
    for row in lines:
        typer.echo(row)
    if plot:
        draw(Path(plot))
        typer.echo(f"wrote {plot}")


app.command()(train)
app.add_typer(ladder_app, name="ladder")
app.add_typer(bench_app, name="bench")
app.command()(serve)
app.command()(demo)
app.command()(info)
