"""What the ``strop`` commands share: the console for messages, option declarations, loading a backend.

The methods' own settings are not here: each method declares them once (``strop.methods.options``) and
``strop.cli.options`` makes them flags of ``solve`` and ``eval``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

import strop.ladder  # noqa: F401  (registers the ttrl solver, which --method lists)
from strop.errors import StropError
from strop.evaluation.solvers import solver_names
from strop.methods import method_names
from strop.methods.rc import RC_PROMPTS

err = Console(stderr=True)


def backend_options(backend: str, base_url: str | None, tokenizer: str | None, n_ctx: int | None,
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
# The methods' own settings (--temperature, --alpha, --turns, ...) are not declared here: each method declares them
# once (strop.methods.options) and cli/options.py turns them into flags of solve and eval.
PANEL_R, PANEL_T = "RC / self-refine / long", "Test-time variant RL (ttrl)"
MethodOpt = Annotated[str, typer.Option(help=f"Method: {', '.join(method_names())}; eval only: {', '.join(solver_names())}"
                                                " (problem-level solvers; ttrl: test-time variant RL, --backend hf).")]
BackendOpt = Annotated[str, typer.Option(help="Backend: llamacpp (default), hf, openai.")]
MaxWallOpt = Annotated[float | None, typer.Option(help="Wall-clock budget in seconds (recipe max_wall_s): stop, with a checkpoint, "
                                                       "at the end of the first step past it, counting earlier runs of the folder.")]
CategoryOpt = Annotated[list[str] | None, typer.Option(help="Only problems of this category (repeatable), e.g. arithmetic levels d3o1, d3o2; before --limit.")]
ModelOpt = Annotated[str | None, typer.Option(help="GGUF file, HF model folder or hub id; default: the embedded SmolLM2-135M-Instruct."
                                                      " With --backend openai: the server's model name.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed; the same seed gives the same output.")]
SystemOpt = Annotated[str | None, typer.Option(help="System message (default: the model template's own).")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="--backend openai: server URL, e.g. http://127.0.0.1:8000/v1.")]
TokOpt = Annotated[str | None, typer.Option(help="--backend openai: local tokenizer matching the server's model (default: the embedded GGUF).")]
NCtxOpt = Annotated[int | None, typer.Option(help="Context window to allocate (tokens).")]
KvLayoutOpt = Annotated[str | None, typer.Option(help="llamacpp only: KV cache layout, 'shared' (default: one pool for all "
                                                      "sequences) or 'per-sequence' (a full context per sequence: faster on long "
                                                      "generations, more memory; docs/engine.md).")]
RCPromptsOpt = Annotated[str | None, typer.Option(help=RC_PROMPTS.help, rich_help_panel=PANEL_R)]
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


def model_format(think_tags: tuple[str, str] | None, chat_template_kwarg: list[str] | None) -> dict[str, Any]:
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


def load(backend: str, model: str | None, base_url: str | None, tokenizer: str | None, n_ctx: int | None,
          kv_layout: str | None = None, **fmt: Any):
    """Load a backend; ``fmt`` (from ``_model_format``) sets how the model writes: reasoning tags, chat-template switches."""
    from strop.backends import load_backend

    with err.status(f"loading model ({backend})..."):
        be = load_backend(backend, model, **backend_options(backend, base_url, tokenizer, n_ctx, kv_layout))
    for name, value in fmt.items():
        setattr(be, name, value)
    return be
