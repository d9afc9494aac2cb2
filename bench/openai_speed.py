"""The openai backend's concurrent requests against llama.cpp's server with parallel slots, side by side in one run.

    scripts/llama-server.sh                    # once: builds llama-server (about 10 minutes)
    python bench/openai_speed.py [--problems 32] [--concurrency 8] [--server PATH] [--out bench/results/openai_speed]

Starts ``llama-server --parallel N`` on the embedded model (loopback), then runs
``strop eval --task arithmetic --method sample`` (one sample per problem, at
most 48 tokens, seed 2026, a stop string that is never met: llama-server does
not echo prompts, so the EOS log-prob cannot be scored) through the openai backend twice against the same
server: ``concurrency=1`` (one request at a time, as strop sent them before the
engine) and ``concurrency=N`` (N requests in flight, which the server decodes
in one batch). Reports requests/s, seconds per problem, the speed-up and
accuracy, and how many answers differ (the server's batched rounding may flip
a rare token; per-request seeds are the same). Writes OUT/summary.json.
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
from dataclasses import replace
from pathlib import Path

import requests

from _eval_timing import timed_eval  # bench/, first on sys.path when a script runs
from strop.backends import load_backend
from strop.methods import method_settings
from strop.models import embedded_model_path
from strop.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
SEED = 2026
MAX_TOKENS = 48


def start_server(binary: str, parallel: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Each slot gets 2048 cells of context; threads: every core, as strop's llamacpp backend uses.
    cmd = [binary, "-m", str(embedded_model_path()), "--host", "127.0.0.1", "--port", str(port), "--parallel", str(parallel),
           "-c", str(2048 * parallel), "-t", str(os.cpu_count() or 2), "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama-server exited at start (status {proc.returncode}): {' '.join(cmd)}")
        try:
            if requests.get(url + "/health", timeout=1).ok:
                return proc, url + "/v1"
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("llama-server did not become healthy within 120 s")


def run(url: str, concurrency: int, problems: list, out: Path) -> tuple[dict, dict]:
    # A stop string (never met in these answers) makes the server's end-of-sequence a plain "stop": without it the
    # backend asks for the EOS token's log-prob by scoring with echo=True, which llama-server does not support.
    kwargs = {"params": replace(method_settings("sample", max_tokens=MAX_TOKENS)["params"], stop=("\n\nQuestion:",))}
    backend = load_backend("openai", base_url=url, concurrency=concurrency)
    metrics, wall, records = timed_eval(backend, "openai", "sample", kwargs, problems, out, concurrency, SEED)
    o = metrics["overall"]
    answers = {r["id"]: r["output"] for r in records}
    return ({"concurrency": concurrency, "wall_s": round(wall, 2), "requests_per_s": round(len(problems) / wall, 2),
             "s_per_problem": round(wall / len(problems), 3), "accuracy": o["accuracy"],
             "ci95": [round(x, 3) for x in o["ci95"]]}, answers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--server", default=None, help="llama-server binary (default: scripts/llama-server.sh's build)")
    ap.add_argument("--out", default="bench/results/openai_speed")
    a = ap.parse_args()
    binary = a.server or subprocess.run([str(ROOT / "scripts" / "llama-server.sh")], check=True, capture_output=True,
                                        text=True).stdout.strip()
    out = Path(a.out)
    problems = get_task("arithmetic").load(None, limit=a.problems, seed=SEED)
    proc, url = start_server(binary, a.concurrency)
    try:
        one, one_answers = run(url, 1, problems, out / "one")
        many, many_answers = run(url, a.concurrency, problems, out / "concurrent")
    finally:
        proc.terminate()
        proc.wait(10)
    summary = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
               "server": f"llama-server --parallel {a.concurrency} (llama.cpp vendored by llama-cpp-python)",
               "problems": len(problems), "one_at_a_time": one, "concurrent": many,
               "speedup": round(one["s_per_problem"] / many["s_per_problem"], 2),
               "answers_differing": sum(one_answers[k] != many_answers.get(k) for k in one_answers)}
    print(json.dumps(summary, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
