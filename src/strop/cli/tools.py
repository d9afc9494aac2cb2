"""``strop demo``, ``strop info`` and ``strop bench``: what strop is for, what is installed, benchmarks with plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from strop.cli.common import SeedOpt, err, load
from strop.errors import StropError
from strop.evaluation.solvers import solver_names
from strop.methods import method_names

bench_app = typer.Typer(help="Benchmarks that print a table and write JSON and a PNG plot.", no_args_is_help=True)


@bench_app.command("power-mixing")
def power_mixing(
    quick: Annotated[bool, typer.Option(help="Fewer lengths and decision counts (well under a minute).")] = False,
    out: Annotated[str, typer.Option(help="Folder for power_mixing.json and power_mixing.png.")] = "bench/results",
    tv_level: Annotated[float, typer.Option(help="TV distance the chain must reach.")] = 0.05,
    alpha: Annotated[float, typer.Option(help="The power alpha.")] = 4.0,
    beta: Annotated[float, typer.Option(help="Entropy-cut exponent beta.")] = 4.0,
) -> None:
    """Exact mixing of uniform vs entropy cuts on the stylized model of reasoning, over T and over k."""

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


def demo(
    n: Annotated[int, typer.Option("-n", "--n", help="How many one-digit sums.")] = 20,
    seed: SeedOpt = 0,
) -> None:
    """What strop is for, in about a minute: plain sampling vs power sampling on the same one-digit sums (embedded model)."""
    from rich.table import Table

    from strop.cli.demo import ALPHA, BLOCK, DEMO_SEED, MAX_TOKENS, STEPS, run_demo

    if n < 1:
        raise StropError(f"--n must be >= 1, got {n}")
    be = load("llamacpp", None, None, None, None)
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
