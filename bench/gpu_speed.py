"""strop's hf backend against transformers' own ``model.generate`` on an accelerator, side by side in one run.

    python bench/gpu_speed.py [--model PATH_OR_GGUF] [--tokens 128] [--batch 32] [--repeats 3] [--device cuda] [--out FILE]

For a device machine (the `device` tool); on a CPU it runs too (``--device cpu``, small
settings) so the script is tested where it is written. Nothing is downloaded:
``--model`` is a local folder or GGUF (default: the embedded SmolLM2-135M GGUF,
dequantised by the hf backend). Measures, interleaved, medians of ``--repeats``:
1. tokens/s of ``model.generate`` (sampling, temperature 1, no top-k/top-p,
   ``min_new_tokens = max_new_tokens`` so every row decodes the same length) at
   batch 1 and batch ``--batch``;
2. tokens/s of strop's ``generate_many`` on the same prompts and lengths (EOS
   ignored by asking for the same length, counted by tokens produced), with the
   numpy kernel on the host and with the torch kernel on the device
   (``device_sampling``), at batch 1 and ``--batch``;
3. one power-sampling chain and ``--batch`` chains through the engine (alpha 4,
   4 blocks of ``--tokens``/4 tokens, 4 MH steps each), decoded tokens/s.
Writes the figures and the ratios strop / ``generate`` as JSON.
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
from strop.backends.base import GenRequest
from strop.engine import Engine
from strop.methods import make_steps, method_settings

QUESTION = "Write a long story about a robot who learns to count, with many details."


def hf_generate(backend, prompt, batch: int, n: int) -> float:
    import torch

    ids = torch.tensor([prompt] * batch, device=backend.device)
    sync(backend)
    t = time.perf_counter()
    with torch.inference_mode():
        out = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                                     top_p=1.0, max_new_tokens=n, min_new_tokens=n, pad_token_id=backend.pad_id)
    sync(backend)
    return (out.shape[1] - ids.shape[1]) * batch / (time.perf_counter() - t)


def strop_rows(backend, prompt, batch: int, n: int, seed: int) -> float:
    backend.reset_cache()
    params = SamplingParams(max_tokens=n, temperature=1.0, return_entropy=True)
    sync(backend)
    t = time.perf_counter()
    gens = backend.generate_many([GenRequest(prompt, params, np.random.default_rng([seed, i])) for i in range(batch)])
    sync(backend)
    return sum(g.completion_tokens for g in gens) / (time.perf_counter() - t)


def power_chains(backend, question: str, chains: int, seed: int, tokens: int) -> float:
    kwargs = method_settings("power", alpha=4.0, block_size=max(1, tokens // 4), mcmc_steps=4, max_tokens=tokens)
    t = time.perf_counter()
    results = Engine(backend).run([make_steps("power", backend, question, np.random.default_rng([seed, i]), **kwargs) for i in range(chains)])
    return sum(r.decoded_tokens for r in results) / (time.perf_counter() - t)


def sync(backend) -> None:
    import torch

    if backend.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/gpu_speed.json")
    a = ap.parse_args()
    host = load_backend("hf", a.model, device=a.device, device_sampling=False, max_batch=a.batch)
    on_dev = load_backend("hf", a.model, device=a.device, device_sampling=True, max_batch=a.batch)
    prompt = host.chat_prompt(QUESTION)
    runs: dict[str, list[float]] = {}
    for r in range(a.repeats):
        for b in (1, a.batch):
            runs.setdefault(f"generate_b{b}", []).append(hf_generate(host, prompt, b, a.tokens))
            runs.setdefault(f"strop_host_b{b}", []).append(strop_rows(host, prompt, b, a.tokens, r))
            runs.setdefault(f"strop_device_b{b}", []).append(strop_rows(on_dev, prompt, b, a.tokens, r))
        runs.setdefault("power_1_chain", []).append(power_chains(on_dev, QUESTION, 1, r, a.tokens))
        runs.setdefault(f"power_{a.batch}_chains", []).append(power_chains(on_dev, QUESTION, a.batch, r, a.tokens))
    med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    result = {
        "machine": platform.machine(), "device": str(host.device), "model": host.model_id, "tokens": a.tokens, "batch": a.batch,
        "tokens_per_s": med,
        "strop_over_generate": {f"b{b}_{w}": round(med[f"strop_{w}_b{b}"] / med[f"generate_b{b}"], 3)
                                for b in (1, a.batch) for w in ("host", "device")},
    }
    try:
        import torch

        if host.device.type == "cuda":
            result["gpu"] = torch.cuda.get_device_name()
    except Exception:  # noqa: BLE001 - the name is decoration
        pass
    print(json.dumps(result, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
