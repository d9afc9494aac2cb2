"""strop's hf backend against transformers' own ``model.generate`` on an accelerator, side by side in one run.

    python bench/gpu_speed.py [--model PATH_OR_GGUF] [--random-weights] [--tokens 128] [--batch 32] [--repeats 3]
                              [--warmup 1] [--no-power] [--power-repeats N] [--profile DIR]
                              [--compare-align] [--smc N] [--device cuda] [--out FILE]

For a device machine (the `device` tool); on a CPU it runs too (``--device cpu``, small
settings) so the script is tested where it is written. Nothing is downloaded:
``--model`` is a local folder or GGUF (default: the embedded SmolLM2-135M GGUF,
dequantised by the hf backend). With ``--random-weights``, ``--model`` is a folder
holding only a config.json and a tokenizer: the model is built from the config with
seeded random weights on the device (the way to measure on a machine that model
weights cannot reach; speed does not depend on the weights' values, as every row
decodes a fixed length). Measures, interleaved, medians of ``--repeats``:
1. tokens/s of ``model.generate`` (sampling, temperature 1, no top-k/top-p,
   ``min_new_tokens = max_new_tokens`` so every row decodes the same length) at
   batch 1 and batch ``--batch``;
2. tokens/s of strop's ``generate_many`` on the same prompts and lengths (EOS
   ignored by asking for the same length, counted by tokens produced), with the
   numpy kernel on the host and with the torch kernel on the device
   (``device_sampling``), at batch 1 and ``--batch``;
3. one power-sampling chain and ``--batch`` chains through the engine (alpha 4,
   4 blocks of ``--tokens``/4 tokens, 4 MH steps each), decoded tokens/s;
With ``--compare-align``, a fourth path in each repeat: the torch kernel with the batched
attention's width not rounded up to a multiple of 16 (``attention_align = 1``; the default on
CUDA is 16, extra columns masked), to time that rounding on the GPU at hand.
The paths' order turns by one place each repeat (on an H100 VM the path run last in a
repeat read ~20% faster whichever it was), so use a multiple of the path count for
``--repeats``.
With ``--smc N``, each repeat also times one problem alone: plain sampling at temperature 1/alpha and SMC power
sampling with N particles (their latency ratio; the target on a GPU: at most 2x for N = 16).
4. the torch sampling kernel on the device against the numpy kernel on the host
   for the same logits and uniforms (largest log-prob difference, token agreement).
Writes the figures and the ratios strop / ``generate`` as JSON, after every repeat.
With ``--profile DIR``, after the timed repeats one more ``--batch``-row round of
``generate`` and of strop (torch kernel) runs under ``torch.profiler``: per decode
step, the wall time, the device's busy time (kernels and copies) and the number of
operator calls, into the JSON, and the operator tables into DIR/generate.txt and
DIR/strop_device.txt.
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


def one_problem_seconds(backend, question: str, seed: int, tokens: int, method: str, **settings) -> tuple[float, int]:
    """Wall seconds and decoded tokens of one attempt of ``method`` alone (its latency)."""
    kwargs = method_settings(method, max_tokens=tokens, **settings)
    sync(backend)
    t = time.perf_counter()
    (r,) = Engine(backend).run([make_steps(method, backend, question, np.random.default_rng(seed), **kwargs)])
    sync(backend)
    return time.perf_counter() - t, r.decoded_tokens


def profile_round(backend, on_dev, prompt, batch: int, n: int, folder: Path) -> dict:
    """``generate`` and strop's rows at ``batch`` under torch.profiler: per step, wall ms, device-busy ms, operator calls."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    folder.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if backend.device.type == "cuda" else [])
    out = {}
    for name, run in (("generate", lambda: hf_generate(backend, prompt, batch, n)),
                      ("strop_device", lambda: strop_rows(on_dev, prompt, batch, n, 7))):
        with profile(activities=activities) as prof:
            t = time.perf_counter()
            run()
            wall = time.perf_counter() - t
        table = prof.key_averages()
        calls = sum(e.count for e in table if e.key.startswith("aten::"))
        # Device busy time: the device-side events' (kernels', copies') own time; 0 on a CPU run, which records none.
        busy_us = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) or 0
                      for e in table if e.device_type == DeviceType.CUDA)
        out[name] = {"wall_ms_per_step": round(wall / n * 1e3, 3), "device_busy_ms_per_step": round(busy_us / n / 1e3, 3),
                     "aten_calls_per_step": round(calls / n, 1)}
        sorts = ("self_cpu_time_total", "count") + (("self_device_time_total",) if len(activities) > 1 else ())
        (folder / f"{name}.txt").write_text("".join(f"# {n} decode steps, sorted by {sort}\n{table.table(sort_by=sort, row_limit=50)}\n"
                                                    for sort in sorts))
    return out


def sync(backend) -> None:
    import torch

    if backend.device.type == "cuda":
        torch.cuda.synchronize()


def kernel_check(device, vocab: int, rows: int = 32) -> dict:
    """The torch kernel on ``device`` against the numpy reference, as tests/backends/test_torch_kernel.py does on the CPU."""
    import torch

    from strop.backends.logits import draw
    from strop.backends.torch_kernels import draw_rows

    class Replay:
        def __init__(self, u: float) -> None:
            self.u = u

        def random(self) -> float:
            return self.u

    rng = np.random.default_rng(0)
    worst, same, total = 0.0, 0, 0
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9), (0.0, 1.0)):
        logits = rng.normal(scale=3.0, size=(rows, vocab)).astype(np.float32)
        logits[:, :5] += 6.0
        u = rng.random(rows)
        got = draw_rows(torch.from_numpy(logits).to(device), [temperature] * rows, [None] * rows, [top_p] * rows, u.tolist(),
                        want_entropy=True)
        for i in range(rows):
            ref = draw(logits[i], temperature=temperature, top_k=None, top_p=top_p, rng=Replay(u[i]), want_entropy=True)
            same += int(got.tokens[i]) == ref.token
            total += 1
            worst = max(worst, abs(float(got.base_logprobs[i]) - ref.base_logprob),
                        abs(float(got.proposal_logprobs[i]) - ref.proposal_logprob), abs(float(got.entropies[i]) - ref.entropy))
    return {"rows": total, "same_token": same, "max_abs_diff": worst}


def random_model(folder: str, device) -> tuple:
    """A model built from ``folder``'s config.json with seeded random weights, and its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dtype).eval()
    model.config.name_or_path = f"{folder} (random weights)"
    return model, AutoTokenizer.from_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed repeats")
    ap.add_argument("--no-power", action="store_true", help="skip the power-sampling chains (item 3)")
    ap.add_argument("--power-repeats", type=int, default=None, help="run the power chains in only the first N timed "
                    "repeats (default: all)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="profile one more round of each path (see above)")
    ap.add_argument("--random-weights", action="store_true", help="build --model (a folder with config.json and a tokenizer) "
                    "with seeded random weights instead of loading weights")
    ap.add_argument("--compare-align", action="store_true", help="also time the torch-kernel path with attention_align 1")
    ap.add_argument("--smc", type=int, default=0, metavar="N", help="also time one problem alone: plain sampling at temperature 1/alpha "
                    "against SMC power sampling with N particles (alpha 4, blocks of --tokens/4, ramp --tokens/4), the latency ratio")
    ap.add_argument("--out", default="bench/results/gpu_speed.json")
    a = ap.parse_args()
    import torch
    import transformers

    from strop.backends.hf import HFBackend

    if a.random_weights:
        if not a.model or not (Path(a.model) / "config.json").is_file():
            ap.error("--random-weights needs --model FOLDER holding a config.json and a tokenizer")
        device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, tok = random_model(a.model, device)
        host = HFBackend.wrap(model, tok, device_sampling=False, max_batch=a.batch)
        on_dev = HFBackend.wrap(model, tok, device_sampling=True, max_batch=a.batch)
    else:
        host = load_backend("hf", a.model, device=a.device, device_sampling=False, max_batch=a.batch)
        on_dev = load_backend("hf", a.model, device=a.device, device_sampling=True, max_batch=a.batch)
    paths = [("device", on_dev)]
    if a.compare_align:  # the same model under a second backend whose attention width is not rounded up
        unaligned = HFBackend.wrap(on_dev.model, on_dev.tokenizer, device_sampling=True, max_batch=a.batch)
        unaligned.attention_align = 1
        paths.append(("device_align1", unaligned))
    prompt = host.chat_prompt(QUESTION)
    result = {
        "machine": platform.machine(), "device": str(host.device), "model": host.model_id, "random_weights": a.random_weights,
        "parameters": sum(p.numel() for p in host.model.parameters()), "dtype": str(host.model.dtype),
        "torch": torch.__version__, "transformers": transformers.__version__, "tokens": a.tokens, "batch": a.batch,
    }
    if host.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    result["kernel_check"] = kernel_check(host.device, int(host.model.config.vocab_size))
    print(json.dumps(result), flush=True)
    # Untimed rounds first, at full size: on an H100 generate() ran 3-4x slower in its first full-length calls
    # (546 vs ~1900 tokens/s at batch 32) even after a 16-token warm-up; from the second round on it was steady.
    for w in range(a.warmup):
        for b in (1, a.batch):
            hf_generate(host, prompt, b, a.tokens)
            strop_rows(host, prompt, b, a.tokens, 1000 + w)
            for _, backend in paths:
                strop_rows(backend, prompt, b, a.tokens, 1000 + w)
    runs: dict[str, list[float]] = {}
    timed = [("generate", lambda b, r: hf_generate(host, prompt, b, a.tokens)),
             ("strop_host", lambda b, r: strop_rows(host, prompt, b, a.tokens, r))]
    timed += [(f"strop_{name}", lambda b, r, backend=backend: strop_rows(backend, prompt, b, a.tokens, r)) for name, backend in paths]
    for r in range(a.repeats):
        order = timed[r % len(timed):] + timed[: r % len(timed)]  # each path takes each place in turn
        for b in (1, a.batch):
            for name, run in order:
                runs.setdefault(f"{name}_b{b}", []).append(run(b, r))
        if not a.no_power and (a.power_repeats is None or r < a.power_repeats):
            runs.setdefault("power_1_chain", []).append(power_chains(on_dev, QUESTION, 1, r, a.tokens))
            runs.setdefault(f"power_{a.batch}_chains", []).append(power_chains(on_dev, QUESTION, a.batch, r, a.tokens))
        if a.smc:
            s, n = one_problem_seconds(on_dev, QUESTION, r, a.tokens, "sample", temperature=0.25)
            runs.setdefault("latency_sample_s", []).append(s)
            s, n = one_problem_seconds(on_dev, QUESTION, r, a.tokens, "power", sampler="smc", particles=a.smc,
                                       smc_block=max(1, a.tokens // 4), ramp=max(1, a.tokens // 4))
            runs.setdefault(f"latency_smc{a.smc}_s", []).append(s)
            runs.setdefault(f"smc{a.smc}_decoded_tokens", []).append(n)
        med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
        if a.smc:
            result["smc_latency_over_sampling"] = round(statistics.median(runs[f"latency_smc{a.smc}_s"])
                                                        / statistics.median(runs["latency_sample_s"]), 3)
        result.update(repeats_done=r + 1, tokens_per_s=med, runs=runs, strop_over_generate={
            f"b{b}_{w}": round(med[f"strop_{w}_b{b}"] / med[f"generate_b{b}"], 3) for b in (1, a.batch) for w in ["host"] + [n for n, _ in paths]})
        print(json.dumps({"repeat": r + 1, "tokens_per_s": med, "strop_over_generate": result["strop_over_generate"]}), flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1))
    if a.profile:
        result["profile"] = profile_round(host, on_dev, prompt, a.batch, a.tokens, Path(a.profile))
        print(json.dumps({"profile": result["profile"]}), flush=True)
        Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
