"""``strop``: command-line entry point.

User errors (``StropError``) print one line on stderr and exit 2; a
traceback means a bug in strop.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console

from strop.errors import StropError

app = typer.Typer(
    name="strop",
    help="Make language models reason better: test-time compute and RL on verified outputs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _backend_options(backend: str, model: Optional[str], base_url: Optional[str], tokenizer: Optional[str], n_ctx: Optional[int]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
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


@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question to answer, or '-' to read it from stdin.")],
    method: Annotated[str, typer.Option(help="Decoding method: greedy, sample, best-of-n, majority.")] = "greedy",
    backend: Annotated[str, typer.Option(help="Backend: llamacpp (default), hf, openai.")] = "llamacpp",
    model: Annotated[Optional[str], typer.Option(help="GGUF file, HF model folder or hub id; default: the embedded SmolLM2-135M-Instruct. With --backend openai: the server's model name.")] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="Samples for best-of-n and majority.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (sample, best-of-n, majority).")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass, in (0, 1].")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Keep only the k most likely tokens.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate per sample.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same output.")] = 0,
    system: Annotated[Optional[str], typer.Option(help="System message (default: the model template's own).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="--backend openai: server URL, e.g. http://127.0.0.1:8000/v1.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(help="--backend openai: local tokenizer matching the server's model (default: the embedded GGUF).")] = None,
    n_ctx: Annotated[Optional[int], typer.Option(help="Context window to allocate (tokens).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON (tokens, log-probs, timing).")] = False,
) -> None:
    """Answer QUESTION with a model and print the answer."""
    from strop.backends import SamplingParams, load_backend
    from strop.methods import get_method

    if question == "-":
        question = sys.stdin.read()
    if not question.strip():
        raise StropError("the question is empty")
    fn = get_method(method)  # fail on a bad name before loading a model
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
    config: dict[str, Any] = {"params": params}
    if method in ("best-of-n", "majority"):
        config["n"] = n
    with err.status(f"loading model ({backend})..."):
        be = load_backend(backend, model, **_backend_options(backend, model, base_url, tokenizer, n_ctx))
    with be:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        prompt = be.chat_prompt(messages)
        with err.status(f"{method}: generating...") as status:
            def progress(done: int, total: int) -> None:
                status.update(f"{method}: {done}/{total} samples")

            result = fn(be, prompt, np.random.default_rng(seed), progress=progress, **config)
    if as_json:
        out = result.to_dict()
        out.update(backend=be.name, model=be.model_id, question=question, seed=seed)
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        typer.echo(result.text.strip())


@app.command()
def info() -> None:
    """Show the embedded model, the backends and the methods."""
    from strop import __version__
    from strop.backends import backend_names
    from strop.methods import method_names
    from strop.models import embedded_model_path

    typer.echo(f"strop {__version__}")
    typer.echo(f"embedded model: {embedded_model_path()}")
    typer.echo(f"backends: {', '.join(backend_names())}")
    typer.echo(f"methods: {', '.join(method_names())}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=False)
    except StropError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, markup=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # click's usage errors come here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
