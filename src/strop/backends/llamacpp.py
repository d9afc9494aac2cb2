"""llama.cpp backend (the default): llama-cpp-python on CPU, with exact log-probs, many sequences at once.

strop drives llama.cpp's decode step itself instead of the high-level
``Llama.generate``/``create_completion``: those need ``logits_all=True`` for
log-probs, which copies the full vocabulary row into a Python-side buffer for
every token (about 5x slower here), and they decode one sequence at a time.
Here one llama.cpp context holds ``n_seq`` sequences (slots); ``generate_many``
decodes every row's next token in one ``llama_decode`` call (one batch of
several sequence ids), reads only the logits rows it needs as zero-copy views,
and the shared numpy kernel draws each row's token from that row's own rng.

Each slot keeps the tokens it last held, so a request whose prompt shares a
prefix with a slot decodes only the new tokens: resampling a suffix (MCMC)
or continuing a turn (RC) costs only what changed. Rows of one call that share
a long prefix (n samples of one prompt) compute it once and copy it between
slots (``llama_memory_seq_cp``).

KV layout (``kv_layout``). ``shared`` (the default): the slots share one pool
of cells (llama.cpp's unified cache), so short sequences leave room for long
ones and copying a prefix costs no memory; but every row of a step attends
over the whole range of used cells, every sequence's, masked. ``per-sequence``:
each slot has its own stream of a full context (n_seq x n_ctx cells, 4x the
default pool's memory), and each row attends only to its own cells (on the
power bench its batched run decoded the same tokens as one at a time). Measured on the embedded model (2-core CPU,
docs/engine.md): per-sequence is 1.46x the tokens/s on 16 rows of up to 768
tokens (bench/kv_layout_speed.py), but 0.83x on the power bench's short chains
(bench/engine_speed.py --kv-layouts), where rows in non-consecutive slots cost
llama.cpp extra passes over the weights.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
)
from strop.backends.llamacpp_kv import KV_FILL, SlotCache
from strop.backends.logits import score_rows
from strop.backends.native import NativeCheck, check_build, quiet_stderr
from strop.backends.vocab import GGUFVocab
from strop.errors import BackendError, ConfigError, ModelLoadError
from strop.models import check_gguf

# Context per sequence when the user gives none: enough for every strop method
# on a laptop without reserving the model's full trained context in RAM.
DEFAULT_N_CTX = 4096
# Sequences decoded together. Measured on the embedded model (2-core CPU, bench/llamacpp_speed.py): tokens/s
# grows up to ~8 rows and holds at 16; the spare rows keep the batch full while rows finish at different times.
DEFAULT_N_SEQ = 16
# KV cells shared by all slots in the shared layout (the embedded model: ~23 KB a cell, so ~380 MB;
# per-sequence reserves n_seq x n_ctx cells: 16 x 4096 x 23 KB = 1.5 GB).
DEFAULT_KV_CELLS = 16384
KV_LAYOUTS = ("shared", "per-sequence")
# Copy a prefix from another row of the same call only when it saves this many tokens. (Between per-sequence
# streams llama.cpp copies a whole stream, a full context: 15 ms on the embedded model, the price of ~4 prompt tokens.)
_MIN_COPY = 16


def default_threads() -> int:
    """The CPUs this process may run on (llama-cpp-python's own default is half the cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def smoke_argv(model: str | None = None) -> list[str]:
    """The command of the build check's child (``strop.backends.native.check_build``): decode a few tokens of ``model``
    (default: the embedded one) through this backend in a fresh process, so a build that crashes on this CPU kills
    the child, not the caller."""
    if model is None:
        from strop.models import embedded_model_path

        model = str(embedded_model_path())
    return [sys.executable, "-m", "strop.backends.llamacpp_smoke", model]  # a child process, not an import


def check_native_build(*, force: bool = False) -> NativeCheck:
    """The remembered verdict on the installed llama.cpp build (``native.check_build`` with this backend's child)."""
    return check_build(smoke_argv(), force=force)


class LlamaCppBackend(SlotCache, Backend):
    """A GGUF model run by llama.cpp, several sequences per decode step.

    Args:
        model: path to a GGUF file.
        n_ctx: context window of one sequence (default: the model's trained
            context, at most 4096).
        n_threads: CPU threads (default: every CPU this process may use).
        n_batch: prompt tokens decoded per llama.cpp call.
        n_seq: sequences decoded together (``max_batch``; 1 turns batching off).
        kv_layout: ``shared`` (default: one pool of ``kv_cells`` cells for all
            slots) or ``per-sequence`` (each slot its own stream of n_ctx cells).
        kv_cells: KV cache cells of the shared pool (default 16384, at least n_ctx).
        native_check: before the first load of this llama.cpp build, decode a
            few tokens in a child process (strop.backends.native), so a build
            that crashes on this CPU is a clear ModelLoadError, not a dead process.
    """

    name = "llamacpp"
    capabilities = frozenset({LOGPROBS, ENTROPY, SCORE, PREFIX_CACHE, EXACT_LOGPROBS, TOPK_BASE})
    batches = True

    def __init__(self, model: str, *, n_ctx: int | None = None, n_threads: int | None = None, n_batch: int = 512,
                 n_seq: int = DEFAULT_N_SEQ, kv_layout: str = "shared", kv_cells: int | None = None,
                 native_check: bool = True) -> None:
        path = Path(model)
        if path.is_dir():
            raise ModelLoadError(f"the llamacpp backend needs a GGUF file, and {model} is a folder; use --backend hf for Hugging Face model folders")
        if not model.lower().endswith(".gguf") and not path.exists():
            raise ModelLoadError(f"model file not found: {model} (the llamacpp backend loads GGUF files; use --backend hf for hub ids)")
        check_gguf(path)
        try:
            import llama_cpp
        except ImportError as e:
            raise ModelLoadError("the llamacpp backend needs llama-cpp-python: pip install llama-cpp-python") from e
        if n_ctx is not None and n_ctx < 16:
            raise ConfigError(f"n_ctx must be >= 16, got {n_ctx}")
        for name, v in (("n_threads", n_threads), ("n_seq", n_seq), ("n_batch", n_batch), ("kv_cells", kv_cells)):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if kv_layout not in KV_LAYOUTS:
            raise ConfigError(f"kv_layout must be one of {', '.join(KV_LAYOUTS)}, got {kv_layout!r}")
        if native_check:
            verdict = check_native_build()
            if not verdict.ok:
                raise ModelLoadError(verdict.message)
        self._lib = lib = llama_cpp
        self.n_threads = n_threads or default_threads()
        try:
            with quiet_stderr():
                # The Llama object loads the weights and the vocabulary; its own small
                # context is unused: strop decodes in the multi-sequence context below.
                self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, logits_all=False, verbose=False,
                                            n_threads=self.n_threads)
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelLoadError(f"llama.cpp could not load {path}: {e} (is the file a complete GGUF model?)") from e
        llm = self._llm
        self.model_id = str(path)
        self.context_length = min(n_ctx or DEFAULT_N_CTX, llm._model.n_ctx_train() or DEFAULT_N_CTX)
        self.n_vocab = llm.n_vocab()
        self.max_batch = n_seq
        self.kv_layout = kv_layout
        if kv_layout == "per-sequence":
            self.kv_cells = n_seq * self.context_length
        else:
            self.kv_cells = max(kv_cells or DEFAULT_KV_CELLS, self.context_length)
        self.n_batch = max(1, min(n_batch, self.kv_cells))
        self.vocab = GGUFVocab(llm)
        self.chat_template = self.vocab.chat_template
        self.eos_token_ids = self.vocab.eos_token_ids
        self.bos_token = self.vocab.bos_token
        self.eos_token = self.vocab.eos_token

        params = lib.llama_context_default_params()
        params.n_ctx = self.kv_cells
        # Per-sequence streams: room for one padding token per slot beside n_batch tokens (see _stream_order).
        pad_room = n_seq if kv_layout == "per-sequence" else 0
        params.n_batch = params.n_ubatch = self.n_batch + pad_room
        params.n_seq_max = n_seq
        # shared: one pool of cells, a long sequence may use what short ones leave; per-sequence: one stream a slot.
        params.kv_unified = kv_layout == "shared"
        params.n_threads = params.n_threads_batch = self.n_threads
        params.no_perf = True
        with quiet_stderr():
            ctx = lib.llama_init_from_model(llm._model.model, params)
        if not ctx:
            self.close()
            raise ModelLoadError(f"llama.cpp could not create a context of {self.kv_cells} cells for {n_seq} sequences "
                                 f"({kv_layout} layout); lower n_seq or n_ctx, or use kv_layout='shared' with fewer kv_cells")
        self._ctx = ctx
        self._mem = lib.llama_get_memory(ctx)
        self._batch_cap = max(self.n_batch, n_seq) + pad_room
        self._batch = lib.llama_batch_init(self._batch_cap, 0, 1)
        self._slots: list[list[int]] = [[] for _ in range(n_seq)]  # tokens each slot's cache holds
        self._last_used = [0] * n_seq
        self._clock = 0

    # ----------------------------------------------------------- tokenizer
    def tokenize(self, text: str) -> list[int]:
        return self.vocab.tokenize(text)

    def tokenize_text(self, text: str) -> list[int]:
        return self.vocab.tokenize_text(text)

    def control_texts(self) -> tuple[str, ...]:
        return self.vocab.control_texts()

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.vocab.detokenize(ids)

    # ------------------------------------------------------- the llama.cpp calls
    def _fill(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """Load (token, position, slot, want logits) items into the batch."""
        b = self._batch
        for i, (tok, pos, seq, want) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want
        b.n_tokens = len(items)

    def _run(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        self._fill(items)
        rc = self._lib.llama_decode(self._ctx, self._batch)
        if rc != 0:
            self.reset_cache()  # the cache state is unknown now: forget it
            hint = " (no room left in the KV cache; lower n_seq or raise kv_cells)" if rc == 1 else ""
            raise BackendError(f"llama.cpp decode failed with status {rc}{hint}")

    def _row_logits(self, i: int) -> np.ndarray:
        """Logits of batch item ``i``, a view valid until the next decode."""
        return np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self._ctx, i), shape=(self.n_vocab,))

    def _prefill(self, work: Sequence[tuple[int, list[int], int, set[int]]],
                 steps: Sequence[tuple[int, int]] = ()) -> dict[tuple[Any, int], np.ndarray]:
        """Append tokens to slots, in as few ``llama_decode`` calls as ``n_batch`` allows.

        ``work``: (slot, tokens, first position, relative positions whose logits
        are wanted): prompts of new rows. ``steps``: (slot, token) of live rows,
        one token each, decoded in the same calls (continuous batching mixes a
        new row's prompt with the others' next tokens). Returns copies of the
        wanted logits keyed by (slot, relative position) and ("step", slot).
        """
        items: list[tuple[int, int, int, bool]] = []
        keys: list[tuple[Any, int] | None] = []
        out: dict[tuple[Any, int], np.ndarray] = {}

        def flush() -> None:
            if not items:
                return
            order, pads = self._stream_order(items)
            run = [items[i] for i in order] + pads
            self._run(run)
            for pos, i in enumerate(order):
                if keys[i] is not None:
                    out[keys[i]] = self._row_logits(pos).copy()
            for _, p, seq, _ in pads:
                self._lib.llama_memory_seq_rm(self._mem, seq, p, -1)
            items.clear()
            keys.clear()

        def add(item: tuple[int, int, int, bool], key: tuple[Any, int] | None) -> None:
            items.append(item)
            keys.append(key)
            if len(items) == self.n_batch:
                flush()

        for slot, toks, start, wanted in work:
            for j, tok in enumerate(toks):
                add((tok, start + j, slot, j in wanted), (slot, j) if j in wanted else None)
            self._slots[slot].extend(toks)
        for slot, tok in steps:
            add((tok, len(self._slots[slot]), slot, True), ("step", slot))
            self._slots[slot].append(tok)
        flush()
        return out

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        out = [int(t) for t in ids]
        bad = [t for t in out if not 0 <= t < self.n_vocab]
        if bad:
            raise ConfigError(f"token ids out of range [0, {self.n_vocab}): {bad[:5]}")
        return out

    # ------------------------------------------------------------- sampling
    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator, *,
                 on_token: OnToken | None = None) -> Generation:
        return self.generate_many([GenRequest(prompt_ids, params, rng, on_token)])[0]

    def generate_many(self, requests: Sequence[GenRequest]) -> list[Generation]:
        return self._generate_many_streamed(requests)

    def generate_stream(self, first: Sequence[tuple[Any, GenRequest]], more: Callable[[int], Sequence[tuple[Any, GenRequest]]],
                        done: Callable[[Any, Generation], None], *, max_rows: int | None = None) -> None:
        """Continuous decoding in one context: each step decodes every live row's next token in one ``llama_decode``;
        a finished row's slot takes a new row (its prompt prefilled) before the next step."""
        limit = max(1, min(max_rows or self.max_batch, self.max_batch))
        waiting: list[tuple[Any, GenRequest]] = list(first)
        active, work = self._admit(waiting, [], limit)
        self._take_logits(active, self._prefill(work))
        while active:
            still = self._advance(active, lambda r: draw_params(r.logits, r.req.params, r.req.rng), done)
            steps = [(r.slot, r.trace.tokens[-1]) for r in still]
            free = limit - len(still) - len(waiting)
            if free > 0:
                waiting += list(more(free))
            # New rows join now: their prompts go into the same llama_decode calls as the live rows' next tokens.
            new, work = self._admit(waiting, still, limit) if waiting and len(still) < limit else ([], [])
            got = self._prefill(work, steps)
            for r in still:
                r.logits = got[("step", r.slot)]
            self._take_logits(new, got)
            active = still + new
        if waiting:
            raise BackendError("llama.cpp: a request does not fit the KV cache even alone; raise kv_cells")

    @staticmethod
    def _take_logits(rows: list[ActiveRow], got: dict[tuple[Any, int], np.ndarray]) -> None:
        for r in rows:
            if r.logits is None:
                r.logits = got[(r.slot, len(r.ids) - r.keep - 1)]

    def _admit(self, waiting: list[tuple[Any, GenRequest]], active: list[ActiveRow],
               limit: int) -> tuple[list[ActiveRow], list[tuple[int, list[int], int, set[int]]]]:
        """Start rows from ``waiting`` (removed from it) in free slots while they fit.

        Returns the rows and the prompt tokens still to decode (``_prefill`` work);
        rows copying a prefix from another new row get it copied here.
        """
        busy = {r.slot for r in active}
        room = self.kv_cells * KV_FILL - sum(len(self._slots[r.slot]) + r.budget - len(r.trace.tokens) for r in active)
        rows: list[ActiveRow] = []
        while waiting and len(active) + len(rows) < limit:
            key, req = waiting[0]
            ids = self._check_ids(req.prompt_ids)
            self.check_fits(len(ids))
            budget = min(req.params.max_tokens, self.context_length - len(ids))
            if (rows or active) and self.kv_layout == "shared":
                if len(ids) + budget > room:
                    break  # wait for rows to finish and free their cells
            waiting.pop(0)
            room -= len(ids) + budget
            if not rows:
                self._clock += 1
            # Never reuse the prompt's last token: its logits are needed.
            slot, keep = self._pick_slot(ids, len(ids) - 1, busy)
            busy.add(slot)
            rows.append(ActiveRow(req, ids, slot, keep, budget, key=key, started=time.perf_counter()))
        if not rows:
            return rows, []
        # Free the cells of idle slots when the live rows need the room.
        self._make_room({r.slot for r in active} | {r.slot for r in rows},
                        sum(len(r.ids) + r.budget for r in rows) + sum(len(self._slots[r.slot]) + r.budget for r in active))
        # Rows sharing a long prefix with an earlier row of this admission copy it instead of computing it.
        for j, row in enumerate(rows):
            for i in range(j):
                lead = rows[i]
                if lead.copy_from is not None:
                    continue
                c = min(common_prefix_len(lead.ids, row.ids), len(row.ids) - 1)
                if c >= row.keep + _MIN_COPY:
                    row.copy_from, row.keep = i, c
                    break
        for row in rows:
            if row.copy_from is None:
                self._forget(row.slot, row.keep)
        leaders = [r for r in rows if r.copy_from is None]
        work = [(r.slot, r.ids[r.keep:], r.keep, {len(r.ids) - r.keep - 1}) for r in leaders]
        followers = [r for r in rows if r.copy_from is not None]
        if followers:  # the leaders' prompts must be in the cache before they are copied
            self._take_logits(leaders, self._prefill(work))
            for r in followers:
                self._copy_prefix(rows[r.copy_from].slot, r.slot, r.keep)
                self._slots[r.slot] = r.ids[: r.keep]
            work = [(r.slot, r.ids[r.keep:], r.keep, {len(r.ids) - r.keep - 1}) for r in followers]
        return rows, work

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        if not prompt_ids:
            raise ConfigError("score needs a non-empty prompt (the first token has no prediction)")
        ids = self._check_ids(list(prompt_ids) + list(continuation_ids))
        self.check_fits(len(ids), 0)
        if not continuation_ids:
            return Scored(np.zeros(0), np.zeros(0) if entropies else None)
        self._clock += 1
        slot, cached = self._pick_slot(ids, len(prompt_ids) - 1, set())
        self._make_room({slot}, len(ids) + len(self._slots[slot]))
        self._forget(slot, cached)
        first = len(prompt_ids) - 1 - cached  # relative position r predicts ids[cached + r + 1]
        wanted = set(range(first, first + len(continuation_ids)))
        got = self._prefill([(slot, ids[cached:], cached, wanted)])
        logits = np.stack([got[(slot, r)] for r in sorted(wanted)])
        lp, ent = score_rows(logits, np.asarray(continuation_ids), entropies)
        return Scored(lp, ent, cached)

    @property
    def llama(self):
        """The underlying ``llama_cpp.Llama`` (its weights and vocabulary; strop decodes in its own context)."""
        return self._llm

    def reset_cache(self) -> None:
        if getattr(self, "_mem", None) is not None:
            self._lib.llama_memory_clear(self._mem, True)
            self._slots = [[] for _ in self._slots]

    def close(self) -> None:
        batch = getattr(self, "_batch", None)
        if batch is not None:
            self._lib.llama_batch_free(batch)
            self._batch = None
        ctx = getattr(self, "_ctx", None)
        if ctx is not None:
            self._lib.llama_free(ctx)
            self._ctx = self._mem = None
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None  # type: ignore[assignment]
