"""The llamacpp backend's two KV layouts on long generations, side by side in one run.

    python bench/kv_layout_speed.py [--rows 16] [--tokens 768] [--repeats 1] [--out bench/results/kv_layout_speed.json]

``--rows`` different prompts (story requests, so rows run long), sampled at
temperature 1 with log-probs, all in one ``generate_many`` call on the
embedded model, once per layout per repeat, the layouts alternating so load
drift hits both:
- ``shared``: one pool of cells (16384) for every slot; every row of a step
  attends over all used cells, and a row joins only while the rows' budgets
  fit half the pool (so fewer rows run at once when budgets are long);
- ``per-sequence``: each slot its own stream of a full context; each row
  attends only to its own cells.
Reports generated tokens/s per layout (median over repeats) and the ratio.
The power-sampling bench (short chains) is ``bench/engine_speed.py --kv-layouts per-sequence,shared``.
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

LAYOUTS = ("shared", "per-sequence")


def run(layout: str, rows: int, tokens: int, seed: int) -> tuple[int, float]:
    be = load_backend("llamacpp", kv_layout=layout)
    try:
        params = SamplingParams(max_tokens=tokens, temperature=1.0)
        reqs = [GenRequest(be.chat_prompt(f"Write a very long and detailed story about robot number {i} who learns to count."),
                           params, np.random.default_rng([seed, i])) for i in range(rows)]
        t = time.perf_counter()
        gens = be.generate_many(reqs)
        return sum(g.completion_tokens for g in gens), time.perf_counter() - t
    finally:
        be.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="bench/results/kv_layout_speed.json")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {k: [] for k in LAYOUTS}
    for r in range(args.repeats):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            n, wall = run(layout, args.rows, args.tokens, r)
            runs[layout].append({"tokens": n, "seconds": round(wall, 2), "tokens_per_s": round(n / wall, 1)})
            print(layout, runs[layout][-1], flush=True)
    tps = {k: round(statistics.median(x["tokens_per_s"] for x in v), 1) for k, v in runs.items()}
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": args.rows, "max_tokens": args.tokens,
           "runs": runs, "tokens_per_s": tps, "per_sequence_over_shared": round(tps["per-sequence"] / tps["shared"], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("tokens_per_s", "per_sequence_over_shared")}))


if __name__ == "__main__":
    main()
