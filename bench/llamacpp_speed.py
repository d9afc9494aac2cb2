"""The llamacpp backend's decode speed against a plain low-level llama.cpp loop, side by side in one run.

    python bench/llamacpp_speed.py [--tokens 96] [--repeats 3] [--rows 1,4,8,16] [--threads N] [--model GGUF] [--out bench/results/llamacpp_speed.json]

For each number of rows B (sequences decoded together):
- plain loop: llama-cpp-python's low-level API only: one context of B
  sequence ids, the prompt decoded once and copied to every sequence
  (``llama_memory_seq_cp``), then per step one batch of B tokens and greedy
  argmax over each row's logits. No log-probs, no entropies: the machine's
  ceiling for this model and thread count.
- strop: ``LlamaCppBackend.generate_many`` with B requests of the same
  prompt, temperature 1, base and proposal log-probs and entropies for every
  token (what power sampling needs), each row from its own rng.
Runs are interleaved (plain, strop, plain, strop, ...) so load drift hits both;
the median tokens/s of each is reported with the ratio strop / plain. Every
run decodes until each row has ``--tokens`` tokens or EOS; tokens are counted.
Also reports single-sequence tokens/s at 1 thread and at the default thread
count (every CPU this process may use).
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
from strop.backends.llamacpp import default_threads
from strop.models import embedded_model_path

QUESTION = "Write a long story about a robot who learns to count, with many details."


class PlainLoop:
    """A bare multi-sequence greedy decode loop on llama.cpp's C API (through llama-cpp-python's ctypes bindings)."""

    def __init__(self, backend, rows: int, threads: int) -> None:
        import llama_cpp as lib

        self.lib, self.backend, self.rows = lib, backend, rows
        p = lib.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max, p.kv_unified = 8192, 512, 512, max(rows, 1), True
        p.n_threads = p.n_threads_batch = threads
        p.no_perf = True
        self.ctx = lib.llama_init_from_model(backend.llama._model.model, p)
        self.mem = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(512, 0, 1)
        self.n_vocab = backend.n_vocab

    def _decode(self, items) -> None:
        b = self.batch
        for i, (tok, pos, seq, want) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, want
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        assert self.lib.llama_decode(self.ctx, b) == 0

    def run(self, prompt: list[int], n: int) -> int:
        lib = self.lib
        lib.llama_memory_clear(self.mem, True)
        self._decode([(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
        first = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()
        for s in range(1, self.rows):
            lib.llama_memory_seq_cp(self.mem, 0, s, 0, len(prompt))
        logits = [first] * self.rows
        alive = list(range(self.rows))
        pos = [len(prompt)] * self.rows
        done, count = [False] * self.rows, 0
        for _ in range(n):
            items = []
            for s in alive:
                tok = int(np.argmax(logits[s]))
                count += 1
                if tok in self.backend.eos_token_ids:
                    done[s] = True
                    continue
                items.append((tok, pos[s], s, True))
            alive = [s for s in alive if not done[s]]
            if not alive:
                break
            self._decode(items)
            for k, s in enumerate(alive):
                logits[s] = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, k), shape=(self.n_vocab,))
                pos[s] += 1
        return count

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)


def strop_run(backend, prompt: list[int], rows: int, n: int, seed: int) -> int:
    backend.reset_cache()
    params = SamplingParams(max_tokens=n, temperature=1.0, return_entropy=True)
    gens = backend.generate_many([GenRequest(prompt, params, np.random.default_rng([seed, i])) for i in range(rows)])
    return sum(g.completion_tokens for g in gens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", default="1,4,8,16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None, help="a GGUF file (default: the embedded SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--out", default="bench/results/llamacpp_speed.json")
    args = ap.parse_args()
    threads = args.threads or default_threads()
    backend = load_backend("llamacpp", args.model, n_threads=threads)
    prompt = backend.chat_prompt(QUESTION)
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": threads, "tokens": args.tokens, "rows": {}}
    for rows in [int(x) for x in args.rows.split(",")]:
        plain = PlainLoop(backend, rows, threads)
        tp, ts = [], []
        try:
            for r in range(args.repeats):
                t = time.perf_counter()
                n = plain.run(prompt, args.tokens)
                tp.append(n / (time.perf_counter() - t))
                t = time.perf_counter()
                n = strop_run(backend, prompt, rows, args.tokens, r)
                ts.append(n / (time.perf_counter() - t))
        finally:
            plain.close()
        row = {"plain_tokens_per_s": round(statistics.median(tp), 1), "strop_tokens_per_s": round(statistics.median(ts), 1)}
        row["strop_over_plain"] = round(row["strop_tokens_per_s"] / row["plain_tokens_per_s"], 3)
        result["rows"][rows] = row
        print(rows, row, flush=True)
    backend.close()
    single = {}
    for t in sorted({1, threads}):
        be = load_backend("llamacpp", args.model, n_threads=t)
        p = be.chat_prompt(QUESTION)
        single[t] = round(statistics.median(_tokens_per_s(be, p, args.tokens, r) for r in range(args.repeats)), 1)
        be.close()
    result["single_sequence_tokens_per_s_by_threads"] = single
    result["model"] = Path(args.model).name if args.model else embedded_model_path().name
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


def _tokens_per_s(backend, prompt, n, seed) -> float:
    t = time.perf_counter()
    count = strop_run(backend, prompt, 1, n, seed)
    return count / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
