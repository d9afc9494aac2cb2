"""A transformers KV cache holding many sequences that grow, shrink and restart independently.

The hf backend's continuous batching needs what transformers' own caches do
not give: each row of the batch is a separate sequence (a slot) that can keep a
prefix of what it held, drop the rest, and take new tokens while the other rows
are mid-decode, all in one forward pass per step. Padding-based batching
(``generate`` with left padding) recomputes every prompt and waits for the
longest row; ``DynamicCache`` grows by concatenation, copying the whole cache
every step, and can only crop all rows together.

Layout: one preallocated buffer per layer, (rows, kv heads, capacity, head dim).
Every forward appends the same number of columns to every row; ``live`` marks
which columns are real tokens of which row. A row that keeps only a prefix of
its cache just unmarks the columns after it. Each step builds the attention
mask itself (4D, additive): a query sees the live columns of its row and the
earlier new tokens of its row. Column order inside the past does not matter
(RoPE was applied when the key was computed, with the token's own position), so
``compact`` may move a row's live columns to the front when unmarked columns pile up.

Exact in arithmetic; in floats a row's logits may differ from one-row decoding
by rounding (other rows change the matmul shapes), the same caveat as any
batched kernel. Only for full-attention models: a 4D mask bypasses
transformers' sliding-window masks, so the backend does not use this for
models with sliding-window layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer

from strop.backends.torch_kernels import row_index

_MIN_CAPACITY = 64


class SlotKV:
    """KV cache of ``rows`` slots in one buffer per layer, with a live-column mask per slot.

    Use: ``step(feed)`` builds the inputs of one forward pass that appends
    ``feed[slot]`` to each listed slot; run the model with them; then
    ``commit()``. ``keep(slot, n)`` drops a slot's tokens after the first ``n``.
    """

    def __init__(self, rows: int, device: Any, dtype: Any, align: int | None = None) -> None:
        self.rows = rows
        self.device = device
        self.dtype = dtype
        # Attention spans a multiple of ``align`` columns, the extra ones masked. PyTorch's memory-efficient attention
        # on CUDA (one of the kernels taking an arbitrary mask) wants the mask's last dimension a multiple of 16 and
        # otherwise pads a copy of it in every layer, every step; masked columns add nothing (their weight is exactly 0).
        # Timed on an H100 (bench/gpu_speed.py --compare-align): no difference beyond the VM's noise.
        self.align = align or (16 if torch.device(device).type == "cuda" else 1)
        self.tokens: list[list[int]] = [[] for _ in range(rows)]  # token ids each slot holds, in order
        self.cols: list[list[int]] = [[] for _ in range(rows)]  # the buffer column of each of those tokens
        self.width = 0  # columns in use
        self.capacity = 0
        self.live = np.zeros((rows, 0), dtype=bool)
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._scratch: torch.Tensor | None = None  # one row of a layer's buffer, for swaps
        # (lo, hi, k, span, valid, feed) of the step being prepared; span: the columns its attention covers
        self._pending: tuple[int, int, int, int, np.ndarray, dict[int, list[int]]] | None = None
        self._packed: _Packed | None = None  # the packed step being prepared, if it is one
        self.lo = 0  # the first row of the forward pass being prepared
        self.cache = _SlotCache(self)

    # ------------------------------------------------------------ bookkeeping
    def keep(self, slot: int, n: int) -> None:
        """Forget the tokens of ``slot`` after its first ``n``."""
        dropped = self.cols[slot][n:]
        if dropped:
            self.live[slot, dropped] = False
        del self.cols[slot][n:]
        del self.tokens[slot][n:]

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Make slot ``dst`` hold the first ``n`` tokens of slot ``src``: their keys and values copied, not recomputed.

        The copy sits in ``dst``'s row at the same buffer columns as in ``src``'s
        (each row has every column; which ones are live is per row), so it is one
        indexed copy per layer and buffer. A resampled SMC particle, or a
        request whose prompt another row has already computed, starts this way.
        """
        if not 0 <= n <= len(self.tokens[src]):
            raise ValueError(f"slot {src} holds {len(self.tokens[src])} tokens, cannot copy {n}")
        self.keep(dst, 0)
        cols = self.cols[src][:n]
        if cols and self._keys:
            index = torch.as_tensor(cols, device=self.device)
            with torch.inference_mode():
                for bufs in (self._keys, self._values):
                    for t in bufs:
                        t[dst, :, index] = t[src, :, index]
        self.live[dst, cols] = True
        self.cols[dst] = list(cols)
        self.tokens[dst] = self.tokens[src][:n]

    def pack(self, *groups: Sequence[int]) -> dict[int, int]:
        """Move the slots of ``groups`` to the front: each group to a contiguous block of indices, after the previous
        group's, in any order within its block and with as few moves as possible (a slot already inside its block
        stays); returns {old index: new index} of every moved slot.

        A forward pass covers every slot from the lowest to the highest fed
        one, so a fed slot at index 30 with 2 rows live would compute 31 rows.
        Two groups give two contiguous forward passes (the hf backend: the
        live rows, then the rows joining with several prompt tokens, which go
        last so that the live rows, already in front, need not move). Swapping
        keeps each slot's tokens (an idle slot's cache stays reusable), at the
        cost of copying two rows of the buffer.
        """
        pos = list(range(self.rows))  # pos[slot] = the index it is at now
        at = list(range(self.rows))  # at[index] = the slot there now
        start = 0
        for group in groups:
            end = start + len(group)
            members = set(group)
            holes = [i for i in range(start, end) if at[i] not in members]
            outside = sorted((s for s in group if not start <= pos[s] < end), key=lambda s: pos[s])
            for i, s in zip(holes, outside):
                j = pos[s]
                self._swap(i, j)
                other = at[i]
                at[i], at[j] = s, other
                pos[s], pos[other] = i, j
            start = end
        return {s: p for s, p in enumerate(pos) if p != s}

    def _swap(self, a: int, b: int) -> None:
        w = self.width
        with torch.inference_mode():
            for bufs in (self._keys, self._values):
                for t in bufs:
                    # Through one reused scratch buffer: a fresh clone per layer was an allocation (and page faults)
                    # per copy, a fifth of a server's time under load when rows joined often.
                    if self._scratch is None or self._scratch.shape != t.shape[1:] or self._scratch.dtype != t.dtype:
                        self._scratch = t.new_empty(t.shape[1:])  # one row: (kv heads, capacity, head dim)
                    tmp = self._scratch[:, :w]
                    tmp.copy_(t[a, :, :w])
                    t[a, :, :w].copy_(t[b, :, :w])
                    t[b, :, :w].copy_(tmp)
        self.live[[a, b]] = self.live[[b, a]]
        self.tokens[a], self.tokens[b] = self.tokens[b], self.tokens[a]
        self.cols[a], self.cols[b] = self.cols[b], self.cols[a]

    def clear(self) -> None:
        for s in range(self.rows):
            self.keep(s, 0)
        self.width = 0

    def waste(self) -> int:
        """Columns in use that hold no live token of the longest row."""
        return self.width - max((len(c) for c in self.cols), default=0)

    # ---------------------------------------------------------------- a step
    def step(self, feed: Mapping[int, Sequence[int]], pad_id: int, packed: bool = False) -> dict[str, Any]:
        """Model inputs appending ``feed[slot]`` (>= 1 token) to each slot in ``feed``.

        Every slot from the lowest to the highest fed one is part of the forward
        pass, rows ``lo..hi-1`` (a contiguous slice of the buffer is a view, so
        the layers write in place); unfed slots in that range get one masked pad
        column. New tokens are right-aligned, so column ``-1`` of each fed row is
        its last token. Returns input_ids, position_ids and the 4D attention mask
        (row ``i`` of each is slot ``lo + i``; ``lo`` is ``self.lo`` until commit).

        ``packed`` (every slot from lo to hi fed): the new tokens of all rows go
        in as one sequence, without padding, slot after slot; the cache's columns
        are the same as unpacked. Returns input_ids and position_ids of shape
        (1, tokens), ``logits_to_keep`` (each slot's last token) and
        ``strop_packed`` for ``packed_attention`` (see there), which the model
        must run as its attention function.
        """
        if self._pending is not None:
            raise RuntimeError("SlotKV.step called twice without commit")
        lo, hi = min(feed), max(feed) + 1
        self.lo = lo
        k = max(len(t) for t in feed.values())
        if self._span(k) > self.capacity and self.waste() * 4 >= self.width:
            self.compact()
        span = self._span(k)
        self._reserve(span)
        ids = np.full((hi - lo, k), pad_id, dtype=np.int64)
        pos = np.zeros((hi - lo, k), dtype=np.int64)
        valid = np.zeros((hi - lo, k), dtype=bool)
        for s, toks in feed.items():
            n = len(toks)
            ids[s - lo, k - n :] = toks
            pos[s - lo, k - n :] = np.arange(len(self.tokens[s]), len(self.tokens[s]) + n)
            valid[s - lo, k - n :] = True
        # allowed[b, i, j]: query i of row b sees past column j if it is live in row b, and new token j <= i of row b.
        past = np.broadcast_to(self.live[lo:hi, None, : self.width], (hi - lo, k, self.width))
        new = np.tril(np.ones((k, k), dtype=bool))[None] & valid[:, None, :]
        new |= np.eye(k, dtype=bool)[None]  # a pad query sees itself: no row of the mask is empty (no NaN)
        unused = np.zeros((hi - lo, k, span - self.width - k), dtype=bool)  # alignment columns: never seen
        # Host-to-device copies that do not wait for the device (the arrays are read before ``to`` returns).
        allowed = torch.from_numpy(np.concatenate([past, new, unused], axis=2)).to(self.device, non_blocking=True)
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        self._pending = (lo, hi, k, span, valid, {s: list(t) for s, t in feed.items()})
        if packed:
            return self._packed_inputs(ids, pos, valid, mask[:, None])
        ids_pos = torch.from_numpy(np.stack([ids, pos])).to(self.device, non_blocking=True)  # one copy for both
        return {"input_ids": ids_pos[0], "position_ids": ids_pos[1], "attention_mask": mask[:, None]}

    def _packed_inputs(self, ids: np.ndarray, pos: np.ndarray, valid: np.ndarray, mask: torch.Tensor) -> dict[str, Any]:
        """The packed form of a step (see ``step``): the rectangular step's valid tokens, row after row."""
        k = ids.shape[1]
        lengths = valid.sum(axis=1)
        if not lengths.all():
            raise ValueError("a packed step feeds every slot from the lowest to the highest fed one")
        ends = np.cumsum(lengths)
        starts = ends - lengths
        single = np.flatnonzero(lengths == 1).tolist()  # rows decoding one token: one batched attention call
        segments = [(int(r), int(starts[r]), int(lengths[r])) for r in np.flatnonzero(lengths > 1)]
        # The live rows sit in front, consecutive (``pack``): slices of the cache, not gathered copies of it.
        self._packed = _Packed(k, len(single), row_index(single, self.device), row_index(starts[single].tolist(), self.device),
                               segments, mask)
        flat = torch.from_numpy(np.stack([ids[valid], pos[valid]])[:, None]).to(self.device, non_blocking=True)
        return {"input_ids": flat[0], "position_ids": flat[1], "logits_to_keep": torch.from_numpy(ends - 1).to(self.device),
                "strop_packed": self._packed}

    def _span(self, k: int) -> int:
        """Columns the attention of a step appending ``k`` covers: the past, the new ones, rounded up to ``align``."""
        return -(-(self.width + k) // self.align) * self.align

    def commit(self) -> None:
        """Record the columns the forward pass just wrote."""
        assert self._pending is not None
        lo, hi, k, _, valid, feed = self._pending
        self._pending = self._packed = None
        w = self.width
        self.live[lo:hi, w : w + k] = valid
        for s, toks in feed.items():
            n = len(toks)
            self.cols[s].extend(range(w + k - n, w + k))
            self.tokens[s].extend(toks)
        self.width = w + k

    def abort(self) -> None:
        """Forget a step whose forward pass failed (its columns were never committed)."""
        self._pending = self._packed = None

    # -------------------------------------------------------------- storage
    def _reserve(self, width: int) -> None:
        if width <= self.capacity:
            return
        with torch.inference_mode():  # the buffers are inference tensors (written under the model's inference mode)
            self._grow(width)

    def _grow(self, width: int) -> None:
        cap = max(width, 2 * self.capacity, _MIN_CAPACITY)
        live = np.zeros((self.rows, cap), dtype=bool)
        live[:, : self.width] = self.live[:, : self.width]
        self.live = live
        for bufs in (self._keys, self._values):
            for i, b in enumerate(bufs):
                grown = b.new_zeros(b.shape[0], b.shape[1], cap, b.shape[3])
                grown[:, :, : self.width] = b[:, :, : self.width]
                bufs[i] = grown
        self.capacity = cap

    def compact(self) -> None:
        """Move each slot's live columns to the front of the buffer, dropping dead ones."""
        with torch.inference_mode():
            self._compact()

    def _compact(self) -> None:
        longest = max((len(c) for c in self.cols), default=0)
        idx = np.zeros((self.rows, longest), dtype=np.int64)
        live = np.zeros_like(self.live)
        for s, c in enumerate(self.cols):
            idx[s, : len(c)] = c
            live[s, : len(c)] = True
            self.cols[s] = list(range(len(c)))
        index = torch.from_numpy(idx).to(self.device)
        for bufs in (self._keys, self._values):
            for b in bufs:
                g = index[:, None, :, None].expand(b.shape[0], b.shape[1], longest, b.shape[3])
                b[:, :, :longest] = torch.gather(b[:, :, : self.width], 2, g)
        self.live = live
        self.width = longest

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A layer's new keys/values (rows lo..hi-1, heads, k, dim) into the buffer; returns its keys/values so far."""
        assert self._pending is not None, "SlotKV.step must prepare the forward pass"
        lo, hi, k, span = self._pending[:4]
        if layer == len(self._keys):
            shape = (self.rows, keys.shape[1], self.capacity, keys.shape[3])
            self._keys.append(keys.new_zeros(shape))
            self._values.append(values.new_zeros(shape))
        w = self.width
        kb, vb = self._keys[layer], self._values[layer]
        p = self._packed
        if p is None:
            kb[lo:hi, :, w : w + k] = keys
            vb[lo:hi, :, w : w + k] = values
        else:  # keys: (1, heads, tokens, dim), slot after slot; each slot's tokens end at column w + k - 1
            if p.n_single:  # kb[lo:hi] is a view: indexing it writes into the buffer
                kb[lo:hi][p.single, :, w + k - 1] = keys[0, :, p.single_at].transpose(0, 1)
                vb[lo:hi][p.single, :, w + k - 1] = values[0, :, p.single_at].transpose(0, 1)
            for r, start, n in p.segments:
                kb[lo + r, :, w + k - n : w + k] = keys[0, :, start : start + n]
                vb[lo + r, :, w + k - n : w + k] = values[0, :, start : start + n]
        return kb[lo:hi, :, :span], vb[lo:hi, :, :span]


@dataclass(frozen=True, eq=False)
class _Packed:
    """What ``packed_attention`` needs of a packed step: which query positions belong to which slot."""

    k: int  # the step's column count (its longest row)
    n_single: int  # rows decoding one token: how many, ...
    single: Any  # ... their rows in the step (a slice or an index tensor), ...
    single_at: Any  # ... and where each one's token sits in the packed sequence
    segments: list[tuple[int, int, int]]  # (row, start, length) of each row feeding several tokens
    mask: torch.Tensor  # the rectangular step's additive mask, (rows, 1, k, span)


def packed_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                     *, strop_packed: _Packed, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of a packed step (``SlotKV.step(packed=True)``), each slot's queries against its own row of the cache.

    ``query``: (1, heads, tokens, dim); ``key``/``value``: the cache rows of the step, (rows, kv heads, span, dim).
    The one-token rows run as one batch of one-query rows, each row feeding several tokens on its own: the same
    attention as the rectangular step's, with no padding. Returns (1, tokens, heads, dim) as transformers' sdpa does.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    p = strop_packed
    kwargs.pop("is_causal", None)
    out = query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])
    k, rows = p.k, p.single
    if p.n_single:
        q = query[0, :, p.single_at].transpose(0, 1).unsqueeze(2)  # (rows, heads, 1, dim)
        o, _ = sdpa_attention_forward(module, q, key[rows], value[rows], p.mask[rows, :, k - 1 : k], is_causal=False, **kwargs)
        out[0, p.single_at] = o[:, 0]
    for r, start, n in p.segments:
        q = query[:, :, start : start + n]
        o, _ = sdpa_attention_forward(module, q, key[r : r + 1], value[r : r + 1], p.mask[r : r + 1, :, k - n :],
                                      is_causal=False, **kwargs)
        out[0, start : start + n] = o[0]
    return out, None


PACKED_ATTENTION = "strop_slot_packed"
AttentionInterface.register(PACKED_ATTENTION, packed_attention)


class _SlotCache(Cache):
    """The ``Cache`` face of a ``SlotKV``: what the model's attention layers call."""

    def __init__(self, kv: SlotKV) -> None:
        super().__init__(layer_class_to_replicate=DynamicLayer)
        self.kv = kv

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kv.append(layer_idx, key_states, value_states)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.kv.width
