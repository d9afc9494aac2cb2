"""Power-sampling speed on the embedded model, measured side by side in one run.

    python bench/power_speed.py [--repeats 3] [--out bench/results/power_speed.json]

1. Tokens decoded per second inside the MH sampler (rejected proposals
   included) vs plain sampling at the proposal temperature on the same
   backend, prompt and length cap (target >= 0.8).
2. Wall-clock cost vs a straightforward sampler that regenerates every
   proposal from the full prefix (no KV reuse, as the reference code does):
   the same strop sampler on a backend whose cache is emptied before each call.
   Chains diverge once the prefill kernels differ, so the factor is reported
   per decoded token (seconds/token, naive over strop) with raw times alongside.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from strop.backends import SamplingParams, load_backend
from strop.methods.power import PowerConfig, power_sample_chain

PROMPT = "Write a short story about a robot who learns to count."
CONFIGS = {cut: PowerConfig(alpha=4.0, block_size=32, mcmc_steps=4, max_tokens=128, cut=cut) for cut in ("uniform", "entropy")}
CONFIG = CONFIGS["uniform"]


class RecomputeEveryProposal:
    """The llamacpp backend with its prefix cache emptied before every request (the naive baseline)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate_many(self, requests):
        out = []
        for r in requests:
            self.inner.reset_cache()
            out += self.inner.generate_many([r])
        return out

    def generate_stream(self, first, more, done, max_rows=None):
        pending = list(first)
        while pending:
            for key, r in pending:
                done(key, self.generate_many([r])[0])
            pending = list(more(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/power_speed.json")
    args = ap.parse_args()
    backend = load_backend()
    prompt = backend.chat_prompt(PROMPT)
    runs = {"plain": [], "mh": [], "mh_no_reuse": [], "mh_entropy": [], "mh_entropy_no_reuse": []}
    for r in range(args.repeats):
        # plain sampling: as many tokens as one MH chain decodes, in fresh samples of up to T tokens
        t, n = time.perf_counter(), 0
        rng = np.random.default_rng(r)
        for _ in range(8):
            g = backend.generate(prompt, SamplingParams(max_tokens=CONFIG.max_tokens, temperature=CONFIG.temperature), rng)
            n += g.completion_tokens
        runs["plain"].append((n, time.perf_counter() - t))
        for key, be, config in (("mh", backend, CONFIG), ("mh_no_reuse", RecomputeEveryProposal(backend), CONFIG),
                                ("mh_entropy", backend, CONFIGS["entropy"]),
                                ("mh_entropy_no_reuse", RecomputeEveryProposal(backend), CONFIGS["entropy"])):
            chain, stats, wall = power_sample_chain(be, prompt, config, np.random.default_rng(100 + r))
            runs[key].append((stats.decoded_tokens, wall, stats.recomputed_prefix_tokens, len(chain)))
    tps = {k: statistics.median(v[0] / v[1] for v in rs) for k, rs in runs.items()}
    spt = {k: statistics.median(v[1] / v[0] for v in rs) for k, rs in runs.items()}
    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "config": {k: v for k, v in CONFIG.__dict__.items() if k != "cut"},
        "tokens_per_s": {k: round(v, 2) for k, v in tps.items()},
        "sampler_over_plain_tokens_per_s": {"uniform": round(tps["mh"] / tps["plain"], 3), "entropy": round(tps["mh_entropy"] / tps["plain"], 3)},
        "no_reuse_over_reuse_seconds_per_token": {"uniform": round(spt["mh_no_reuse"] / spt["mh"], 2),
                                                  "entropy": round(spt["mh_entropy_no_reuse"] / spt["mh_entropy"], 2)},
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
