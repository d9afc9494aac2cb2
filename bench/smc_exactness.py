"""How close SMC's samples come to p^alpha as the particles grow, on a toy model with an exact answer.

    python bench/smc_exactness.py [--runs 2000] [--out bench/results/smc_exactness.json]

The model: tests/conftest.py's branching toy (4 tokens, EOS at depths 1-3, length cap 4: 15 completions),
alpha 3, one-token blocks. For N = 1, 4, 16, 64 particles, ``--runs`` independent SMC runs each return one
sample; the table is the total variation between their empirical law and the exact p^alpha, beside the TV an
exact sampler's ``--runs`` draws would show (the noise floor, averaged over 20 draws of that many). Rows:
no ramp; a 3-token ramp with strop's correction (target p^alpha); the same ramp with each token weighted by its
own exponent, as the Power-SMC code does (``ramp_correction=False``), whose law is not p^alpha.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import branching_toy, empirical, tv_distance
from strop.engine import run_steps
from strop.methods.power.exact import power_target
from strop.methods.power.smc import SMCConfig, choose, smc_steps

ALPHA, CAP = 3.0, 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--out", default="bench/results/smc_exactness.json")
    args = ap.parse_args()
    toy = branching_toy()
    prompt = toy.tokenize("q")
    target = power_target(toy, prompt, CAP, ALPHA)
    keys = list(target)
    floor_rng = np.random.default_rng(1)
    floor = np.mean([tv_distance(empirical([keys[i] for i in floor_rng.choice(len(keys), args.runs, p=[target[k] for k in keys])]), target)
                     for _ in range(20)])
    rows = []
    for label, ramp, corr in (("no ramp", 0, True), ("ramp 3, corrected (strop)", 3, True), ("ramp 3, per-token exponent (Power-SMC code)", 3, False)):
        row = {"setting": label, "tv": {}}
        for n in (1, 4, 16, 64):
            config = SMCConfig(alpha=ALPHA, particles=n, block=1, ramp=ramp, max_tokens=CAP, ramp_correction=corr)
            samples = []
            for rng in np.random.default_rng(0).spawn(args.runs):
                parts, log_w, _ = run_steps(toy, smc_steps(toy, prompt, config, rng))
                samples.append(tuple(parts[choose(log_w, [None] * n, "sample", None, rng)].tokens))
            row["tv"][n] = tv_distance(empirical(samples), target)
            print(label, n, f"{row['tv'][n]:.3f}", flush=True)
        rows.append(row)
    print("\n| setting | N = 1 | N = 4 | N = 16 | N = 64 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | " + " | ".join(f"{r['tv'][n]:.3f}" for n in (1, 4, 16, 64)) + " |")
    print(f"| exact sampler, {args.runs} draws (noise floor) | {floor:.3f} | | | |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": args.runs, "alpha": ALPHA, "cap": CAP, "rows": rows, "noise_floor": floor}, indent=2))


if __name__ == "__main__":
    main()
