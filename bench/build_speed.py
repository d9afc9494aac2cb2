"""Portable vs native llama.cpp builds on this machine: does each run, and how fast, side by side in one run.

    python bench/build_speed.py [--levels portable,native] [--repeats 3] [--tokens 96] [--out bench/results/build_speed.json]

Each level's wheel comes from ``scripts/llama-wheel.sh LEVEL`` (built on first
use, about 10 minutes; then taken from ~/.cache/strop/wheels) and is installed
into its own folder under the system temp dir, so the two builds never share a
process. For each build, in a child process (a crash is reported, not fatal):
the smoke check (load the embedded model, decode a few tokens), then strop's
llamacpp backend decoding at temperature 1 with log-probs and entropies, one
sequence and 16 sequences together. Builds alternate run by run, so load drift
hits both; medians are reported with the native/portable ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
from strop.backends import load_backend, SamplingParams
from strop.backends.base import GenRequest
import llama_cpp
be = load_backend("llamacpp", native_check=False)
prompt = be.chat_prompt("Write a long story about a robot who learns to count, with many details.")
out = {"system_info": llama_cpp.llama_print_system_info().decode()}
for rows in (1, 16):
    be.reset_cache()
    t = time.perf_counter()
    gens = be.generate_many([GenRequest(prompt, SamplingParams(max_tokens=int(sys.argv[1]), return_entropy=True),
                                        np.random.default_rng([int(sys.argv[2]), i])) for i in range(rows)])
    out[f"tokens_per_s_{rows}"] = sum(g.completion_tokens for g in gens) / (time.perf_counter() - t)
print("RESULT " + json.dumps(out))
"""


def install(level: str, folder: Path) -> Path:
    wheel = subprocess.run([str(ROOT / "scripts" / "llama-wheel.sh"), level], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHON": sys.executable}).stdout.strip()
    target = folder / level
    if not target.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), wheel], check=True)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="portable,native")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--out", default="bench/results/build_speed.json")
    args = ap.parse_args()
    levels = args.levels.split(",")
    folder = Path(tempfile.gettempdir()) / "strop-build-bench"
    targets = {lv: install(lv, folder) for lv in levels}
    runs: dict[str, list[dict]] = {lv: [] for lv in levels}
    crashed: dict[str, str] = {}
    for r in range(args.repeats):
        for lv in levels:
            if lv in crashed:
                continue
            env = {**os.environ, "PYTHONPATH": f"{targets[lv]}{os.pathsep}{ROOT / 'src'}"}
            proc = subprocess.run([sys.executable, "-c", CHILD, str(args.tokens), str(r)], capture_output=True, text=True, env=env, timeout=900)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                crashed[lv] = f"exit status {proc.returncode}" + (" (killed by a signal)" if proc.returncode < 0 else "") + \
                              f": {(proc.stderr or '').strip().splitlines()[-1:] }"
                continue
            runs[lv].append(json.loads(line[len("RESULT "):]))
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0] if Path("/proc/cpuinfo").exists() else ""
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "cpu_has": sorted(
        f for f in flags.split() if f.startswith(("avx", "amx", "fma", "f16c"))), "tokens": args.tokens, "builds": {}}
    for lv in levels:
        if lv in crashed:
            result["builds"][lv] = {"crashed": crashed[lv]}
            continue
        result["builds"][lv] = {"system_info": runs[lv][0]["system_info"],
                                **{k: round(statistics.median(x[k] for x in runs[lv]), 1) for k in ("tokens_per_s_1", "tokens_per_s_16")}}
    if all(lv in result["builds"] and "crashed" not in result["builds"][lv] for lv in ("portable", "native")):
        b = result["builds"]
        result["native_over_portable"] = {k: round(b["native"][k] / b["portable"][k], 3) for k in ("tokens_per_s_1", "tokens_per_s_16")}
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
