"""The hf backend's slot KV cache: rows decoded together, joining mid-decode and reusing their slot's prefix,
give what each row gives alone (on a tiny random Llama: exact up to float rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strop.backends import SamplingParams
from strop.backends.base import GenRequest
from strop.backends.slot_kv import SlotKV
from tiny_lm import build_tiny_lm

ROUNDING = 1e-4  # float32 logits of a row batched with others vs alone


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from strop.backends.hf import HFBackend

    backend = HFBackend(str(build_tiny_lm(tmp_path_factory.mktemp("tiny") / "m", seed=1, max_positions=256)),
                        device="cpu", max_batch=4)
    yield backend
    backend.close()


def _alone(backend, req: GenRequest, seed: int):
    backend.reset_cache()
    return backend.generate(req.prompt_ids, req.params, np.random.default_rng(seed))


def _same(a, b) -> None:
    assert a.token_ids == b.token_ids
    np.testing.assert_allclose(a.base_logprobs, b.base_logprobs, atol=ROUNDING)
    np.testing.assert_allclose(a.proposal_logprobs, b.proposal_logprobs, atol=ROUNDING)
    assert a.finish_reason == b.finish_reason and a.text == b.text


@pytest.mark.parametrize(("align", "packed"), [(1, True), (16, True), (1, False)])
def test_rows_joining_mid_decode_match_single_runs(tiny, align, packed, monkeypatch):
    """Nine requests of different lengths through four slots: rows finish at different steps and new ones join.
    With ``align`` 16 (the default on CUDA) every step attends over masked extra columns: nothing changes.
    Joining rows share the live rows' pass packed (the default) or take a pass of their own: the same results."""
    prompts = [tiny.tokenize(f"q{i}: {i} + {2 * i} =") for i in range(9)]
    reqs = [GenRequest(p, SamplingParams(max_tokens=3 + 4 * (i % 3), temperature=1.0, return_entropy=True),
                       np.random.default_rng(i)) for i, p in enumerate(prompts)]
    passes = []
    monkeypatch.setattr(SlotKV, "step", lambda self, feed, pad_id, packed=False, step=SlotKV.step:
                        passes.append(packed) or step(self, feed, pad_id, packed))
    monkeypatch.setattr(tiny, "packed_joins", packed)
    tiny.reset_cache()
    tiny._slot_cache(4)
    tiny._slot_kv.align = align
    batched = tiny.generate_many(reqs)
    assert [g.completion_tokens for g in batched] == [3 + 4 * (i % 3) for i in range(9)]
    assert any(passes) == packed  # rows did join mid-decode with several prompt tokens
    for i, (req, got) in enumerate(zip(reqs, batched)):
        want = _alone(tiny, req, i)
        _same(got, want)
        np.testing.assert_allclose(got.entropies, want.entropies, atol=ROUNDING)


def test_a_slot_keeps_the_shared_prefix_and_recomputes_only_the_rest(tiny):
    """Proposals resampling a suffix (as Metropolis-Hastings does) reuse their chain's slot up to the cut."""
    tiny.reset_cache()
    prompts = [tiny.tokenize(f"chain {i}: 1 2 3") for i in range(4)]
    params = SamplingParams(max_tokens=12)
    first = tiny.generate_many([GenRequest(p, params, np.random.default_rng(10 + i)) for i, p in enumerate(prompts)])
    cuts = [2, 5, 0, 9]
    again = [GenRequest(list(p) + list(g.token_ids[:c]), params, np.random.default_rng(20 + i))
             for i, (p, g, c) in enumerate(zip(prompts, first, cuts))]
    second = tiny.generate_many(list(reversed(again)))[::-1]  # order must not matter: each finds its own slot
    for p, c, g in zip(prompts, cuts, second):
        assert g.cached_prompt_tokens == len(p) + c - 1
    for i, (req, got) in enumerate(zip(again, second)):
        _same(got, _alone(tiny, req, 20 + i))


def test_compaction_keeps_every_rows_tokens(tiny):
    """Many short resamplings pile up dead columns; compacting them away changes no result."""
    tiny.reset_cache()
    params = SamplingParams(max_tokens=6)
    prompts = [tiny.tokenize(f"p{i}=") for i in range(4)]
    seeds = list(range(4))
    reqs = [GenRequest(p, params, np.random.default_rng(s)) for s, p in zip(seeds, prompts)]
    compactions = 0
    for rnd in range(12):
        before = tiny._slot_kv.width if tiny._slot_kv is not None else 0
        got = tiny.generate_many(reqs)
        kv = tiny._slot_kv
        compactions += kv.width < before
        for s, req, g in zip(seeds, reqs, got):
            _same(g, _alone_keep(tiny, req, s))
        # Next round: cut each sequence after its prompt and one token; the rest of the slot is dead.
        seeds = [100 * (rnd + 1) + i for i in range(4)]
        reqs = [GenRequest(list(p) + [g.token_ids[0]], params, np.random.default_rng(s))
                for s, p, g in zip(seeds, prompts, got)]
    assert compactions >= 1
    assert kv.width <= 2 * max(len(t) for t in kv.tokens) + 64


def _alone_keep(backend, req, seed):
    # The single-sequence path has its own cache: it does not disturb the slots.
    return backend.generate(req.prompt_ids, req.params, np.random.default_rng(seed))


def test_slot_kv_mask_and_positions():
    """The inputs of one step: right-aligned new tokens, positions continuing each row, a row sees only its own live
    columns."""
    kv = SlotKV(3, torch.device("cpu"), torch.float32)
    inp = kv.step({0: [5, 6, 7], 2: [9]}, pad_id=0)
    assert inp["input_ids"].tolist() == [[5, 6, 7], [0, 0, 0], [0, 0, 9]]
    assert inp["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0]]
    seen = (inp["attention_mask"][:, 0] == 0).tolist()
    assert seen[0] == [[True, False, False], [True, True, False], [True, True, True]]
    assert seen[2] == [[True, False, False], [False, True, False], [False, False, True]]  # pads see only themselves
    for layer in range(2):
        kv.append(layer, torch.ones(3, 1, 3, 2) * (layer + 1), torch.zeros(3, 1, 3, 2))
    kv.commit()
    assert kv.tokens == [[5, 6, 7], [], [9]] and kv.cols == [[0, 1, 2], [], [2]]
    kv.keep(0, 1)  # row 0 keeps its first token
    inp = kv.step({0: [8], 1: [4]}, pad_id=0)
    assert inp["position_ids"].tolist() == [[1], [0]]
    seen = (inp["attention_mask"][:, 0] == 0).tolist()
    assert seen == [[[True, False, False, True]], [[False, False, False, True]]]
    kv.abort()
    kv.compact()
    assert kv.cols == [[0], [], [0]] and kv.width == 1
    assert kv.live[:, :1].tolist() == [[True], [False], [True]]


def test_pack_moves_fed_slots_to_the_front_with_their_tokens_and_keys():
    kv = SlotKV(4, torch.device("cpu"), torch.float32)
    kv.step({0: [1], 1: [2], 2: [3], 3: [4]}, pad_id=0)
    kv.append(0, torch.arange(4.0).reshape(4, 1, 1, 1), torch.zeros(4, 1, 1, 1))  # slot s holds key s
    kv.commit()
    assert kv.pack([3, 1]) == {3: 0, 0: 3}  # 1 is already in front; 3 takes the free place 0
    assert kv.tokens == [[4], [2], [3], [1]] and kv._keys[0][:, 0, 0, 0].tolist() == [3.0, 1.0, 2.0, 0.0]
    moves = kv.pack([2], [0])  # two blocks: slot 2 to index 0, then slot 0 to index 1
    assert [kv.tokens[moves.get(s, s)] for s in range(4)] == [[4], [2], [3], [1]]
    assert kv.tokens[:2] == [[3], [4]] and kv._keys[0][:2, 0, 0, 0].tolist() == [2.0, 3.0]
    assert kv.live[:, :1].all()
    # Live rows already in front stay where they are; only the joining row moves, into the index after them.
    moves = kv.pack([1, 0], [3])
    assert moves == {3: 2, 2: 3} and kv.tokens == [[3], [4], [1], [2]]
    assert kv._keys[0][:, 0, 0, 0].tolist() == [2.0, 3.0, 0.0, 1.0]


def test_aligned_span_masks_the_extra_columns():
    """With ``align`` 4, a step's attention covers the past and new columns rounded up to 4; the extra ones are
    masked for every query, and the keys handed to attention have the same width as the mask."""
    kv = SlotKV(2, torch.device("cpu"), torch.float32, align=4)
    inp = kv.step({0: [5, 6], 1: [7]}, pad_id=0)
    mask = inp["attention_mask"][:, 0]
    assert mask.shape == (2, 2, 4)
    assert ((mask == 0).tolist() == [[[True, False, False, False], [True, True, False, False]],
                                     [[True, False, False, False], [False, True, False, False]]])
    keys, _ = kv.append(0, torch.ones(2, 1, 2, 3), torch.zeros(2, 1, 2, 3))
    assert keys.shape == (2, 1, 4, 3)
    kv.commit()
    assert kv.width == 2 and kv.cols == [[0, 1], [1]]
    inp = kv.step({1: [8]}, pad_id=0)  # 2 past + 1 new = 3 columns, rounded up to 4
    assert (inp["attention_mask"][:, 0] == 0).tolist() == [[[False, True, True, False]]]


def test_a_prompt_another_slot_holds_is_copied_not_recomputed(tiny, monkeypatch):
    """Rows with one prompt (SMC's particles, best-of-n's samples) compute it once: the first row's pass, then a
    copy into each other slot; and a row continuing another's tokens (a resampled particle) copies them.
    The results are those of each row alone, and of the same rows with copying turned off."""
    prompt = tiny.tokenize("particles share this prompt: 1 2 3 4 5 6 7 8 9 10 11 12")
    params = SamplingParams(max_tokens=14)
    reqs = lambda ids, seed: [GenRequest(list(ids), params, np.random.default_rng(seed + i)) for i in range(4)]  # noqa: E731
    tiny.reset_cache()
    first = tiny.generate_many(reqs(prompt, 30))
    assert sorted(g.cached_prompt_tokens for g in first) == [0] + [len(prompt) - 1] * 3
    # every particle continues from the first one's tokens (all resampled to one ancestor): copied from its slot
    assert first[0].completion_tokens > 12
    cont = list(prompt) + list(first[0].token_ids[:12])  # more than _MIN_COPY tokens past what the other slots share
    second = tiny.generate_many(reqs(cont, 40))
    assert [g.cached_prompt_tokens for g in second] == [len(cont) - 1] * 4, (len(cont), first[0].completion_tokens)
    monkeypatch.setattr(tiny, "copy_prefixes", False)
    tiny.reset_cache()
    plain = tiny.generate_many(reqs(prompt, 30))
    assert sorted(g.cached_prompt_tokens for g in plain) == [0, 0, 0, 0]
    for got, want in zip(first, plain):
        _same(got, want)
    for i, (req, got) in enumerate(zip(reqs(cont, 40), second)):
        _same(got, _alone(tiny, req, 40 + i))
