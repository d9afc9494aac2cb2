"""The ``strop`` commands (typer). The entry point, with its error handling, is ``strop.cli.main``."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

import strop.ladder  # noqa: F401  (registers the ttrl solver)
from strop.errors import StropError
from strop.evaluation.solvers import is_solver, solver_names, solver_settings
from strop.methods import Flat, method_names, method_settings, method_spec, settings_record

app = typer.Typer(
    name="strop",
    help="Make language models reason better: test-time compute and RL on verified outputs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _backend_options(backend: str, base_url: str | None, tokenizer: str | None, n_ctx: int | None,
                     kv_layout: str | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if kv_layout is not None:
        if backend != "llamacpp":
            raise StropError("--kv-layout applies only to --backend llamacpp")
        opts["kv_layout"] = kv_layout
    if backend == "openai":
        if base_url:
            opts["base_url"] = base_url
        if tokenizer:
            opts["tokenizer"] = tokenizer
    elif base_url or tokenizer:
        raise StropError("--base-url and --tokenizer apply only to --backend openai")
    if n_ctx is not None:
        if backend == "llamacpp":
            opts["n_ctx"] = n_ctx
        else:
            opts["context_length"] = n_ctx
    return opts


# Options shared by `solve` and `eval`, declared once.
PANEL_S, PANEL_P, PANEL_R, PANEL_T = "Sampling", "Power sampling", "RC / self-refine / long", "Test-time variant RL (ttrl)"
MethodOpt = Annotated[str, typer.Option(help=f"Method: {', '.join(method_names())}; eval only: {', '.join(solver_names())}"
                                                " (problem-level solvers; ttrl: test-time variant RL, --backend hf).")]
BackendOpt = Annotated[str, typer.Option(help="Backend: llamacpp (default), hf, openai.")]
MaxWallOpt = Annotated[float | None, typer.Option(help="Wall-clock budget in seconds (recipe max_wall_s): stop, with a checkpoint, "
                                                       "at the end of the first step past it, counting earlier runs of the folder.")]
CategoryOpt = Annotated[list[str] | None, typer.Option(help="Only problems of this category (repeatable), e.g. arithmetic levels d3o1, d3o2; before --limit.")]
ModelOpt = Annotated[str | None, typer.Option(help="GGUF file, HF model folder or hub id; default: the embedded SmolLM2-135M-Instruct."
                                                      " With --backend openai: the server's model name.")]
NOpt = Annotated[int, typer.Option("-n", "--n", help="Samples for best-of-n and majority; ttrl: samples per GRPO group.", rich_help_panel=PANEL_S)]
VoteOpt = Annotated[str, typer.Option(help="majority (and eval's maj@k): which answers are one vote: equivalence (math-verify, so 0.5"
                                           " and \\frac{1}{2} are one vote) | string (identical answers only).", rich_help_panel=PANEL_S)]
TempOpt = Annotated[float, typer.Option(help="Sampling temperature.", rich_help_panel=PANEL_S)]
TopPOpt = Annotated[float, typer.Option(help="Nucleus sampling mass, in (0, 1].", rich_help_panel=PANEL_S)]
TopKOpt = Annotated[int | None, typer.Option(help="Keep only the k most likely tokens.", rich_help_panel=PANEL_S)]
MaxTokOpt = Annotated[int, typer.Option(help="Most tokens to generate per sample (power: per chain).", rich_help_panel=PANEL_S)]
SeedOpt = Annotated[int, typer.Option(help="Random seed; the same seed gives the same output.")]
SystemOpt = Annotated[str | None, typer.Option(help="System message (default: the model template's own).")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="--backend openai: server URL, e.g. http://127.0.0.1:8000/v1.")]
TokOpt = Annotated[str | None, typer.Option(help="--backend openai: local tokenizer matching the server's model (default: the embedded GGUF).")]
NCtxOpt = Annotated[int | None, typer.Option(help="Context window to allocate (tokens).")]
KvLayoutOpt = Annotated[str | None, typer.Option(help="llamacpp only: KV cache layout, 'shared' (default: one pool for all "
                                                      "sequences) or 'per-sequence' (a full context per sequence: faster on long "
                                                      "generations, more memory; docs/engine.md).")]
AlphaOpt = Annotated[float, typer.Option(help="power: the exponent; samples from p^alpha.", rich_help_panel=PANEL_P)]
BlockOpt = Annotated[int, typer.Option(help="power: tokens per block (B).", rich_help_panel=PANEL_P)]
StepsOpt = Annotated[int, typer.Option(help="power: MH steps per block (N).", rich_help_panel=PANEL_P)]
CutOpt = Annotated[str, typer.Option(help="power: cut rule, uniform | entropy | max-swap.", rich_help_panel=PANEL_P)]
BetaOpt = Annotated[float, typer.Option(help="power: exponent of the entropy-jump cut weights.", rich_help_panel=PANEL_P)]
PropTOpt = Annotated[float | None, typer.Option(help="power: proposal temperature (default 1/alpha).", rich_help_panel=PANEL_P)]
TargetOpt = Annotated[str, typer.Option(help="power: target p^alpha over the full vocabulary (full) or over the --top-k tokens"
                                             " renormalised (topk, the entropy-cut reference's; needs --top-k).", rich_help_panel=PANEL_P)]
TurnsOpt = Annotated[int, typer.Option(help="rc/self-refine: turns T (long: budget T * (H_R + H_S)).", rich_help_panel=PANEL_R)]
HROpt = Annotated[int, typer.Option(help="rc: most tokens per reasoning turn (H_R).", rich_help_panel=PANEL_R)]
HSOpt = Annotated[int, typer.Option(help="rc: most tokens per summary (H_S).", rich_help_panel=PANEL_R)]
RCPromptsOpt = Annotated[str | None, typer.Option(help="rc/self-refine/long: a folder of prompt templates (reason.txt, summarize.txt, ...;"
                                                       " docs/evaluation.md); default: strop's own.", rich_help_panel=PANEL_R)]
SummThinkOpt = Annotated[bool, typer.Option(help="rc/self-refine: summarise a thinking model's reasoning blocks (the reference code's"
                                                 " way) instead of its visible text.", rich_help_panel=PANEL_R)]
PANEL_M = "Thinking models and chat templates"
ThinkTagsOpt = Annotated[tuple[str, str] | None, typer.Option(
    help="OPEN CLOSE: the tags around the model's hidden reasoning (default <think> </think>): dropped before answers are"
         " extracted and summaries carried, counted as thinking_tokens.", rich_help_panel=PANEL_M)]
ChatKwOpt = Annotated[list[str] | None, typer.Option(
    help="NAME=VALUE: a chat-template variable (repeatable; VALUE read as JSON, else as text), e.g. enable_thinking=false.",
    rich_help_panel=PANEL_M)]


TTStepsOpt = Annotated[int, typer.Option(help="ttrl: GRPO steps per test problem.", rich_help_panel=PANEL_T)]
TTDepthOpt = Annotated[int, typer.Option(help="ttrl: depth of each problem's variant tree.", rich_help_panel=PANEL_T)]
TTVarOpt = Annotated[int, typer.Option(help="ttrl: symbolic variants tried per tree node.", rich_help_panel=PANEL_T)]
TTReqOpt = Annotated[int, typer.Option(help="ttrl: model-written variant requests per tree node (0: symbolic only).", rich_help_panel=PANEL_T)]
TTLrOpt = Annotated[float, typer.Option(help="ttrl: LoRA learning rate.", rich_help_panel=PANEL_T)]
TTValidOpt = Annotated[str, typer.Option(help="ttrl: which integral variants are kept: sympy (an antiderivative is found) or numeric"
                                              " (integrates numerically, as the TTRL reference).", rich_help_panel=PANEL_T)]
TrainSeedOpt = Annotated[int | None, typer.Option("--seed", help="Training seed: overrides grpo.seed and curriculum.seed"
                                                                  " (the problems, data.seed, stay).")]
TTPassOpt = Annotated[int, typer.Option(help="ttrl: temperature samples of each test problem before and after training (pass@1, pass@n).",
                                        rich_help_panel=PANEL_T)]


def _model_format(think_tags: tuple[str, str] | None, chat_template_kwarg: list[str] | None) -> dict[str, Any]:
    """How the model writes (its reasoning tags, its chat-template switches), checked before any model loads.

    Returns the backend attributes to set (``think_tags``, ``chat_template_kwargs``); empty when both are defaults.
    """
    from strop.backends.chat import check_template_kwargs
    from strop.backends.thinking import ThinkTags

    out: dict[str, Any] = {}
    if think_tags is not None:
        out["think_tags"] = ThinkTags(*think_tags)
    if chat_template_kwarg:
        kw: dict[str, Any] = {}
        for item in chat_template_kwarg:
            name, sep, raw = item.partition("=")
            if not sep:
                raise StropError(f"--chat-template-kwarg takes NAME=VALUE, got {item!r}")
            try:
                kw[name.strip()] = json.loads(raw)
            except ValueError:
                kw[name.strip()] = raw  # plain text: enable_thinking=false is JSON, a name like foo=bar is text
        out["chat_template_kwargs"] = check_template_kwargs(kw)
    return out


def _rc_prompts(folder: str | None) -> dict[str, Any]:
    """``rc_prompts`` for the method settings when ``--rc-prompts`` names a folder (strop's own templates otherwise)."""
    from strop.methods.rc_prompts import load_prompts

    return {"rc_prompts": load_prompts(folder)} if folder is not None else {}


def _load(backend: str, model: str | None, base_url: str | None, tokenizer: str | None, n_ctx: int | None,
          kv_layout: str | None = None, **fmt: Any):
    """Load a backend; ``fmt`` (from ``_model_format``) sets how the model writes: reasoning tags, chat-template switches."""
    from strop.backends import load_backend

    with err.status(f"loading model ({backend})..."):
        be = load_backend(backend, model, **_backend_options(backend, base_url, tokenizer, n_ctx, kv_layout))
    for name, value in fmt.items():
        setattr(be, name, value)
    return be


@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question to answer, or '-' to read it from stdin.")],
    method: MethodOpt = "greedy", backend: BackendOpt = "llamacpp", model: ModelOpt = None, n: NOpt = 4, vote: VoteOpt = "equivalence",
    temperature: TempOpt = 1.0, top_p: TopPOpt = 1.0, top_k: TopKOpt = None, max_tokens: MaxTokOpt = 256, seed: SeedOpt = 0,
    system: SystemOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None, n_ctx: NCtxOpt = None,
    kv_layout: KvLayoutOpt = None, alpha: AlphaOpt = 4.0, block_size: BlockOpt = 192, mcmc_steps: StepsOpt = 10, cut: CutOpt = "uniform", beta: BetaOpt = 4.0,
    proposal_temperature: PropTOpt = None, target: TargetOpt = "full", turns: TurnsOpt = 4, reasoning_tokens: HROpt = 256,
    summary_tokens: HSOpt = 96, rc_prompts: RCPromptsOpt = None, summarise_thinking: SummThinkOpt = False,
    think_tags: ThinkTagsOpt = None, chat_template_kwarg: ChatKwOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON (tokens, log-probs, timing).")] = False,
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
    kwargs = method_settings(method, n=n, vote=vote, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, alpha=alpha,
                             block_size=block_size, mcmc_steps=mcmc_steps, cut=cut, beta=beta, proposal_temperature=proposal_temperature,
                             target=target,
                             turns=turns, reasoning_tokens=reasoning_tokens, summary_tokens=summary_tokens,
                             summarise_thinking=summarise_thinking, **_rc_prompts(rc_prompts))
    be = _load(backend, model, base_url, tokenizer, n_ctx, kv_layout, **_model_format(think_tags, chat_template_kwarg))
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
def eval_cmd(
    task: Annotated[str, typer.Option(help="Task: gsm8k, math500, aime2024, mit-integration-bee-2025, countdown, humaneval, arithmetic,"
                                                 " or jsonl (with --field).")],
    out: Annotated[str, typer.Option(help="Run folder: records.jsonl (as it goes), metrics.json, plots. Re-running resumes.")],
    data: Annotated[str | None, typer.Option(help="JSON/JSONL/parquet file, or hub:DATASET[:SPLIT] (online). Default: the task's own source.")] = None,
    field: Annotated[list[str] | None, typer.Option(help="jsonl task: NAME=COLUMN for question, answer, id, category (repeatable).")] = None,
    verifier: Annotated[str | None, typer.Option(help="The check, for tasks with several: jsonl math (default) | exact | number;"
                                                      " integrals and mit-integration-bee-2025: strop (default) | ladder | ttrl"
                                                      " (the reference code's numerical checkers; docs/evaluation.md).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    category: CategoryOpt = None,
    samples: Annotated[int, typer.Option(help="Attempts per problem (for pass@k and majority@k).")] = 1,
    method: MethodOpt = "sample", backend: BackendOpt = "llamacpp", model: ModelOpt = None, n: NOpt = 4, vote: VoteOpt = "equivalence",
    temperature: TempOpt = 1.0, top_p: TopPOpt = 1.0, top_k: TopKOpt = None, max_tokens: MaxTokOpt = 256, seed: SeedOpt = 0,
    system: SystemOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None, n_ctx: NCtxOpt = None,
    kv_layout: KvLayoutOpt = None, alpha: AlphaOpt = 4.0, block_size: BlockOpt = 192, mcmc_steps: StepsOpt = 10, cut: CutOpt = "uniform", beta: BetaOpt = 4.0,
    proposal_temperature: PropTOpt = None, target: TargetOpt = "full", turns: TurnsOpt = 4, reasoning_tokens: HROpt = 256,
    summary_tokens: HSOpt = 96, rc_prompts: RCPromptsOpt = None, summarise_thinking: SummThinkOpt = False,
    think_tags: ThinkTagsOpt = None, chat_template_kwarg: ChatKwOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Attempts in flight at once, their requests decoded together"
                                                         " (default: the backend's batch size; same random streams, rounding can flip a rare token).")] = None,
    ttrl_steps: TTStepsOpt = 8, ttrl_depth: TTDepthOpt = 2, ttrl_variants: TTVarOpt = 4, ttrl_model_requests: TTReqOpt = 0,
    ttrl_lr: TTLrOpt = 1e-4, ttrl_pass_samples: TTPassOpt = 8, ttrl_validity: TTValidOpt = "sympy",
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
    check_vote(vote)  # before the model loads: it also decides maj@k, whatever the method
    flat = Flat(n=n, vote=vote, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, alpha=alpha, block_size=block_size,
                mcmc_steps=mcmc_steps, cut=cut, beta=beta, proposal_temperature=proposal_temperature, target=target, turns=turns,
                reasoning_tokens=reasoning_tokens, summary_tokens=summary_tokens, summarise_thinking=summarise_thinking,
                **_rc_prompts(rc_prompts))
    fmt = _model_format(think_tags, chat_template_kwarg)
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
    be = _load(backend, model, base_url, tokenizer, n_ctx, kv_layout, **fmt)
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
) -> None:
    """Compare finished eval runs, or training runs, side by side."""
    from pathlib import Path

    from strop.training.report import is_training_run

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


@app.command()
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
app.add_typer(ladder_app, name="ladder")


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
    be = _load(backend, model, base_url, tokenizer, None) if model_requests else None
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


bench_app = typer.Typer(help="Benchmarks that print a table and write JSON and a PNG plot.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("power-mixing")
def power_mixing(
    quick: Annotated[bool, typer.Option(help="Fewer lengths and decision counts (well under a minute).")] = False,
    out: Annotated[str, typer.Option(help="Folder for power_mixing.json and power_mixing.png.")] = "bench/results",
    tv_level: Annotated[float, typer.Option(help="TV distance the chain must reach.")] = 0.05,
    alpha: Annotated[float, typer.Option(help="The power alpha.")] = 4.0,
    beta: Annotated[float, typer.Option(help="Entropy-cut exponent beta.")] = 4.0,
) -> None:
    """Exact mixing of uniform vs entropy cuts on the stylized model of reasoning, over T and over k."""
    from pathlib import Path

    from strop.methods.power.mixing import MixingSettings, mixing_table, plot_mixing

    Ts, ks = ((16, 32, 64), (1, 2, 3)) if quick else ((16, 32, 64, 128, 256), (1, 2, 3, 4, 5))
    with err.status("computing exact chain laws..."):
        result = mixing_table(Ts, ks, fixed_k=3, fixed_T=64, settings=MixingSettings(alpha=alpha, beta=beta, tv_level=tv_level))
    typer.echo(f"MH steps until TV(chain law, p^alpha) <= {tv_level}  (stylized model, alpha={alpha}, beta={beta}; '-' = not within 20000)")
    for key, var in (("over_T", "T"), ("over_k", "k")):
        fixed = f"k={result['fixed_k']}" if var == "T" else f"T={result['fixed_T']}"
        typer.echo(f"\n{var:>5}  {'uniform':>9}  {'entropy':>9}   ({fixed})")
        for v in sorted({r[var] for r in result[key]}):
            u, e = (next(r for r in result[key] if r[var] == v and r["cut"] == c)["steps_to_tv"] for c in ("uniform", "entropy"))
            typer.echo(f"{v:>5}  {u if u is not None else '-':>9}  {e if e is not None else '-':>9}")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "power_mixing.json").write_text(json.dumps(result, indent=1))
    plot_mixing(result, str(Path(out) / "power_mixing.png"))
    typer.echo(f"\nwrote {Path(out) / 'power_mixing.json'} and {Path(out) / 'power_mixing.png'}")


@app.command()
def serve(
    backend: BackendOpt = "llamacpp", model: ModelOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None, n_ctx: NCtxOpt = None,
    kv_layout: KvLayoutOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    served_model_name: Annotated[str | None, typer.Option(
        help="The model id clients send (default: smollm2 for the embedded model, else the model's file or folder name).")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="STROP_API_KEY", help="Require Authorization: Bearer KEY (or set STROP_API_KEY).")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens one generation may ask for (max_tokens, H_R, H_S).")] = 4096,
    max_request_tokens: Annotated[int, typer.Option(help="Most tokens one request may decode in all (n x the method's budget).")] = 65536,
    max_pending: Annotated[int, typer.Option(help="Requests running or queued at once; one more gets 429.")] = 16,
    timeout: Annotated[float, typer.Option(help="Per-request time limit in seconds, queueing included (then 503).")] = 600.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (then 413).")] = 1 << 20,
    graceful_timeout: Annotated[float, typer.Option(help="On Ctrl-C / SIGTERM: seconds to let in-flight requests finish before they are cancelled.")] = 30.0,
    max_batch: Annotated[int | None, typer.Option(help="Most rows decoded together per round, across requests (default: the backend's;"
                                                       " 1: one row at a time).")] = None,
    rc_prompts: RCPromptsOpt = None, think_tags: ThinkTagsOpt = None, chat_template_kwarg: ChatKwOpt = None,
    conversation: Annotated[str, typer.Option(help="rc/self-refine/long given a chat with earlier turns: refuse (400) or context"
                                                   " (the earlier turns become part of the problem; docs/serving.md).")] = "refuse",
) -> None:
    """Serve strop's methods behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /health)."""
    from pathlib import Path

    import uvicorn

    from strop.server import ServeConfig, create_app

    name = served_model_name or ("smollm2" if model is None else Path(model.rstrip("/")).name.removesuffix(".gguf"))
    config = ServeConfig(model_name=name, max_tokens=max_tokens, max_request_tokens=max_request_tokens, max_pending=max_pending,
                         timeout_s=timeout, max_body_bytes=max_body_bytes, api_key=api_key, max_rows=max_batch,
                         conversation=conversation, **_rc_prompts(rc_prompts))
    be = _load(backend, model, base_url, tokenizer, n_ctx, kv_layout, **_model_format(think_tags, chat_template_kwarg))
    err.print(f"serving {name} ({backend}) on http://{host}:{port}/v1  methods by model prefix, e.g. rc/{name}, or extra_body={{'strop': {{...}}}}")
    uvicorn.run(create_app(be, config), host=host, port=port, timeout_graceful_shutdown=graceful_timeout, log_level="warning")


@app.command()
def demo(
    n: Annotated[int, typer.Option("-n", "--n", help="How many one-digit sums.")] = 20,
    seed: SeedOpt = 0,
) -> None:
    """What strop is for, in about a minute: plain sampling vs power sampling on the same one-digit sums (embedded model)."""
    from rich.table import Table

    from strop.cli.demo import ALPHA, BLOCK, DEMO_SEED, MAX_TOKENS, STEPS, run_demo

    if n < 1:
        raise StropError(f"--n must be >= 1, got {n}")
    be = _load("llamacpp", None, None, None, None)
    typer.echo(f"{n} one-digit sums (\"3 + 5 = ?\", generator seed {DEMO_SEED}) answered by the embedded SmolLM2-135M-Instruct"
               f" on llama.cpp, two ways, seed {seed}:")
    with be, err.status("solving...") as status:
        rows = run_demo(be, n=n, seed=seed, progress=lambda m, done, total: status.update(f"{m}: {done}/{total}"))
    table = Table("method", "correct", "accuracy", "tokens decoded", "seconds")
    for r in rows:
        table.add_row(r.method, f"{r.correct}/{r.total}", f"{r.correct / r.total:.0%}", str(r.decoded_tokens), f"{r.seconds:.1f}")
    Console().print(table)
    typer.echo(f"Power sampling draws from p^alpha (alpha {ALPHA:g}) by Metropolis-Hastings: blocks of {BLOCK} tokens,"
               f" {STEPS} MH steps each, at most {MAX_TOKENS} tokens; it spends more tokens to sharpen the model's own distribution.")
    typer.echo("Go further:")
    typer.echo('  strop solve "12 + 7 = ?" --method power --alpha 4 --block-size 16 --mcmc-steps 10 --max-tokens 48')
    typer.echo("  strop eval --task arithmetic --method power --block-size 16 --mcmc-steps 10 --max-tokens 48 --limit 50 --out runs/power")
    typer.echo("  strop info    # backends, methods, the llama.cpp build;  README.md for RC, LADDER, SEC training and strop serve")


@app.command()
def info(
    check: Annotated[bool, typer.Option(help="Re-run the llama.cpp smoke check instead of reading the remembered verdict.")] = False,
) -> None:
    """Show the embedded model, the backends, the methods, and the llama.cpp build (its CPU features, whether it runs here)."""
    from strop import __version__
    from strop.backends import backend_names, native
    from strop.backends.llamacpp import check_native_build
    from strop.models import embedded_model_path

    typer.echo(f"strop {__version__}")
    typer.echo(f"embedded model: {embedded_model_path()}")
    typer.echo(f"backends: {', '.join(backend_names())}")
    typer.echo(f"methods: {', '.join(method_names())}; eval solvers: {', '.join(solver_names())}")
    flags = native.cpu_flags()
    shown = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")
             if f in flags]
    typer.echo(f"this CPU: {' '.join(shown) or 'unknown'} (portable build level: {native.default_level(flags)})")
    with err.status("checking the llama.cpp build in a child process..."):
        verdict = check_native_build(force=check)
    typer.echo(f"llama.cpp build: {verdict.system_info or 'unknown'}")
    typer.echo(f"llama.cpp on this CPU: {'ok' if verdict.ok else 'FAILS'}{' (remembered)' if verdict.cached else ''}")
    if not verdict.ok:
        typer.echo(verdict.message)
