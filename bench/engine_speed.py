"""The engine's batching, measured side by side in one run: power sampling over many problems.

    python bench/engine_speed.py [--problems 32] [--samples 1] [--backends llamacpp,hf] [--kv-layouts shared]
                                 [--call-stats] [--model GGUF] [--out bench/results/engine_speed]

What ``strop eval --task arithmetic --method power --limit 32 --seed 2026
--block-size 16 --mcmc-steps 10 --max-tokens 48 [--batch-size 1]`` does,
in-process (the same ``evaluate`` call), on the embedded model, twice per backend:
- one at a time: one chain in flight (``batch_size=1``), as strop ran before the engine;
- batched: ``--in-flight`` chains in flight (default 16 on llamacpp, 32 on hf);
  each round their pending proposals are decoded together.
Same problems (the task's first level, one-digit sums "a + b = ?", seed 2026), same per-attempt seeds,
same settings (alpha 4, blocks of 16 tokens, 10 MH steps, at most 48 tokens).
With ``--samples K`` every problem gets K chains (``strop eval --samples K``, as for
pass@k): K x problems chains, so the batch stays full for longer before the last,
longest chains decode alone.
``--kv-layouts per-sequence,shared`` runs the llamacpp pair once per KV layout
(its ``kv_layout`` option), side by side.
``--call-stats`` also records every ``llama_decode`` call of the llamacpp runs
(tokens, sequences, seconds) and reports where the wall time went: calls with
every row in flight (and their ms a token), calls with fewer rows (the drain at
the end, as the last chains finish), and time outside ``llama_decode`` (Python:
sampling, the methods' steps).
``--model`` runs another GGUF than the embedded one (both backends load it; the
hf backend dequantises it), e.g. a copy of the embedded model in another
quantisation (docs/power_sampling.md shows how to make one).
Reports seconds per problem, the speed-up, decoded tokens per second, and
accuracy with 95% intervals (the batched run draws from the same random
streams; float rounding in batched kernels may flip a rare token). Results go
to OUT/<backend>-<mode>/ (records, metrics) and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _eval_timing import timed_eval  # bench/, first on sys.path when a script runs
from strop.backends import load_backend
from strop.methods import method_settings
from strop.tasks import get_task

SETTINGS = {"alpha": 4.0, "block_size": 16, "mcmc_steps": 10, "max_tokens": 48, "cut": "uniform"}
SEED = 2026


def run(backend_name: str, in_flight: int, problems: list, out: Path, samples: int, call_stats: bool = False,
        model: str | None = None, **options) -> dict:
    kwargs = method_settings("power", **SETTINGS)
    backend = load_backend(backend_name, model, **options)
    calls: list[tuple[int, int, float]] = []
    if call_stats and backend_name == "llamacpp":
        decode = backend._run  # every llama_decode call of the backend goes through _run(items)

        def counted(items, decode=decode):
            t = time.perf_counter()
            decode(items)
            calls.append((len(items), len({it[2] for it in items}), time.perf_counter() - t))

        backend._run = counted
    metrics, wall, records = timed_eval(backend, backend_name, "power", kwargs, problems, out, in_flight, SEED, samples)
    o = metrics["overall"]
    tokens = o["mean_tokens_per_attempt"] * o["attempts"]
    seconds = [r["seconds"] for r in records]
    extra = {}
    if in_flight == 1:
        # One at a time, a record's seconds are its chain's time. A chain's MH steps are sequential, so no batching
        # can finish the run faster than its longest chain: sum / max bounds the per-problem speed-up (Amdahl).
        extra = {"longest_chain_s": round(max(seconds), 2), "speedup_bound": round(sum(seconds) / max(seconds), 2)}
    if calls:
        extra["decode_calls"] = call_summary(calls, in_flight, wall)
    return {**extra, "in_flight": in_flight, "chains": len(records), "wall_s": round(wall, 2), "s_per_problem": round(wall / len(problems), 3),
            "tokens_per_s": round(tokens / wall, 1), "accuracy": o["accuracy"], "ci95": [round(x, 3) for x in o["ci95"]],
            "decoded_tokens": int(tokens)}


def call_summary(calls: list[tuple[int, int, float]], rows: int, wall: float) -> dict:
    """Where a run's wall time went, from its llama_decode calls (tokens, sequences, seconds)."""
    full = [c for c in calls if c[1] >= rows]
    part = [c for c in calls if c[1] < rows]
    in_decode = sum(c[2] for c in calls)
    return {"calls": len(calls), "in_decode_s": round(in_decode, 1), "outside_decode_s": round(wall - in_decode, 1),
            "full_batch_calls": len(full), "full_batch_s": round(sum(c[2] for c in full), 1),
            "full_batch_ms_per_token": round(1e3 * sum(c[2] for c in full) / max(1, sum(c[0] for c in full)), 2),
            "fewer_rows_calls": len(part), "fewer_rows_s": round(sum(c[2] for c in part), 1),
            "fewer_rows_ms_per_token": round(1e3 * sum(c[2] for c in part) / max(1, sum(c[0] for c in part)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--samples", type=int, default=1, help="chains per problem (strop eval --samples)")
    ap.add_argument("--backends", default="llamacpp,hf")
    ap.add_argument("--in-flight", type=int, default=None,
                    help="chains in flight when batched (default: 16 llamacpp, 32 hf; above 16, llamacpp gets as many slots)")
    ap.add_argument("--kv-layouts", default="shared", help="llamacpp KV layouts to run, comma-separated (shared, per-sequence)")
    ap.add_argument("--call-stats", action="store_true", help="llamacpp: where the time went, per llama_decode call")
    ap.add_argument("--model", default=None, help="a GGUF file (default: the embedded SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--out", default="bench/results/engine_speed")
    args = ap.parse_args()
    out = Path(args.out)
    problems = get_task("arithmetic").load(None, limit=args.problems, seed=SEED)  # the first level: one-digit sums
    summary: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}", "model": args.model or "embedded",
                     "problems": len(problems), "samples": args.samples, "settings": SETTINGS, "backends": {}}
    for name, layout in [(n, lay) for n in args.backends.split(",") for lay in (args.kv_layouts.split(",") if n == "llamacpp" else [None])]:
        options = {"kv_layout": layout} if layout else {}
        label = name if layout in (None, "shared") else f"{name}-{layout}"
        batched = args.in_flight or (16 if name == "llamacpp" else 32)
        one = run(name, 1, problems, out / f"{label}-one", args.samples, args.call_stats, args.model, **options)
        # llama.cpp decodes at most n_seq sequences together (16 by default): more chains in flight need more slots.
        slots = {"n_seq": batched} if name == "llamacpp" and batched > 16 else {}
        many = run(name, batched, problems, out / f"{label}-batched", args.samples, args.call_stats, args.model, **options, **slots)
        summary["backends"][label] = {"one_at_a_time": one, "batched": many,
                                      "speedup_per_problem": round(one["s_per_problem"] / many["s_per_problem"], 2)}
        print(json.dumps({label: summary["backends"][label]}, indent=1), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
