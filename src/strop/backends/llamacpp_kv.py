"""The llamacpp backend's sequence slots in llama.cpp's KV cache: which slot a prompt takes, what it reuses,
prefix copies between slots, the order of a batch's rows, and room in the shared pool.

A mixin of ``LlamaCppBackend`` (its state: ``_lib``, ``_mem``, ``_slots``, ``_last_used``, ``_clock``,
``kv_layout``, ``kv_cells``, ``context_length``); kept apart from the decode loop it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strop.backends.base import pick_slot

# A row joins a batch only while the rows' tokens fit in this share of the cells:
# the rest is headroom, since llama.cpp may not find room in a fragmented cache.
KV_FILL = 0.5


class SlotCache:
    """Slot bookkeeping over llama.cpp's memory API (see the module docstring)."""

    _lib: Any
    _mem: Any
    _slots: list[list[int]]
    _last_used: list[int]
    _clock: int
    kv_layout: str
    kv_cells: int
    context_length: int

    def _forget(self, slot: int, keep: int) -> None:
        self._lib.llama_memory_seq_rm(self._mem, slot, keep, -1)
        del self._slots[slot][keep:]

    def _copy_prefix(self, src: int, dst: int, keep: int) -> None:
        """Make slot ``dst`` hold the first ``keep`` tokens of slot ``src``."""
        self._forget(dst, 0)
        if self.kv_layout == "shared":
            self._lib.llama_memory_seq_cp(self._mem, src, dst, 0, keep)
        else:  # llama.cpp copies only whole streams between streams (a partial copy aborts the process)
            self._lib.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
            self._lib.llama_memory_seq_rm(self._mem, dst, keep, -1)

    def _stream_order(self, items: Sequence[tuple[int, int, int, bool]]) -> tuple[list[int], list[tuple[int, int, int, bool]]]:
        """The order to put ``items`` in a batch, and padding items for idle slots.

        Per-sequence streams: llama.cpp cuts a batch into sub-batches of consecutive sequence ids, in batch order,
        with as many tokens from each, and each sub-batch is a pass over the weights: rows in slots 2, 3 and 5
        run as two passes. So items go in slot order, and an idle slot between two live ones gets one padding
        token (no logits; removed after the decode) when that is cheaper than a second pass: measured on the
        embedded model, a pass costs about as much as one row more, so only one-slot gaps are padded.
        Shared pool: as given, no padding.
        """
        if self.kv_layout == "shared":
            return list(range(len(items))), []
        order = sorted(range(len(items)), key=lambda i: (items[i][2], items[i][1]))
        live = sorted({it[2] for it in items})
        gaps = [a + 1 for a, b in zip(live, live[1:]) if b - a == 2]  # exactly one idle slot between two live ones
        ends = {s: self._lib.llama_memory_seq_pos_max(self._mem, s) + 1 for s in gaps}
        # A slot whose stream is full takes no padding (llama.cpp would find no cell): that gap costs a pass.
        return order, [(0, ends[s], s, False) for s in gaps if ends[s] < self.context_length]

    def _pick_slot(self, ids: list[int], limit: int, busy: set[int]) -> tuple[int, int]:
        """The slot not in ``busy`` whose cache shares the longest prefix with ``ids`` (least recently used on ties),
        and how many of its tokens can be reused (at most ``limit``)."""
        slot, reuse = pick_slot(self._slots, self._last_used, ids, limit, busy)
        self._last_used[slot] = self._clock
        return slot, reuse

    def _make_room(self, live: set[int], need: int) -> None:
        """Drop the caches of slots not in ``live`` when they and ``need`` live tokens would pass the fill limit."""
        if self.kv_layout == "per-sequence":
            return  # every slot has its own full context
        idle = [s for s in range(len(self._slots)) if s not in live]
        if need + sum(len(self._slots[s]) for s in idle) > self.kv_cells * KV_FILL:
            for s in idle:
                self._forget(s, 0)
