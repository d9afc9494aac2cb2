"""Hugging Face transformers + torch backend: batched, and the one training uses.

Loads a local HF model folder, a hub id (when online), or a GGUF file. A GGUF
is dequantised by transformers (through the ``gguf`` package), which takes
~40 s for the embedded model, so the result is saved once as safetensors under
the user's cache directory and loaded from there afterwards.

Sampling goes through the same numpy kernel as every other local backend
(``strop.backends.logits.draw``); torch only computes logits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strop.backends.base import (
    ENTROPY,
    EXACT_LOGPROBS,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    Backend,
    FinishReason,
    Generation,
    GenRequest,
    OnToken,
    SamplingParams,
    Scored,
    TokenTrace,
    common_prefix_len,
    draw_params,
)
from strop.backends.logits import Draw, score_rows
from strop.errors import ConfigError, ModelLoadError
from strop.models import cache_root, check_gguf, is_gguf_spec

log = logging.getLogger(__name__)


def _gguf_key(path: Path) -> str:
    # Content-addressed on size + head + tail: cheap for a 100 MB file, and a
    # different file at the same path never reuses a stale conversion.
    st = path.stat()
    h = hashlib.sha256(str(st.st_size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, st.st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def converted_gguf_dir(path: Path) -> Path:
    """Folder of HF weights converted from ``path``, converting on first use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_root() / "hf-from-gguf" / f"{path.stem}-{_gguf_key(path)}"
    if (target / "config.json").is_file():
        return target
    log.info("dequantising %s for transformers (once; cached in %s)", path, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        # The tensors are already dequantised to float32; transformers still
        # tags the model as "gguf-quantised" and refuses to save it, so drop the tag.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tok.save_pretrained(tmp)
        model.save_pretrained(tmp)
    except Exception as e:  # transformers raises many types for unsupported files
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"transformers could not load GGUF {path}: {e}") from e
    tmp.replace(target) if not target.exists() else shutil.rmtree(tmp, ignore_errors=True)
    return target


class HFBackend(Backend):
    """A causal LM run by transformers on CPU or GPU.

    Args:
        model: GGUF file, local model folder, or hub id.
        device: torch device string; default cuda if available, else cpu.
        dtype: torch dtype name for the weights (float32 default on CPU).
    """

    name = "hf"
    batches = True
    capabilities = frozenset({LOGPROBS, ENTROPY, SCORE, PREFIX_CACHE, EXACT_LOGPROBS})

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None, context_length: int | None = None,
                 max_batch: int = 32, device_sampling: bool | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise ModelLoadError("the hf backend needs torch and transformers: pip install 'strop[hf]'") from e
        self.torch = torch
        self.model_id = model
        source = model
        if is_gguf_spec(model):
            source = str(converted_gguf_dir(check_gguf(Path(model))))
        elif os.path.sep in model and not Path(model).exists():
            raise ModelLoadError(f"model folder not found: {model}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.max_batch = max_batch
        # Batched rows sample on the model's device (strop.backends.torch_kernels) off the CPU; on the CPU the
        # numpy reference kernel runs (same semantics, tested equal).
        self.device_sampling = self.device.type != "cpu" if device_sampling is None else device_sampling
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float32 if self.device.type == "cpu" else torch.bfloat16)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load '{model}' with transformers: {str(e).splitlines()[0]}") from e
        self._setup(context_length)

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, *, context_length: int | None = None) -> HFBackend:
        """A backend over a model already in memory, sharing its weights (no copy).

        Training uses it to decode with the policy it is updating (RC rollouts);
        call ``reset_cache()`` after the weights change, as the prefix cache was
        computed with the old ones.
        """
        import torch

        self = cls.__new__(cls)
        self.torch = torch
        self.model_id = str(getattr(getattr(model, "config", None), "name_or_path", "") or "in-memory model")
        self.device = next(model.parameters()).device
        self.tokenizer, self.model = tokenizer, model
        self._setup(context_length)
        return self

    def _setup(self, context_length: int | None) -> None:
        cfg = self.model.config
        self.context_length = context_length or int(getattr(cfg, "max_position_embeddings", 2048))
        self.chat_template = getattr(self.tokenizer, "chat_template", None)
        self.bos_token = self.tokenizer.bos_token or ""
        self.eos_token = self.tokenizer.eos_token or ""
        eos = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos |= set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}
        self.eos_token_ids = frozenset(int(e) for e in eos if e is not None)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_token_ids)
        # One-sequence KV cache for prefix reuse: ids it holds and the cache.
        self._ids: list[int] = []
        self._kv = None

    # ----------------------------------------------------------- tokenizer
    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # --------------------------------------------------------------- model
    def _forward(self, new_ids: Sequence[int]) -> np.ndarray:
        """Append ``new_ids`` to the cached sequence; return logits (len(new_ids), V)."""
        torch = self.torch
        from transformers import DynamicCache

        if self._kv is None:
            self._kv = DynamicCache()
        x = torch.tensor([list(new_ids)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=x, past_key_values=self._kv, use_cache=True)
        self._kv = out.past_key_values
        self._ids.extend(int(t) for t in new_ids)
        return out.logits[0].float().cpu().numpy()

    def _prefill(self, ids: Sequence[int], limit: int) -> tuple[np.ndarray, int]:
        """Bring the cache to ``ids``, reusing at most ``limit`` tokens of the cached prefix.

        Returns (logits for positions from the first recomputed one, how many
        tokens were reused). ``limit`` < len(ids), so the logits we need are
        always recomputed.
        """
        keep = min(common_prefix_len(self._ids, ids), limit)
        if keep == 0 or self._kv is None:
            self._ids, self._kv, keep = [], None, 0
        elif keep < len(self._ids):
            self._kv.crop(keep - len(self._ids))  # transformers 5 takes "tokens to remove" as a negative count
            del self._ids[keep:]
        return self._forward(ids[keep:]), keep

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator, *,
                 on_token: OnToken | None = None) -> Generation:
        started = time.perf_counter()
        ids = [int(t) for t in prompt_ids]
        self.check_fits(len(ids))
        logits, cached = self._prefill(ids, len(ids) - 1)
        trace, finish, text = self._decode(logits[-1], lambda t: self._forward([t])[-1], len(ids), params, rng, on_token)
        return self._result(trace, finish, text, len(ids), cached, started, params)

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        ids = [int(t) for t in prompt_ids] + [int(t) for t in continuation_ids]
        self.check_fits(len(ids), 0)
        if not continuation_ids:
            return Scored(np.zeros(0), np.zeros(0) if entropies else None)
        if not prompt_ids:
            raise ConfigError("score needs a non-empty prompt (the first token has no prediction)")
        logits, cached = self._prefill(ids, len(prompt_ids) - 1)
        # Row r of ``logits`` predicts ids[cached + r + 1]; keep those predicting the continuation.
        first = len(prompt_ids) - 1 - cached
        rows = logits[first : first + len(continuation_ids)]
        lp, ent = score_rows(rows, np.asarray(continuation_ids), entropies)
        return Scored(lp, ent, cached)

    def generate_many(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """All rows in one left-padded batch, each with its own settings and rng.

        The prompts are recomputed (no prefix reuse across calls: the KV cache
        of a batch is not kept); one request alone takes the one-sequence path,
        which reuses its cached prefix.
        """
        if len(requests) <= 1:
            return super().generate_many(requests)
        torch = self.torch
        started = time.perf_counter()
        prompts = [[int(t) for t in r.prompt_ids] for r in requests]
        for p in prompts:
            self.check_fits(len(p))
        width = max(len(p) for p in prompts)
        n = len(prompts)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        budget = [min(r.params.max_tokens, self.context_length - len(p)) for r, p in zip(requests, prompts)]
        traces = [TokenTrace() for _ in prompts]
        finish: list[FinishReason | None] = [None] * n
        texts: list[str] = [""] * n
        kv = None
        step_ids = ids
        with torch.inference_mode():
            while True:
                pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
                out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=pos, past_key_values=kv, use_cache=True)
                kv = out.past_key_values
                draws = self._draw_rows(out.logits[:, -1], requests, finish)
                nxt = []
                for i, r in enumerate(requests):
                    if finish[i] is not None:
                        nxt.append(self.pad_id)
                        continue
                    traces[i].add(draws[i])
                    nxt.append(traces[i].tokens[-1])
                    if r.on_token is not None:
                        r.on_token(nxt[-1])
                    end = self._finished(traces[i], r.params, budget[i])
                    if end is not None:
                        finish[i], texts[i] = end
                if all(f is not None for f in finish):
                    break
                step_ids = torch.tensor(nxt, dtype=torch.long, device=self.device)[:, None]
                alive = torch.tensor([f is None for f in finish], dtype=torch.long, device=self.device)[:, None]
                mask = torch.cat([mask, alive], dim=1)
        # Rows share one forward pass, so each is charged the batch's wall time.
        elapsed = time.perf_counter() - started
        return [self._result(t, f, txt, len(p), 0, started, r.params, elapsed)
                for t, f, txt, p, r in zip(traces, finish, texts, prompts, requests)]

    def _draw_rows(self, logits: Any, requests: Sequence[GenRequest], finish: Sequence[FinishReason | None]) -> dict[int, Draw]:
        """One token per live row: on the device (torch kernel) or row by row on the CPU (numpy reference)."""
        live = [i for i, f in enumerate(finish) if f is None]
        if not self.device_sampling:
            last = logits.float().cpu().numpy()
            return {i: draw_params(last[i], requests[i].params, requests[i].rng) for i in live}
        from strop.backends.torch_kernels import draw_rows

        ps = [requests[i].params for i in live]
        # One uniform per sampled row from its own rng, as the numpy kernel consumes it (none for greedy rows).
        u = [requests[i].rng.random() if p.temperature > 0 else 0.0 for i, p in zip(live, ps)]
        d = draw_rows(logits[live], [p.temperature for p in ps], [p.top_k for p in ps], [p.top_p for p in ps], u,
                      want_entropy=any(p.return_entropy for p in ps))
        cols = [t.tolist() for t in (d.tokens, d.base_logprobs, d.proposal_logprobs, d.entropies)]
        return {i: Draw(int(cols[0][j]), cols[1][j], cols[2][j], cols[3][j] if ps[j].return_entropy else float("nan"))
                for j, i in enumerate(live)}

    def reset_cache(self) -> None:
        self._kv = None
        self._ids = []

    def close(self) -> None:
        self.reset_cache()

