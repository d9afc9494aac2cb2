"""Load on ``strop serve`` over loopback: N concurrent openai clients for a fixed time.

    python bench/serve_load.py [--clients 8] [--seconds 60] [--backend llamacpp]

Starts ``strop serve`` (embedded model by default) as a subprocess twice in
one run: with ``--max-batch 1`` (one row decoded at a time: no batching, the
server before the engine) and with the engine's batching (the default). Each
time it sends a mix of methods (sample, greedy, rc, power, majority) with
fixed seeds from N client threads for the given time, then re-asks every
distinct request alone and classifies every answer that differs: ``mixed``
(it is another request's answer) or a rounding difference (a batched row's
float rounding flipped a token), with throughput, p50/p99 latency, errors,
and whether the server is still up. Writes ``runs/serve-load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from strop.server.load import mixed_answers, run_load  # noqa: E402

SETTINGS = {"sample": {}, "greedy": {}, "majority": {"n": 3}, "power": {"block_size": 16, "mcmc_steps": 2},
            "rc": {"turns": 2, "reasoning_tokens": 32, "summary_tokens": 24}}
QUESTIONS = ["What is 7 + 5?", "What is 12 * 3?", "Name a prime number.", "What is 9 - 4?", "Spell cat backwards."]


def serve_and_load(a, max_batch: int | None) -> dict:
    """Start strop serve (``--max-batch``), put the load on it, check every answer, stop it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "strop", "serve", "--backend", a.backend, "--port", str(port), "--max-pending", str(4 * a.clients)]
    if max_batch is not None:
        cmd += ["--max-batch", str(max_batch)]
    server = subprocess.Popen(cmd, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("strop serve did not come up")
            time.sleep(0.2)
        reqs = [{"model": f"{m}/smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": a.max_tokens, "seed": i,
                 "extra_body": {"strop": SETTINGS[m]}}
                for i, (m, q) in enumerate((m, q) for q in QUESTIONS for m in SETTINGS)]
        report = run_load(url + "/v1", reqs, clients=a.clients, seconds=a.seconds)
        checked = mixed_answers(url + "/v1", reqs, report)
        up = requests.get(url + "/health", timeout=10).json()
        return {"max_batch": max_batch or "backend default", **report.summary(), "mixed": checked["mixed"],
                "rounding_differences": checked["rounding"], "server_after": up, "first_errors": report.errors[:5]}
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--backend", default="llamacpp")
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    one = serve_and_load(a, 1)
    batched = serve_and_load(a, None)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
               "backend": a.backend, "max_tokens": a.max_tokens, "methods": list(SETTINGS),
               "one_row_at_a_time": one, "batched": batched,
               "throughput_ratio": round(batched["throughput_rps"] / one["throughput_rps"], 2) if one["throughput_rps"] else None}
    out = ROOT / "runs" / "serve-load.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
