"""Hugging Face transformers + torch backend: batched, and the one training uses.

Loads a local HF model folder, a hub id (when online), or a GGUF file. A GGUF
is dequantised by transformers (through the ``gguf`` package), which takes
~40 s for the embedded model, so the result is saved once as safetensors under
the user's cache directory and loaded from there afterwards.

Many rows decode together in one KV cache with a slot per sequence
(``strop.backends.slot_kv``), rows joining and leaving mid-decode.

Sampling goes through the same numpy kernel as every other local backend
(``strop.backends.logits.draw``); torch only computes logits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from strop.backends.base import (
    ENTROPY,
    EXACT_LOGPROBS,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    TOPK_BASE,
    ActiveRow,
    Backend,
    Generation,
    GenRequest,
    OnToken,
    SamplingParams,
    Scored,
    common_prefix_len,
    draw_params,
    longest_holder,
    pick_slot,
    shared_prefixes,
)
from strop.backends.logits import Draw, score_rows
from strop.backends.text import hf_control_texts, hf_tokenize, hf_tokenize_text
from strop.errors import BackendError, ConfigError, ModelLoadError
from strop.models import cache_root, check_gguf, is_gguf_spec

if TYPE_CHECKING:
    from strop.backends.slot_kv import SlotKV

log = logging.getLogger(__name__)
# Copy a prefix another slot holds (or wait one step for a joining row to compute it) only when that saves at least
# this many tokens: a copy is one indexed copy per layer, but a deferred row starts a step later.
_MIN_COPY = 8


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
    capabilities = frozenset({LOGPROBS, ENTROPY, SCORE, PREFIX_CACHE, EXACT_LOGPROBS, TOPK_BASE})
    # Width multiple of the batched attention (SlotKV's ``align``); None: 16 on CUDA, 1 elsewhere.
    # bench/gpu_speed.py --compare-align times 1 against it.
    attention_align: int | None = None
    # Rows joining with several prompt tokens go in one packed pass with the live rows (False: a pass of their own).
    # None: packed on the CPU, where it was timed (bench/packed_joins.py); a pass of their own on other devices.
    packed_joins: bool | None = None
    # A row whose prompt another slot holds copies those keys and values (``SlotKV.copy_prefix``); False recomputes
    # them (to measure the difference: bench/power_samplers.py prefix-copy).
    copy_prefixes: bool = True

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
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float32 if self.device.type == "cpu" else torch.bfloat16)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load '{model}' with transformers: {str(e).splitlines()[0]}") from e
        self._setup(context_length, max_batch, device_sampling)

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, *, context_length: int | None = None, max_batch: int = 32,
             device_sampling: bool | None = None) -> HFBackend:
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
        self._setup(context_length, max_batch, device_sampling)
        return self

    def _setup(self, context_length: int | None, max_batch: int, device_sampling: bool | None) -> None:
        self.max_batch = max_batch
        # Batched rows sample on the model's device (strop.backends.torch_kernels) off the CPU; on the CPU the
        # numpy reference kernel runs (same semantics, tested equal; measured: the torch kernel is slower on CPU).
        self.device_sampling = self.device.type != "cpu" if device_sampling is None else device_sampling
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
        self._slot_kv: SlotKV | None = None  # the continuous-batching cache (generate_stream), made on first use

    # ----------------------------------------------------------- tokenizer
    def tokenize(self, text: str) -> list[int]:
        return hf_tokenize(self.tokenizer, text)

    def tokenize_text(self, text: str) -> list[int]:
        return hf_tokenize_text(self.tokenizer, text)

    def control_texts(self) -> tuple[str, ...]:
        if getattr(self, "_controls", None) is None:
            self._controls = hf_control_texts(self.tokenizer)
        return self._controls

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
        self._require_open()
        started = time.perf_counter()
        ids = [int(t) for t in prompt_ids]
        self.check_fits(len(ids))
        logits, cached = self._prefill(ids, len(ids) - 1)
        trace, finish, text = self._decode(logits[-1], lambda t: self._forward([t])[-1], len(ids), params, rng, on_token)
        return self._result(trace, finish, text, len(ids), cached, started, params)

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        self._require_open()
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
        """All rows continuously batched (``generate_stream``); one request alone takes the one-sequence path."""
        if len(requests) <= 1:
            return super().generate_many(requests)
        return self._generate_many_streamed(requests)

    def generate_stream(self, first: Sequence[tuple[Any, GenRequest]], more: Callable[[int], Sequence[tuple[Any, GenRequest]]],
                        done: Callable[[Any, Generation], None], *, max_rows: int | None = None) -> None:
        """Continuous batching over slots of one KV cache (``strop.backends.slot_kv``).

        Each step is one forward pass: every live row's next token, plus the
        uncached prompt tokens of rows joining in that step. A new row takes
        the free slot whose cache shares the longest prefix with its prompt
        (a Metropolis-Hastings proposal lands where its chain's last sequence
        is, so only the tokens after the cut are computed). With one row at a
        time, or a model with sliding-window layers, it runs the one-sequence path.
        """
        self._require_open()
        limit = max(1, min(max_rows or self.max_batch, self.max_batch))
        if limit == 1 or not self._slot_batching:
            super().generate_stream(first, more, done, max_rows=limit)
            return
        kv = self._slot_cache(limit)
        waiting = list(first)
        active: list[ActiveRow] = []
        while True:
            new = self._admit(kv, waiting, active, limit)
            rows = new + active
            if not rows:
                if waiting:  # unreachable: with no row live every slot is free
                    raise BackendError("hf: a request could not be admitted")
                return
            # A forward pass covers every slot between the lowest and the highest fed one, so the fed slots are
            # moved to the front: the live rows first (already in front since the last step: no move), the joining
            # rows after them. New rows whose prompts need several tokens would pad every live row to the longest
            # prompt in one rectangular pass: they go in a packed pass instead (every row's tokens in one sequence,
            # each row's attention on its own slot), or, where the model's attention cannot be swapped, a pass
            # of their own.
            ragged = bool(new and active and max(len(r.ids) - r.keep for r in new) > 1)
            packed = ragged and self._packed_steps
            split = ragged and not packed
            groups = [[r.slot for r in active], [r.slot for r in new]] if ragged else [[r.slot for r in rows]]
            moves = kv.pack(*groups)
            if moves:
                used = list(self._slot_used)
                for old_slot, new_slot in moves.items():
                    self._slot_used[new_slot] = used[old_slot]
                for r in rows:
                    r.slot = moves.get(r.slot, r.slot)
            draws: dict[int, Draw] = {}
            joining = {id(r) for r in new}
            for group in ([new, active] if split else [rows]):
                feed = {r.slot: r.ids[r.keep :] if id(r) in joining else r.trace.tokens[-1:] for r in group}
                draws.update(self._draw_rows(self._slot_forward(kv, feed, packed), group, kv.lo))
            active = self._advance(rows, lambda r, d=draws: d[r.slot], done)
            free = limit - len(active) - len(waiting)
            if free > 0:
                waiting += list(more(free))

    def _slot_forward(self, kv: SlotKV, feed: dict[int, list[int]], packed: bool = False) -> Any:
        """One forward pass appending ``feed`` to its slots; each slot's last logits, row i = slot ``kv.lo + i``."""
        inputs = kv.step(feed, self.pad_id, packed=packed)
        try:
            with self.torch.inference_mode():
                if packed:
                    out = self._packed_forward(inputs, kv)
                else:
                    out = self.model(**inputs, past_key_values=kv.cache, use_cache=True, logits_to_keep=1)
        except BaseException:
            kv.abort()
            self._slot_kv = None  # partly written: forget it
            raise
        kv.commit()
        return out.logits[0] if packed else out.logits[:, -1]

    def _packed_forward(self, inputs: dict[str, Any], kv: SlotKV) -> Any:
        """The model on a packed step, with ``packed_attention`` as its attention function for this pass only
        (the model may be the user's: its own setting is restored after)."""
        from strop.backends.slot_kv import PACKED_ATTENTION

        config = self.model.config
        default = config._attn_implementation
        config._attn_implementation = PACKED_ATTENTION
        try:
            return self.model(**inputs, past_key_values=kv.cache, use_cache=True)
        finally:
            config._attn_implementation = default

    @property
    def _packed_steps(self) -> bool:
        """Whether rows joining with several prompt tokens share the live rows' pass (``SlotKV.step(packed=True)``):
        for models whose attention runs through transformers' sdpa function, which the packed pass calls per slot."""
        wanted = self.device.type == "cpu" if self.packed_joins is None else self.packed_joins
        return wanted and getattr(self.model.config, "_attn_implementation", None) == "sdpa"

    @property
    def _slot_batching(self) -> bool:
        # A 4D mask replaces transformers' own masks, sliding windows included; flash attention takes no 4D mask.
        cfg = self.model.config
        sliding = "sliding_attention" in (getattr(cfg, "layer_types", None) or ())
        return not sliding and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager")

    def _slot_cache(self, rows: int) -> SlotKV:
        from strop.backends.slot_kv import SlotKV

        kv = getattr(self, "_slot_kv", None)
        if kv is None or kv.rows != rows:
            kv = self._slot_kv = SlotKV(rows, self.device, self.model.dtype, align=self.attention_align)
            self._slot_used = [0] * rows
            self._slot_clock = 0
        return kv

    def _admit(self, kv: SlotKV, waiting: list[tuple[Any, GenRequest]], active: list[ActiveRow],
               limit: int) -> list[ActiveRow]:
        """Start rows from ``waiting`` (removed from it) in free slots, each keeping its slot's shared prefix."""
        busy = {r.slot for r in active}
        rows: list[ActiveRow] = []
        deferred: list[tuple[Any, GenRequest]] = []
        self._slot_clock += 1
        while waiting and len(busy) < limit:
            key, req = waiting.pop(0)
            ids = [int(t) for t in req.prompt_ids]
            self.check_fits(len(ids))
            # Never reuse the prompt's last token: its logits are needed.
            shared = shared_prefixes(kv.tokens, ids, len(ids) - 1)  # one pass over the slots for both look-ups
            slot, keep = pick_slot(kv.tokens, self._slot_used, ids, len(ids) - 1, busy, shared)
            if self.copy_prefixes:
                src, held = longest_holder(shared, skip=slot)
                if held >= keep + _MIN_COPY:  # another slot (live or idle) holds more of it: copy, do not recompute
                    kv.copy_prefix(src, slot, held)
                    keep = held
                elif any(common_prefix_len(r.ids, ids) >= keep + _MIN_COPY for r in rows):
                    # A row joining in this step computes this prompt's prefix: start next step, copying it then.
                    deferred.append((key, req))
                    continue
            self._slot_used[slot] = self._slot_clock
            busy.add(slot)
            kv.keep(slot, keep)
            budget = min(req.params.max_tokens, self.context_length - len(ids))
            rows.append(ActiveRow(req, ids, slot, keep, budget, key=key, started=time.perf_counter()))
        waiting[:0] = deferred  # first in line next step
        return rows

    def _draw_rows(self, logits: Any, rows: Sequence[ActiveRow], lo: int = 0) -> dict[int, Draw]:
        """One token for each row (keyed by slot; ``logits`` row i = slot ``lo + i``): on the device (torch kernel)
        or row by row on the CPU (numpy reference)."""
        if not self.device_sampling:
            last = logits.float().cpu().numpy()
            return {r.slot: draw_params(last[r.slot - lo], r.req.params, r.req.rng) for r in rows}
        from strop.backends.torch_kernels import draw_rows, row_index

        rows = sorted(rows, key=lambda r: r.slot)
        ps = [r.req.params for r in rows]
        # One uniform per sampled row from its own rng, as the numpy kernel consumes it (none for greedy rows).
        u = [r.req.rng.random() if p.temperature > 0 else 0.0 for r, p in zip(rows, ps)]
        # Rows fed together sit in consecutive slots (``SlotKV.pack``): a slice, not a gathered copy of the logits.
        picked = logits[row_index([r.slot - lo for r in rows], logits.device)]
        d = draw_rows(picked, [p.temperature for p in ps], [p.top_k for p in ps],
                      [p.top_p for p in ps], u, want_entropy=any(p.return_entropy for p in ps),
                      base_top_ks=[p.top_k if p.base_top_k else None for p in ps])
        # One device-to-host copy for all four columns (token ids < 2**53 are exact in float64).
        cols = self.torch.stack([d.tokens.to(self.torch.float64), d.base_logprobs, d.proposal_logprobs, d.entropies]).tolist()
        return {r.slot: Draw(int(cols[0][j]), cols[1][j], cols[2][j], cols[3][j] if ps[j].return_entropy else float("nan"))
                for j, r in enumerate(rows)}

    def reset_cache(self) -> None:
        self._kv = None
        self._ids = []
        self._slot_kv = None

    def close(self) -> None:
        """Release the model and its caches, as the contract says: later calls are a ``BackendError``. A wrapped
        model (``wrap``) belongs to its caller, who keeps it; only this backend's reference goes. Idempotent."""
        self.reset_cache()
        self.model = None

    def _require_open(self) -> None:
        if self.model is None:
            raise BackendError("this hf backend is closed (close() released its model): load the model again")

