"""Rows joining mid-decode: one packed pass with the live rows vs a pass of their own, side by side in one run.

    python bench/packed_joins.py [--requests 32] [--slots 8] [--repeats 4] [--out bench/results/packed_joins.json]

The hf backend's continuous batching (``generate_many`` on the embedded model,
CPU): ``--requests`` chat prompts of different questions through ``--slots``
slots, each asking for 8-31 tokens (temperature 1), so rows finish at different
steps and new rows join with their uncached prompt tokens while others decode,
as under a server's load. Two settings of ``HFBackend.packed_joins``:
- packed (the default on the CPU): a joining row's prompt tokens and the live
  rows' next tokens go in one forward pass, packed into one sequence, each
  row's attention on its own slot (``SlotKV.step(packed=True)``);
- split: the joining rows take a forward pass of their own, then the live rows
  theirs (every pass pays for reading all the weights once).
Alternating order per repeat; reports the median wall time of each, the ratio,
and whether both produced the same tokens (they may differ by float rounding).
``--pass-costs`` first times single forward passes of the model (rows x new
tokens, after 64 cached tokens; medians of 9): what a pass costs before its
first token, and per token, the arithmetic behind packing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from strop.backends import SamplingParams, load_backend
from strop.backends.base import GenRequest


def run(backend, prompts: list[list[int]], packed: bool, seed: int) -> tuple[float, int, list[tuple[int, ...]]]:
    backend.packed_joins = packed
    backend.reset_cache()
    reqs = [GenRequest(p, SamplingParams(max_tokens=8 + (i * 5) % 24, temperature=1.0), np.random.default_rng([seed, i]))
            for i, p in enumerate(prompts)]
    t = time.perf_counter()
    gens = backend.generate_many(reqs)
    return time.perf_counter() - t, sum(g.completion_tokens for g in gens), [g.token_ids for g in gens]


def pass_costs(backend, shapes=((1, 1), (1, 8), (1, 31), (8, 1), (8, 31)), past: int = 64, reps: int = 9) -> dict[str, float]:
    """Median ms of one forward pass appending ``tokens`` to each of ``rows`` sequences holding ``past`` tokens."""
    import torch
    from transformers import DynamicCache

    model, out = backend.model, {}
    gen = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    for rows, tokens in shapes:
        with torch.inference_mode():
            cache = DynamicCache()
            model(input_ids=torch.randint(0, vocab, (rows, past), generator=gen), past_key_values=cache, use_cache=True,
                  logits_to_keep=1)
            new = torch.randint(0, vocab, (rows, tokens), generator=gen)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                model(input_ids=new, past_key_values=cache, use_cache=True, logits_to_keep=1)
                times.append(time.perf_counter() - t)
                cache.crop(-tokens)
        out[f"{rows}x{tokens}"] = round(statistics.median(times) * 1e3, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--model", default=None, help="a GGUF file or model folder (default: the embedded model)")
    ap.add_argument("--pass-costs", action="store_true", help="also time single forward passes (rows x new tokens)")
    ap.add_argument("--out", default="bench/results/packed_joins.json")
    a = ap.parse_args()
    backend = load_backend("hf", a.model, max_batch=a.slots)
    prompts = [backend.chat_prompt(f"Question {i}: what is {i * 7} plus {i * 13}? Explain the steps briefly.")
               for i in range(a.requests)]
    run(backend, prompts, True, 1000)  # untimed: first-call costs
    costs = pass_costs(backend) if a.pass_costs else None
    if costs:
        print(json.dumps({"pass_ms": costs}), flush=True)
    seconds: dict[str, list[float]] = {"packed": [], "split": []}
    same = []
    for r in range(a.repeats):
        got = {}
        for packed in (True, False) if r % 2 == 0 else (False, True):
            dt, _, toks = run(backend, prompts, packed, r)
            name = "packed" if packed else "split"
            seconds[name].append(dt)
            got[name] = toks
        same.append(sum(x == y for x, y in zip(got["packed"], got["split"])))
        print(json.dumps({"repeat": r + 1, **{k: round(v[-1], 2) for k, v in seconds.items()}}), flush=True)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "requests": a.requests, "slots": a.slots,
              "seconds": seconds, "median_s": {k: round(v, 3) for k, v in med.items()},
              "split_over_packed": round(med["split"] / med["packed"], 3),
              "requests_with_the_same_tokens": same, **({"pass_ms": costs} if costs else {})}
    print(json.dumps(result, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
