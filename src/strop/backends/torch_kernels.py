"""The sampling kernel for many rows at once, in torch, on the model's device.

``strop.backends.logits.draw`` (numpy) is the reference: one logits row on the
CPU. On a GPU, copying a batch of vocabulary-sized rows to the host and
sampling them one by one in numpy costs more than the forward pass (measured:
40% of a batch-32 step on an H200 with a 0.5B model, 0.48 ms a row). This
kernel does the same thing for every row at once where the logits already
are, with the same semantics:

- base log-prob: log_softmax(logits) at temperature 1, no truncation; for a
  row with a ``base_top_ks`` entry k, over the k largest logits only,
  renormalised (entropy likewise), as ``draw``'s ``base_k``;
- proposal: softmax(logits / T) restricted to the top-k, then to the top-p
  nucleus (the smallest sorted prefix whose mass reaches top_p, the crossing
  token kept), renormalised; T = 0 is argmax with proposal log-prob 0;
- one uniform per sampled row, supplied by the caller from that row's own rng
  (``rng.random()``, as ``draw`` consumes it), and the token is the inverse CDF
  at that uniform: over the vocabulary in token-id order when nothing is
  truncated (as ``draw``), over the support in descending order under top-k/top-p.

Differences from the reference, by design and tested: sums run in float64 on
the device; the support of a top-k-only proposal is walked in descending order
(numpy walks ``argpartition``'s order), so with top-k alone the same uniform can
pick a different token of the same distribution. Log-probs agree to 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RowDraws:
    """Per row: token id, base log-prob, proposal log-prob, base entropy (nan unless asked)."""

    tokens: Any  # torch.LongTensor (n,)
    base_logprobs: Any  # torch.DoubleTensor (n,)
    proposal_logprobs: Any
    entropies: Any


def row_index(rows: Sequence[int], device: Any) -> Any:
    """``rows`` as an index into a tensor's first dimension: a slice when they are consecutive and ascending (a view:
    no gathered copy, nothing sent to the device), else a tensor of them on ``device``."""
    import torch

    if len(rows) and list(rows) == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return torch.tensor(list(rows), dtype=torch.long).to(device, non_blocking=True)


def draw_rows(logits: Any, temperatures: Sequence[float], top_ks: Sequence[int | None], top_ps: Sequence[float],
              uniforms: Sequence[float], want_entropy: bool = False, base_top_ks: Sequence[int | None] | None = None) -> RowDraws:
    """Sample one token per row of ``logits`` (n, V) with per-row settings; see the module docstring.

    Long on purpose: one pass over the batch on the device, with the row groups (greedy, plain, truncated) as
    slices of one tensor; split into helpers it would copy the groups or launch more kernels per step.
    """
    import torch

    # On a GPU this runs once per decode step, and a small model's step is bound by the host launching kernels (an
    # H100 ran a 0.4B model's 32-row step in ~18 ms, almost all of it Python and launches), so the kernel keeps its
    # launches few: the exponentials are computed once and shared by the base distribution, the entropy and a
    # temperature-1 proposal; a group of consecutive rows (the whole batch, typically) is a slice, not a gathered copy; the per-row
    # settings travel to the device in one copy that does not wait for the device.
    x = logits.to(torch.float64)
    n, vocab = x.shape
    dev = x.device
    z = x - x.amax(dim=-1, keepdim=True)
    e = z.exp()
    total = e.sum(dim=-1, keepdim=True)
    base = z - total.log()
    # p log p with 0 log 0 = 0: a token with logit -inf gives 0 * -inf = nan, which nansum skips.
    ent = -(e * base).nansum(dim=-1) / total[:, 0] if want_entropy \
        else torch.full((n,), float("nan"), dtype=torch.float64, device=dev)
    tokens = torch.empty(n, dtype=torch.long, device=dev)
    prop = torch.zeros(n, dtype=torch.float64, device=dev)
    # Which rows are greedy is read from the host-side settings, not from a device tensor: a device-to-host read here
    # would stall the host until the forward pass finished, once more per step (on a GPU the host queues work ahead).
    greedy, plain, cut = [], [], []
    for r in range(n):
        if float(temperatures[r]) == 0:
            greedy.append(r)
        elif (top_ks[r] is None or top_ks[r] >= vocab) and top_ps[r] >= 1.0:
            plain.append(r)
        else:
            cut.append(r)
    # Per-row floats in one host-to-device copy: temperature, uniform, top-p.
    per_row = torch.tensor([[float(t) for t in temperatures], [float(u) for u in uniforms], [float(p) for p in top_ps]],
                           dtype=torch.float64).to(dev, non_blocking=True)
    temps, us, tps_all = per_row[0], per_row[1], per_row[2]

    if greedy:
        g = row_index(greedy, dev)
        tokens[g] = torch.argmax(x[g], dim=-1)
    if plain:
        # No truncation: the inverse CDF walks the vocabulary in token-id order, as the reference does.
        idx = row_index(plain, dev)
        if all(float(temperatures[r]) == 1.0 for r in plain):
            cdf, logq = e[idx].cumsum(dim=-1), base[idx]  # the proposal is the base distribution
        else:
            scaled = z[idx] / temps[idx, None]
            logq = scaled - torch.logsumexp(scaled, dim=-1, keepdim=True)
            cdf = torch.cumsum(scaled.exp(), dim=-1)
        pos = torch.clamp(torch.searchsorted(cdf, (us[idx] * cdf[:, -1])[:, None], right=True).squeeze(-1), max=vocab - 1)
        tokens[idx] = pos
        prop[idx] = logq.gather(1, pos[:, None]).squeeze(-1)
    if cut:
        # Top-k / top-p: the support in descending order (ties by token id), then the inverse CDF over it.
        idx = row_index(cut, dev)
        scaled = z[idx] / temps[idx, None]
        vals, order = torch.sort(scaled, dim=-1, descending=True, stable=True)
        keep = torch.tensor([min(top_ks[r], vocab) if top_ks[r] is not None else vocab for r in cut], dtype=torch.long).to(
            dev, non_blocking=True)
        ranks = torch.arange(vocab, device=dev)[None, :]
        vals = torch.where(ranks < keep[:, None], vals, torch.full_like(vals, float("-inf")))
        cum = torch.cumsum((vals - torch.logsumexp(vals, dim=-1, keepdim=True)).exp(), dim=-1)
        tps = tps_all[idx]
        nucleus = torch.searchsorted(cum, (tps - 1e-12)[:, None], right=False).squeeze(-1) + 1
        nucleus = torch.where(tps < 1.0, torch.minimum(nucleus, keep), keep)
        vals = torch.where(ranks < nucleus[:, None], vals, torch.full_like(vals, float("-inf")))
        logq = vals - torch.logsumexp(vals, dim=-1, keepdim=True)
        cdf = torch.cumsum(logq.exp(), dim=-1)
        pos = torch.minimum(torch.searchsorted(cdf, (us[idx] * cdf[:, -1])[:, None], right=True).squeeze(-1), nucleus - 1)
        tokens[idx] = order.gather(1, pos[:, None]).squeeze(-1)
        prop[idx] = logq.gather(1, pos[:, None]).squeeze(-1)
    base_lp = base.gather(1, tokens[:, None]).squeeze(-1)
    for k in sorted({k for k in base_top_ks or () if k is not None and k < vocab}):
        # Top-k target rows: renormalise over the k largest values (values, not ids: ties cannot matter).
        idx = row_index([r for r, rk in enumerate(base_top_ks or ()) if rk == k], dev)
        head = torch.topk(x[idx], k, dim=-1).values
        log_zk = torch.logsumexp(head, dim=-1)
        base_lp[idx] = x[idx].gather(1, tokens[idx, None]).squeeze(-1) - log_zk
        if want_entropy:
            lp = head - log_zk[:, None]
            ent[idx] = -(lp.exp() * torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp))).sum(-1)
    return RowDraws(tokens, base_lp, prop, ent)
