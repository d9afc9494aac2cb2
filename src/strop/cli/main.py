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
    method: Annotated[str, typer.Option(help="Decoding method: greedy, sample, best-of-n, majority, power.")] = "greedy",
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
    alpha: Annotated[float, typer.Option(help="power: the exponent; samples from p^alpha.", rich_help_panel="Power sampling")] = 4.0,
    block_size: Annotated[int, typer.Option(help="power: tokens per block (B).", rich_help_panel="Power sampling")] = 192,
    mcmc_steps: Annotated[int, typer.Option(help="power: MH steps per block (N).", rich_help_panel="Power sampling")] = 10,
    cut: Annotated[str, typer.Option(help="power: cut rule, uniform | entropy | max-swap.", rich_help_panel="Power sampling")] = "uniform",
    beta: Annotated[float, typer.Option(help="power: exponent of the entropy-jump cut weights.", rich_help_panel="Power sampling")] = 4.0,
    proposal_temperature: Annotated[Optional[float], typer.Option(help="power: proposal temperature (default 1/alpha).", rich_help_panel="Power sampling")] = None,
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
    if method == "power":
        from strop.methods.power import PowerConfig

        config = {"config": PowerConfig(alpha=alpha, block_size=block_size, mcmc_steps=mcmc_steps, max_tokens=max_tokens, cut=cut,
                                        beta=beta, proposal_temperature=proposal_temperature, top_k=top_k)}
    with err.status(f"loading model ({backend})..."):
        be = load_backend(backend, model, **_backend_options(backend, model, base_url, tokenizer, n_ctx))
    with be:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        prompt = be.chat_prompt(messages)
        with err.status(f"{method}: generating...") as status:
            unit = "MH steps" if method == "power" else "samples"

            def progress(done: int, total: int) -> None:
                status.update(f"{method}: {done}/{total} {unit}")

            result = fn(be, prompt, np.random.default_rng(seed), progress=progress, **config)
    if as_json:
        out = result.to_dict()
        out.update(backend=be.name, model=be.model_id, question=question, seed=seed)
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        typer.echo(result.text.strip())


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
