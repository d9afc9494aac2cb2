"""The power samplers side by side: plain sampling, MH (uniform and entropy cuts) and SMC (N = 4, 8, 16).

    python bench/power_samplers.py run --suite arith                      # the embedded model, 100 two-digit sums
    MODEL=$(../shared/models/qwen2.5-coder-1.5b.sh)
    python bench/power_samplers.py run --suite gsm8k --model "$MODEL"     # 100 GSM8K problems, 512 tokens
    python bench/power_samplers.py report --plot docs/power_samplers.png  # tables, paired tests, targets, the PNG
    python bench/power_samplers.py prefix-copy                            # hf: shared prefixes copied vs recomputed
    python bench/power_samplers.py rows [--model M]                       # batching gain per row count (llamacpp)

Every (suite, arm, mode) is one ``strop eval`` run folder under ``--out`` (resumable: run again after a kill),
all on the llamacpp backend, seed 0, one sample per problem. Two modes:
- ``batched``: every problem, attempts decoded together (the backend's batch, 16 rows): throughput, the wall
  seconds of the eval divided by its problems (timed here, per invocation, in the folder's ``wall.jsonl``);
- ``alone``: ``--batch-size 1`` on the first problems (all 100 for arith, the first 20 for gsm8k: a 1.5B model
  alone on this CPU costs minutes per MH problem): latency, each record's own seconds.

Decoded tokens count every token an arm drew: MH's rejected proposals and SMC's discarded particles included.
Settings per suite (fixed before any run; the SMC ramp is a quarter of the cap, as the paper's 400 is about a
fifth of its 2048):
- arith: 100 sums of two 2-digit numbers (the embedded model gets 2-8% of them: this suite measures speed),
  48 tokens; MH alpha 4, B 16, N 10 (bench/power_accuracy.py's); SMC alpha 4, block 16, ramp 12.
- gsm8k: 512 tokens; MH alpha 4, B 128, N 2 (bench/replication.py's); SMC alpha 4, block 64, ramp 128.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from strop.evaluation.metrics import mcnemar_exact, wilson_interval
from strop.records import read_records

ROOT = Path(__file__).resolve().parent.parent
OUT = "bench/power_samplers"
DATA = "../shared/data"
ALPHA = 4.0
PARTICLES = (4, 8, 16)


@dataclass(frozen=True)
class Suite:
    name: str
    task: tuple[str, ...]
    max_tokens: int
    mh: tuple[int, int]  # B, N
    smc: tuple[int, int]  # block, ramp
    alone: int  # problems run alone
    needs_model: bool


ARITH = "bench/power_samplers/arith-d2o1.jsonl"  # written by ``run`` (the built-in arithmetic task has 50 per level)
SUITES = {
    "arith": Suite("arith", ("--task", "jsonl", "--data", ARITH, "--field", "question=question", "--field", "answer=answer", "--field", "id=id",
                             "--field", "category=category", "--verifier", "number", "--limit", "100"), 48, (16, 10), (16, 12), 100,
                   False),
    "gsm8k": Suite("gsm8k", ("--task", "gsm8k", "--data", f"{DATA}/gsm8k_test.jsonl", "--limit", "100"), 512, (128, 2), (64, 128), 20,
                   True),
}
MODES = ("batched", "alone")


def arms(s: Suite) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (label, the method's eval options)."""
    b, n = s.mh
    block, ramp = s.smc
    out = {
        "t1": ("sampling, temperature 1", ("--method", "sample", "--temperature", "1")),
        "tlow": (f"sampling, temperature 1/alpha ({1 / ALPHA:g})", ("--method", "sample", "--temperature", f"{1 / ALPHA:g}")),
    }
    for cut in ("uniform", "entropy"):
        out[f"mh-{cut}"] = (f"MH {cut} (B {b}, N {n})", ("--method", "power", "--alpha", f"{ALPHA:g}", "--block-size", str(b),
                                                          "--mcmc-steps", str(n), "--cut", cut))
    for p in PARTICLES:
        out[f"smc-{p}"] = (f"SMC N {p} (block {block}, ramp {ramp})", ("--method", "power", "--sampler", "smc", "--alpha", f"{ALPHA:g}",
                                                                       "--particles", str(p), "--smc-block", str(block), "--ramp", str(ramp)))
    return out


def folder(out: Path, suite: str, arm: str, mode: str) -> Path:
    return out / f"{suite}-{arm}-{mode}"


def command(s: Suite, arm: str, mode: str, model: str | None, out: Path) -> list[str]:
    task = list(s.task)
    if mode == "alone":
        task[task.index("--limit") + 1] = str(s.alone)
    return [sys.executable, "-m", "strop", "eval", *task, *arms(s)[arm][1], "--max-tokens", str(s.max_tokens), "--samples", "1",
            *(["--model", model] if model else []), "--seed", "0", *(["--batch-size", "1"] if mode == "alone" else []),
            "--out", str(folder(out, s.name, arm, mode))]


def write_arith() -> None:
    """The arith suite's problems: 100 sums of two 2-digit numbers (seed 2026, the terse "a + b = ?" wording the
    embedded model handles best, as bench/power_accuracy.py), as a jsonl file the eval reads."""
    from strop.tasks.arithmetic import arithmetic_problems

    path = ROOT / ARITH
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": p.id, "question": p.question, "answer": p.answer, "category": p.level}
            for p in arithmetic_problems(100, seed=2026, digits=2, template="{expr} = ?")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    write_arith()
    for name in args.suite or list(SUITES):
        s = SUITES[name]
        if s.needs_model and not args.model:
            sys.exit(f"suite {name} needs --model (../shared/models/qwen2.5-coder-1.5b.sh prints its path)")
        for mode in args.mode or MODES:
            for arm in args.arm or list(arms(s)):
                cmd = command(s, arm, mode, args.model if s.needs_model else None, out)
                print("+ " + " ".join(cmd[2:]), flush=True)
                if args.dry_run:
                    continue
                f = ROOT / folder(out, s.name, arm, mode)
                before = len(read_records(f / "records.jsonl"))
                started = time.perf_counter()
                subprocess.run(cmd, check=True, cwd=ROOT)
                done = len(read_records(f / "records.jsonl")) - before
                if done:  # only finished invocations are timed: a killed one left records but no time
                    with open(f / "wall.jsonl", "a") as w:
                        w.write(json.dumps({"attempts": done, "seconds": time.perf_counter() - started}) + "\n")


# ---------------------------------------------------------------- report

def _wall_per_problem(f: Path) -> float | None:
    rows = read_records(f / "wall.jsonl")
    n = sum(r["attempts"] for r in rows)
    return sum(r["seconds"] for r in rows) / n if n else None


def _row(label: str, recs: list[dict], seconds: float | None) -> dict:
    n, c = len(recs), sum(r["correct"] for r in recs)
    return {"arm": label, "n": n, "correct": c, "accuracy": c / n, "ci95": list(wilson_interval(c, n)),
            "tokens": sum(r["tokens"] for r in recs) / n, "seconds": seconds}


def report(args: argparse.Namespace) -> None:
    out = ROOT / args.out
    lines: list[str] = []
    summary: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
                     "suites": {}}
    plot: dict[str, list] = {}
    for s in SUITES.values():
        for mode in MODES:
            got = {}
            for arm, (label, _) in arms(s).items():
                f = out / folder(Path("."), s.name, arm, mode)
                recs = [r for r in read_records(f / "records.jsonl") if r["sample"] == 0]
                if recs:
                    secs = (sum(r["seconds"] for r in recs) / len(recs)) if mode == "alone" else _wall_per_problem(f)
                    got[arm] = (_row(label, recs, secs), {r["id"]: r for r in recs})
            if not got:
                continue
            what = "latency: one problem alone, its own seconds" if mode == "alone" else "throughput: all problems batched, wall / problems"
            lines += [f"### {s.name}, {mode} ({what})", "",
                      "| arm | n | accuracy | 95% CI | decoded tokens / problem | s / problem | x sampling T=1 | x MH uniform |",
                      "|---|---|---|---|---|---|---|---|"]
            base = got.get("t1", (None,))[0]
            mh = got.get("mh-uniform", (None,))[0]
            for row, _ in got.values():
                ratio = lambda ref, row=row: (f"{row['seconds'] / ref['seconds']:.2f}" if ref and ref["seconds"] and row["seconds"]  # noqa: E731
                                             else "")
                sec = f"{row['seconds']:.2f}" if row["seconds"] is not None else "n/a"
                lines.append(f"| {row['arm']} | {row['n']} | {row['accuracy']:.3f} | [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}] | "
                             f"{row['tokens']:.0f} | {sec} | {ratio(base)} | {ratio(mh)} |")
                plot.setdefault(f"{s.name}, {mode}", []).append((row["arm"], row["tokens"], row["seconds"], row["accuracy"], row["ci95"]))
            tests = []
            for ref in ("mh-uniform", "mh-entropy"):
                for p in PARTICLES:
                    a, b = got.get(f"smc-{p}"), got.get(ref)
                    if a and b:
                        ids = set(a[1]) & set(b[1])
                        oa = sum(a[1][i]["correct"] and not b[1][i]["correct"] for i in ids)
                        ob = sum(b[1][i]["correct"] and not a[1][i]["correct"] for i in ids)
                        diff = (sum(a[1][i]["correct"] for i in ids) - sum(b[1][i]["correct"] for i in ids)) / len(ids)
                        tests.append({"a": f"smc-{p}", "b": ref, "n": len(ids), "only_a": oa, "only_b": ob, "p": mcnemar_exact(oa, ob),
                                      "difference": diff})
            if tests:
                lines += ["", "| SMC | MH | paired problems | only SMC right | only MH right | accuracy difference | exact McNemar p |",
                          "|---|---|---|---|---|---|---|"]
                lines += [f"| {t['a']} | {t['b']} | {t['n']} | {t['only_a']} | {t['only_b']} | {t['difference']:+.3f} | {t['p']:.3g} |"
                          for t in tests]
            if s.name == "gsm8k" and mode == "alone" and base and mh:
                for p in PARTICLES:
                    r = got.get(f"smc-{p}", (None,))[0]
                    if r and r["seconds"]:
                        lines.append(f"\nTargets, SMC N {p}: latency {r['seconds'] / base['seconds']:.2f}x sampling (target <= 3), "
                                     f"{r['seconds'] / mh['seconds']:.2f}x MH uniform (target <= 0.25).")
            lines.append("")
            summary["suites"][f"{s.name}-{mode}"] = {"rows": [g[0] for g in got.values()], "paired": tests}
    text = "\n".join(lines)
    print(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.md:
        Path(args.md).write_text(text + "\n")
    if args.plot and plot:
        _plot(plot, Path(args.plot))
        print(f"wrote {args.plot}")


def _plot(data: dict[str, list], path: Path) -> None:
    from strop.evaluation.report import _plt, _yerr

    plt = _plt()
    fig, axes = plt.subplots(2, len(data), figsize=(5.2 * len(data), 8.4), squeeze=False)
    for j, (name, points) in enumerate(data.items()):
        for row, (xi, xlabel) in enumerate(((1, "decoded tokens per problem (discarded included)"), (2, "seconds per problem"))):
            ax = axes[row][j]
            for p in points:
                if p[xi] is not None:
                    ax.errorbar([p[xi]], [p[3]], yerr=_yerr([p[3]], [p[4]]), marker="o", capsize=3, label=p[0], linestyle="none")
            ax.set(xscale="log", xlabel=xlabel, ylabel="accuracy (95% CI)", title=name, ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prefix_copy(args: argparse.Namespace) -> None:
    """hf backend, the embedded model: ``--rows`` requests with one long prompt (SMC's first block) and then continuing
    one particle's tokens (a resampling to one ancestor), with the slot-to-slot copy on and off, interleaved."""
    import numpy as np

    from strop.backends import SamplingParams, load_backend
    from strop.backends.base import GenRequest

    hf = load_backend("hf", max_batch=args.rows)
    prompt = hf.chat_prompt("Read the following and answer at the end. " + " ".join(f"Item {i} weighs {i % 7 + 1} kg." for i in range(40))
                            + " What is the total weight?")
    params = SamplingParams(max_tokens=8)
    times: dict[bool, list[float]] = {True: [], False: []}
    recomputed: dict[bool, int] = {}
    for rep in range(args.repeats):
        for copy in (True, False):
            hf.copy_prefixes = copy
            hf.reset_cache()
            started = time.perf_counter()
            gens = hf.generate_many([GenRequest(prompt, params, np.random.default_rng([rep, i])) for i in range(args.rows)])
            times[copy].append(time.perf_counter() - started)
            recomputed[copy] = sum(g.prompt_tokens - g.cached_prompt_tokens for g in gens)
    hf.close()
    med = {c: sorted(t)[len(t) // 2] for c, t in times.items()}
    print(f"hf, embedded model, {args.rows} rows, a {len(prompt)}-token prompt, 8 new tokens each, median of {args.repeats}:")
    print(f"  copy:      {med[True]:.2f} s, prompt tokens computed {recomputed[True]}")
    print(f"  recompute: {med[False]:.2f} s, prompt tokens computed {recomputed[False]}")
    print(f"  recompute / copy: {med[False] / med[True]:.2f}x  ({platform.machine()}, {platform.processor() or 'cpu'})")


def rows(args: argparse.Namespace) -> None:
    """The batching gain per row count on this machine: ``--tokens`` tokens sampled for 1, 2, 4, 8, 16 rows of one
    prompt at once (llamacpp, ``--model`` or the embedded one); a batch's wall time over one row's is the latency
    multiplier of decoding N particles together, the floor under SMC's latency."""
    import numpy as np

    from strop.backends import SamplingParams, load_backend
    from strop.backends.base import GenRequest

    be = load_backend("llamacpp", args.model)
    prompt = be.chat_prompt("Write a long story about a robot who learns to count, with many details.")
    out = {}
    for n in (1, 2, 4, 8, 16):
        times = []
        for rep in range(args.repeats):
            be.reset_cache()
            started = time.perf_counter()
            gens = be.generate_many([GenRequest(prompt, SamplingParams(max_tokens=args.tokens), np.random.default_rng([rep, i]))
                                     for i in range(n)])
            times.append((time.perf_counter() - started, sum(g.completion_tokens for g in gens)))
        wall, toks = sorted(times)[len(times) // 2]
        out[n] = (wall, toks)
    be.close()
    one = out[1][0] / max(out[1][1], 1)
    print(f"llamacpp, {be.model_id}, up to {args.tokens} tokens per row, median of {args.repeats} "
          f"({platform.machine()}, {platform.processor() or 'cpu'}):")
    print("| rows | wall s | tokens | tokens/s | s per token of one row, over 1 row's |\n|---|---|---|---|---|")
    for n, (wall, toks) in out.items():
        print(f"| {n} | {wall:.2f} | {toks} | {toks / wall:.1f} | {(wall / max(toks / n, 1)) / one:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("prefix-copy", help="hf: a prompt shared by all rows copied between slots vs recomputed")
    pc.add_argument("--rows", type=int, default=16)
    pc.add_argument("--repeats", type=int, default=3)
    rw = sub.add_parser("rows", help="batching gain per row count (llamacpp)")
    rw.add_argument("--model", default=None)
    rw.add_argument("--tokens", type=int, default=48)
    rw.add_argument("--repeats", type=int, default=3)
    for name in ("run", "commands", "report"):
        p = sub.add_parser(name)
        p.add_argument("--out", default=OUT, help="folder of the run folders (relative: to the repository root)")
        if name != "report":
            p.add_argument("--model", help="gsm8k: the GGUF (../shared/models/qwen2.5-coder-1.5b.sh prints its path)")
            p.add_argument("--suite", action="append", choices=list(SUITES), help="only this suite (repeatable)")
            p.add_argument("--mode", action="append", choices=list(MODES), help="only this mode (repeatable)")
            p.add_argument("--arm", action="append", help="only this arm (repeatable): t1, tlow, mh-uniform, mh-entropy, smc-4, smc-8, smc-16")
        else:
            p.add_argument("--md", help="also write the tables to this markdown file")
            p.add_argument("--plot", help="also draw accuracy vs decoded tokens and vs seconds per problem (PNG)")
    args = ap.parse_args()
    if args.cmd == "prefix-copy":
        prefix_copy(args)
    elif args.cmd == "rows":
        rows(args)
    elif args.cmd == "report":
        report(args)
    else:
        args.dry_run = args.cmd == "commands"
        run(args)


if __name__ == "__main__":
    main()
