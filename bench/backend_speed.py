"""Backend generation speed, measured side by side in one run.

    python bench/backend_speed.py [--tokens 128] [--repeats 5] [--out bench/results/backend_speed.json]

Reports, on the embedded SmolLM2-135M-Instruct:
1. tokens/s of sampling (temperature 1, the `strop solve --method sample` path)
   through each backend: llamacpp, hf, openai (llama-cpp-python's server on
   loopback, started here);
2. the ratio of the llamacpp backend's speed to llama-cpp-python's own
   ``Llama.generate`` on the same Llama object, prompt and settings
   (temperature 1, no top-k/top-p/min-p, no repeat penalty), runs interleaved.

Each timing includes prompt prefill from an empty cache; runs that stop early
at EOS are counted by tokens actually produced.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from strop.backends import SamplingParams, load_backend
from strop.models import embedded_model_path

QUESTION = "Write a short story about a robot who learns to count."


def reset(backend) -> None:
    """Empty the llamacpp backend's KV cache so every run pays its prefill."""
    backend.reset_cache()


def strop_llamacpp(backend, prompt, n, seed) -> tuple[int, float]:
    reset(backend)
    t = time.perf_counter()
    g = backend.generate(prompt, SamplingParams(max_tokens=n), np.random.default_rng(seed))
    return g.completion_tokens, time.perf_counter() - t


def native_llamacpp(llm, backend, prompt, n, seed) -> tuple[int, float]:
    llm.n_tokens = 0
    llm.set_seed(seed)
    eos = backend.eos_token_ids
    t = time.perf_counter()
    count = 0
    for tok in llm.generate(prompt, temp=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        count += 1
        if tok in eos or count >= n:
            break
    return count, time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/backend_speed.json")
    args = ap.parse_args()

    import llama_cpp

    from strop.backends.llamacpp import default_threads

    llama = load_backend("llamacpp")
    # llama-cpp-python's own Llama on the same file, context and threads, for its generate loop.
    native = llama_cpp.Llama(model_path=str(embedded_model_path()), n_ctx=4096, verbose=False, n_threads=default_threads())
    prompt = llama.chat_prompt(QUESTION)
    rows: dict[str, list[tuple[int, float]]] = {"strop llamacpp": [], "llama-cpp-python generate": []}
    for r in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        rows["strop llamacpp"].append(strop_llamacpp(llama, prompt, args.tokens, r))
        rows["llama-cpp-python generate"].append(native_llamacpp(native, llama, prompt, args.tokens, r))

    hf = load_backend("hf")
    rows["strop hf"] = []
    for r in range(args.repeats):
        hf.close()  # drop its cache: pay the prefill like the others
        t = time.perf_counter()
        g = hf.generate(prompt, SamplingParams(max_tokens=args.tokens), np.random.default_rng(r))
        rows["strop hf"].append((g.completion_tokens, time.perf_counter() - t))

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()), "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "4096"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.3)
        remote = load_backend("openai", base_url=f"http://127.0.0.1:{port}/v1")
        rows["strop openai (llama_cpp.server)"] = []
        for r in range(args.repeats):
            # A distinct prompt per run: the server caches prefixes (and mishandles exact repeats).
            p = llama.chat_prompt(f"{QUESTION} Make it story number {r}.")
            t = time.perf_counter()
            g = remote.generate(p, SamplingParams(max_tokens=args.tokens), np.random.default_rng(r))
            rows["strop openai (llama_cpp.server)"].append((g.completion_tokens, time.perf_counter() - t))
    finally:
        server.terminate()
        server.wait(10)

    def tps(runs):
        return statistics.median(n / s for n, s in runs)

    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}",
        "model": embedded_model_path().name,
        "tokens_per_run": args.tokens,
        "repeats": args.repeats,
        "tokens_per_s_median": {k: round(tps(v), 2) for k, v in rows.items()},
        "llamacpp_ratio_strop_over_native": round(
            statistics.median((n1 / s1) / (n2 / s2) for (n1, s1), (n2, s2) in zip(rows["strop llamacpp"], rows["llama-cpp-python generate"])), 3
        ),
        "runs": {k: [[n, round(s, 4)] for n, s in v] for k, v in rows.items()},
    }
    print(f"{'backend':36s} tokens/s (median of {args.repeats})")
    for k, v in result["tokens_per_s_median"].items():
        print(f"{k:36s} {v:8.1f}")
    print(f"llamacpp backend / llama-cpp-python generate: {result['llamacpp_ratio_strop_over_native']:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
