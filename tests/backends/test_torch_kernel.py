"""The torch sampling kernel against the numpy reference (CPU): same log-probs, same tokens for the same uniforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strop.backends.logits import draw
from strop.backends.torch_kernels import draw_rows

V = 2000


class Replay:
    """An rng stand-in that hands ``draw`` a given uniform."""

    def __init__(self, u: float) -> None:
        self.u = u

    def random(self) -> float:
        return self.u


# The kernel's home is the model's device: on a machine with a GPU the same checks run there too.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, 1.0), (0.25, None, 1.0), (0.0, None, 1.0), (0.7, None, 0.9),
                                                     (1.3, None, 0.5), (0.8, 50, 0.95)])
def test_torch_rows_match_the_numpy_kernel(temperature, top_k, top_p, device):
    rng = np.random.default_rng(0)
    n = 32
    logits = rng.normal(scale=3.0, size=(n, V)).astype(np.float32)
    logits[:, :5] += 6.0  # a peaked head, as language models have
    uniforms = rng.random(n)
    got = draw_rows(torch.from_numpy(logits).to(device), [temperature] * n, [top_k] * n, [top_p] * n, uniforms.tolist(), want_entropy=True)
    for i in range(n):
        ref = draw(logits[i], temperature=temperature, top_k=top_k, top_p=top_p, rng=Replay(uniforms[i]), want_entropy=True)
        assert int(got.tokens[i]) == ref.token, (i, int(got.tokens[i]), ref.token)
        assert abs(float(got.base_logprobs[i]) - ref.base_logprob) < 1e-5
        assert abs(float(got.proposal_logprobs[i]) - ref.proposal_logprob) < 1e-5
        assert abs(float(got.entropies[i]) - ref.entropy) < 1e-5


def test_mixed_settings_per_row_and_top_k_alone():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(4, V)).astype(np.float32)
    u = rng.random(4).tolist()
    got = draw_rows(torch.from_numpy(logits), [0.0, 1.0, 0.5, 1.0], [None, None, None, 10], [1.0, 1.0, 0.8, 1.0], u)
    assert int(got.tokens[0]) == int(np.argmax(logits[0])) and float(got.proposal_logprobs[0]) == 0.0
    for i, (t, k, p) in enumerate([(1.0, None, 1.0), (0.5, None, 0.8)], start=1):
        ref = draw(logits[i], temperature=t, top_k=k, top_p=p, rng=Replay(u[i]), want_entropy=False)
        assert int(got.tokens[i]) == ref.token
    # top-k alone: the token is one of the k likeliest, with the reference's proposal log-prob for that token.
    top10 = set(np.argsort(-logits[3])[:10].tolist())
    assert int(got.tokens[3]) in top10
    lp = logits[3][list(top10)].astype(np.float64)
    logq = lp - (lp.max() + np.log(np.exp(lp - lp.max()).sum()))
    assert abs(float(got.proposal_logprobs[3]) - logq[list(top10).index(int(got.tokens[3]))]) < 1e-5


@pytest.mark.slow
def test_hf_batched_rows_sampled_on_the_device_path_equal_the_numpy_path():
    from strop.backends import SamplingParams, load_backend
    from strop.backends.base import GenRequest

    ref = load_backend("hf", device_sampling=False)
    dev = load_backend("hf", device_sampling=True)
    prompts = [ref.chat_prompt(q) for q in ("What is 2 + 2?", "Say hi.", "Name a colour.")]
    params = SamplingParams(max_tokens=12, temperature=0.8, return_entropy=True)

    def run(backend):
        return backend.generate_many([GenRequest(p, params, np.random.default_rng(i)) for i, p in enumerate(prompts)])

    for a, b in zip(run(ref), run(dev)):
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.base_logprobs, b.base_logprobs, atol=1e-5)
        np.testing.assert_allclose(a.proposal_logprobs, b.proposal_logprobs, atol=1e-5)
        np.testing.assert_allclose(a.entropies, b.entropies, atol=1e-4)


@pytest.mark.parametrize("every_row", [False, True])
@pytest.mark.parametrize("temperature,top_p", [(0.25, 1.0), (1.0, 1.0), (0.0, 1.0), (0.8, 0.9)])
def test_top_k_base_rows_match_the_numpy_kernel(temperature, top_p, every_row):
    # Rows asking for the top-k target (base_top_ks) next to rows that do not, in one call. Under top-k alone the
    # two kernels may pick different tokens for one uniform (module docstring), so log-probs are checked for the
    # token the torch kernel picked: by hand (log p over the k largest logits, renormalised) and, for entropies
    # (which do not depend on the token), against the numpy kernel.
    rng = np.random.default_rng(2)
    n = 12
    logits = rng.normal(scale=3.0, size=(n, V)).astype(np.float32)
    logits[:, :5] += 6.0
    uniforms = rng.random(n)
    # Mixed: two k's and rows without the target; every row: one k for the whole batch (as one power run asks).
    ks = [50] * n if every_row else [50 if i % 3 else 7 for i in range(n)]
    base_ks = list(ks) if every_row else [k if i % 4 else None for i, k in enumerate(ks)]
    got = draw_rows(torch.from_numpy(logits), [temperature] * n, ks, [top_p] * n, uniforms.tolist(), want_entropy=True,
                    base_top_ks=base_ks)
    for i in range(n):
        row = logits[i].astype(np.float64)
        head = row if base_ks[i] is None else np.sort(row)[-base_ks[i]:]
        log_z = head.max() + math.log(np.exp(head - head.max()).sum())
        tok = int(got.tokens[i])
        assert abs(float(got.base_logprobs[i]) - (row[tok] - log_z)) < 1e-5
        ref = draw(logits[i], temperature=temperature, top_k=ks[i], top_p=top_p, rng=Replay(uniforms[i]), want_entropy=True,
                   base_k=base_ks[i])
        assert abs(float(got.entropies[i]) - ref.entropy) < 1e-5
        if base_ks[i] is not None:
            assert abs(ref.base_logprob - (row[ref.token] - log_z)) < 1e-5
