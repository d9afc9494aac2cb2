"""Power sampling: exact kernels, the exact chain, and sampled chains against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import branching_toy, empirical, tv_distance
from strop.backends import SamplingParams
from strop.backends.toy_models import stylized_reasoning
from strop.engine import run_steps
from strop.errors import CapabilityError, ConfigError
from strop.methods.power import PowerConfig, cut_log_probs, entropy_cut_weights, log_acceptance, power_sample_chain
from strop.methods.power.exact import block_laws, exact_chain, power_target, tv
from strop.methods.power.kernels import mh_accepts
from strop.methods.power.sampler import Chain, ChainStats, mh_step

# ----------------------------------------------------------------- kernels


def test_log_acceptance_hand_computed():
    # alpha=2: 2*(-1.0 - -3.0) + (-2.5 - -0.5) + (log(1/3) - log(1/5)) = 4 - 2 + log(5/3)
    got = log_acceptance(2.0, base_cur=-3.0, base_new=-1.0, prop_cur=-2.5, prop_new=-0.5,
                         log_cut_cur=math.log(1 / 5), log_cut_new=math.log(1 / 3))
    assert got == pytest.approx(2.0 + math.log(5 / 3), abs=1e-12)


def test_uniform_cut_is_one_over_length():
    np.testing.assert_allclose(np.exp(cut_log_probs(4, None, "uniform", 4.0)), [0.25] * 4)


def test_entropy_cut_hand_values_and_uniform_fallback():
    h = np.array([0.5, 0.2, 1.0, 1.5])  # jumps from H_{-1}=0: 0.5, 0(neg), 0.8, 0.5
    np.testing.assert_allclose(entropy_cut_weights(h, 2.0), [0.25, 0.0, 0.64, 0.25])
    np.testing.assert_allclose(np.exp(cut_log_probs(4, h, "entropy", 2.0)), np.array([0.25, 0.0, 0.64, 0.25]) / 1.14)
    np.testing.assert_allclose(np.exp(cut_log_probs(3, np.zeros(3), "entropy", 4.0)), [1 / 3] * 3)


def test_mh_accepts_certain_and_impossible_moves():
    rng = np.random.default_rng(0)
    assert mh_accepts(0.0, rng) and mh_accepts(3.0, rng)
    assert not mh_accepts(-math.inf, rng) and not mh_accepts(math.nan, rng)
    rate = np.mean([mh_accepts(math.log(0.3), rng) for _ in range(20000)])
    assert abs(rate - 0.3) < 4.5 * math.sqrt(0.3 * 0.7 / 20000)


def test_config_validation_names_the_field():
    for kwargs, name in [({"alpha": 0}, "alpha"), ({"block_size": 0}, "block_size"), ({"cut": "middle"}, "cut"),
                         ({"beta": -1}, "beta"), ({"mcmc_steps": -1}, "mcmc_steps"), ({"proposal_temperature": 0}, "proposal_temperature")]:
        with pytest.raises(ConfigError, match=name):
            PowerConfig(**kwargs)
    assert PowerConfig(alpha=4).temperature == 0.25 and PowerConfig(proposal_temperature=0.5).temperature == 0.5


# ---------------------------------------------------------- the exact chain


@pytest.mark.parametrize("cut", ["uniform", "entropy"])
def test_power_distribution_is_stationary_with_early_and_late_eos(cut):
    # branching_toy completions end at EOS after 1..4 tokens or hit the cap: proposals
    # routinely end earlier or later than the current sequence.
    toy = branching_toy()
    chain = exact_chain(toy, toy.tokenize("q"), 4, PowerConfig(alpha=3.0, cut=cut))
    np.testing.assert_allclose(chain.P.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(chain.target @ chain.P, chain.target, atol=1e-12)
    assert len({len(s) for s in chain.states}) > 2


def test_dropping_the_cut_ratio_breaks_stationarity():
    """The reference code's error: treat 1/len(y) as cancelling when lengths differ."""
    toy = branching_toy()
    prompt = toy.tokenize("q")
    good = exact_chain(toy, prompt, 4, PowerConfig(alpha=3.0))
    import strop.methods.power.exact as ex

    original = ex.log_acceptance
    ex.log_acceptance = lambda a, bc, bn, pc, pn, cc, cn: original(a, bc, bn, pc, pn, 0.0, 0.0)
    try:
        naive = exact_chain(toy, prompt, 4, PowerConfig(alpha=3.0))
    finally:
        ex.log_acceptance = original
    assert np.abs(good.target @ good.P - good.target).max() < 1e-12
    assert np.abs(naive.target @ naive.P - naive.target).max() > 1e-3


def test_stylized_model_enumerates_b_to_the_k_sequences():
    st = stylized_reasoning(3, 16)
    target = power_target(st, st.tokenize("Q"), 16, 4.0)
    assert len(target) == 8 and all(len(s) == 16 for s in target)
    assert sum(target.values()) == pytest.approx(1.0)
    # The likeliest sequence takes the less likely first branch (0.4), then confident ones (0.95, 0.95).
    best = max(target, key=target.get)
    assert st.detokenize(best).startswith("<1>.<1>.<1>")
    greedy = st.generate(st.tokenize("Q"), SamplingParams(max_tokens=16, temperature=0), np.random.default_rng(0))
    assert st.detokenize(greedy.token_ids).startswith("<0>")


# ------------------------------------------------------ sampled chains (exact)

# With n chains over S outcomes, E[TV(empirical, law)] <= 0.5 * sum_i sqrt(p_i / n) <= 0.5 * sqrt(S / n);
# for S <= 16 and n = 3000 that is <= 0.037, and the sd of TV is far smaller, so 0.06 fails only on a real
# discrepancy (or with probability well under 1e-3 by chance).
N_CHAINS = 3000
TV_TOL = 0.06


def run_chains(toy, config, n=N_CHAINS, seed=0):
    finals, per_block = [], []
    root = np.random.default_rng(seed)
    for rng in root.spawn(n):
        blocks = []
        chain, _, _ = power_sample_chain(toy, toy.tokenize("q"), config, rng, on_block=lambda k, c, blocks=blocks: blocks.append(tuple(c.tokens)))
        finals.append(tuple(chain.tokens))
        per_block.append(blocks)
    return finals, per_block


@pytest.mark.parametrize("cut", ["uniform", "entropy"])
def test_one_block_chains_match_p_alpha(cut):
    toy = branching_toy()
    config = PowerConfig(alpha=3.0, block_size=4, max_tokens=4, mcmc_steps=20, cut=cut)
    exact = exact_chain(toy, toy.tokenize("q"), 4, config)
    law = exact.law_after(20)
    assert tv(law, exact.target) < 0.01  # 20 steps have (nearly) converged: the check below is against p^alpha
    finals, _ = run_chains(toy, config)
    target = dict(zip(exact.states, exact.target))
    assert tv_distance(empirical(finals), target) < TV_TOL
    assert any(len(s) < 4 for s in finals) and any(len(s) == 4 for s in finals)  # early EOS and the cap both occur


def test_block_samples_match_each_block_law():
    toy = branching_toy()
    config = PowerConfig(alpha=3.0, block_size=2, max_tokens=4, mcmc_steps=3, cut="entropy")
    laws = block_laws(toy, toy.tokenize("q"), config)
    _, per_block = run_chains(toy, config, seed=1)
    for k, law in enumerate(laws):
        # A chain that ended at EOS in block 1 is not run in block 2: its state carries over.
        got = empirical([blocks[k] if k < len(blocks) else blocks[-1] for blocks in per_block])
        assert tv_distance(got, law) < TV_TOL, f"block {k + 1}"
    # and block 1's law is close to its own intermediate target p(y_{1:B})^alpha
    assert tv_distance(laws[0], power_target(toy, toy.tokenize("q"), 2, 3.0)) < 0.05


def test_max_swap_never_accepts_a_worse_sequence():
    toy = branching_toy()
    config = PowerConfig(alpha=3.0, block_size=4, max_tokens=4, cut="max-swap")
    rng = np.random.default_rng(3)
    for _ in range(200):
        g = toy.generate(toy.tokenize("q"), SamplingParams(max_tokens=4, temperature=config.temperature), rng)
        chain = Chain().cut_then_extend(0, g)
        for _ in range(5):
            new, accepted = run_steps(toy, mh_step(toy.tokenize("q"), chain, 4, config, rng, ChainStats()))
            if accepted:
                assert sum(new.base) > sum(chain.base)
            else:
                assert new is chain
            chain = new


def test_sampler_checks_capabilities_by_name():
    class NoEntropy(type(branching_toy())):
        capabilities = frozenset({"logprobs"})

    toy = branching_toy()
    toy.__class__ = NoEntropy
    with pytest.raises(CapabilityError, match="entropy"):
        power_sample_chain(toy, toy.tokenize("q"), PowerConfig(cut="entropy", max_tokens=4), np.random.default_rng(0))


# ------------------------------------------- targets: full p^alpha or top-k renormalised

# An order-1 model whose top-2 mass differs by context (0.9 after "q", 1 after "a", 0.75 after "b"), so the
# entropy-cut reference's target (p renormalised over the top k at every position) is not p^alpha restricted to
# the top k: the per-position normalisers weigh the "b" branch up.
TOPK_TABLE = {"q": {"a": 0.5, "b": 0.4, "$": 0.1}, "a": {"a": 0.5, "$": 0.5}, "b": {"b": 0.25, "a": 0.35, "$": 0.4}}


def topk_toy():
    from strop.backends.toy import ToyBackend

    return ToyBackend.from_table(["q", "a", "b", "$"], {(c,): row for c, row in TOPK_TABLE.items()}, eos="$", order=1)


def hand_targets(alpha: float, k: int = 2, cap: int = 4) -> dict[str, dict[str, float]]:
    """p^alpha by hand over the completions a top-k proposal can draw: "full" (p) and "topk" (p / top-k mass at each step)."""
    logs: dict[str, dict[str, float]] = {"full": {}, "topk": {}}

    def walk(seq: str, last: str, full: float, topk: float) -> None:
        if seq and (seq[-1] == "$" or len(seq) == cap):
            logs["full"][seq], logs["topk"][seq] = full, topk
            return
        row = TOPK_TABLE[last]
        top = sorted(row, key=row.get, reverse=True)[:k]
        mass = sum(row[t] for t in top)
        for t in top:
            walk(seq + t, t, full + math.log(row[t]), topk + math.log(row[t] / mass))

    walk("", "q", 0.0, 0.0)
    out = {}
    for name, lp in logs.items():
        w = {y: math.exp(alpha * v) for y, v in lp.items()}
        out[name] = {y: v / sum(w.values()) for y, v in w.items()}
    return out


def test_top_k_target_log_probs_are_the_renormalised_top_k_by_hand():
    toy = topk_toy()
    params = PowerConfig(alpha=3.0, top_k=2, target="topk", cut="entropy", max_tokens=4).proposal(4)
    assert params.base_top_k and params.top_k == 2 and params.return_entropy
    seen = set()
    for seed in range(30):
        g = toy.generate(toy.tokenize("q"), params, np.random.default_rng(seed))
        last = "q"
        for tok, lp, h in zip(g.token_ids, g.base_logprobs, g.entropies):
            row, t = TOPK_TABLE[last], toy.vocab[tok]
            top = sorted(row, key=row.get, reverse=True)[:2]
            mass = sum(row[x] for x in top)
            assert lp == pytest.approx(math.log(row[t] / mass), abs=1e-6)
            assert h == pytest.approx(-sum(row[x] / mass * math.log(row[x] / mass) for x in top), abs=1e-6)
            seen.add((last, t))
            last = t
    assert {("q", "b"), ("b", "a"), ("b", "$")} <= seen  # the contexts whose top-2 mass is not 1 were all drawn
    # The full target (default) reports the untruncated base model with the same top-k proposal.
    full = toy.generate(toy.tokenize("q"), PowerConfig(alpha=3.0, top_k=2).proposal(1), np.random.default_rng(0))
    assert full.base_logprobs[0] == pytest.approx(math.log(TOPK_TABLE["q"][toy.vocab[full.token_ids[0]]]), abs=1e-6)


@pytest.mark.parametrize("cut", ["uniform", "entropy"])
@pytest.mark.parametrize("target", ["full", "topk"])
def test_the_chosen_target_is_stationary_under_a_top_k_proposal(target, cut):
    toy = topk_toy()
    chain = exact_chain(toy, toy.tokenize("q"), 4, PowerConfig(alpha=3.0, cut=cut, top_k=2, target=target))
    hands = hand_targets(3.0)
    assert sorted(toy.detokenize(s) for s in chain.states) == sorted(hands[target])
    pi = np.array([hands[target][toy.detokenize(s)] for s in chain.states])
    other = np.array([hands["full" if target == "topk" else "topk"][toy.detokenize(s)] for s in chain.states])
    np.testing.assert_allclose(chain.P.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(chain.target, pi, atol=1e-12)
    np.testing.assert_allclose(pi @ chain.P, pi, atol=1e-12)
    assert np.abs(other @ chain.P - other).max() > 1e-2  # the option changes the chain: the other target is not invariant


def test_sampled_chains_follow_the_top_k_target():
    toy = topk_toy()
    config = PowerConfig(alpha=3.0, block_size=4, max_tokens=4, mcmc_steps=10, cut="entropy", top_k=2, target="topk")
    exact = exact_chain(toy, toy.tokenize("q"), 4, config)
    assert tv(exact.law_after(10), exact.target) < 1e-3
    finals = [toy.detokenize(c.tokens) for c, _, _ in
              (power_sample_chain(toy, toy.tokenize("q"), config, rng) for rng in np.random.default_rng(5).spawn(N_CHAINS))]
    hands = hand_targets(3.0)
    assert tv_distance(empirical(finals), hands["topk"]) < TV_TOL
    assert tv_distance(hands["full"], hands["topk"]) > 0.17  # so a sampler on the full target would fail the line above
    assert tv_distance(empirical(finals), hands["full"]) > 0.17 - TV_TOL


def test_target_option_is_validated_and_flows_from_flat_and_server_settings():
    from strop.methods import method_settings
    from strop.server.schemas import StropOptions

    for kwargs, needle in [({"target": "topk"}, "top_k"), ({"target": "top50"}, "target must be one of")]:
        with pytest.raises(ConfigError, match=needle):
            PowerConfig(**kwargs)
    with pytest.raises(ConfigError, match="base_top_k"):
        SamplingParams(base_top_k=True)
    assert method_settings("power")["config"].target == "full"
    assert not PowerConfig(top_k=50).proposal(8).base_top_k  # the default keeps the full-vocabulary target
    cfg = method_settings("power", **StropOptions(target="topk", top_k=50).model_dump(exclude_none=True))["config"]
    assert (cfg.target, cfg.top_k) == ("topk", 50) and cfg.proposal(8).base_top_k
    with pytest.raises(ConfigError, match="top_k"):
        method_settings("power", target="topk")
    with pytest.raises(ValueError, match="target"):
        StropOptions(target="top50")


def test_top_k_target_needs_the_capability():
    class NoTopKBase(type(topk_toy())):
        capabilities = frozenset({"logprobs", "entropy"})

    toy = topk_toy()
    toy.__class__ = NoTopKBase
    with pytest.raises(CapabilityError, match="topk_base"):
        power_sample_chain(toy, toy.tokenize("q"), PowerConfig(top_k=2, target="topk", max_tokens=4), np.random.default_rng(0))
    power_sample_chain(toy, toy.tokenize("q"), PowerConfig(top_k=2, max_tokens=4), np.random.default_rng(0))  # full: fine


# ------------------------------------------------------------ real model


@pytest.mark.slow
@pytest.mark.parametrize("cut", ["uniform", "entropy", "max-swap"])
def test_power_on_the_embedded_model_reuses_the_prefix_cache(llama, cut):
    from strop.methods import get_method

    config = PowerConfig(alpha=4.0, block_size=8, mcmc_steps=3, max_tokens=24, cut=cut)
    prompt = llama.chat_prompt("Write one sentence about the sea.")
    res = get_method("power")(llama, prompt, np.random.default_rng(0), config=config)
    st = res.stats
    g = res.candidates[0]
    assert st["blocks"] >= 1 and st["proposals"] == 3 * st["blocks"] and 0 <= st["accepted"] <= st["proposals"]
    assert g.completion_tokens <= 24 and g.base_logprobs.shape == (g.completion_tokens,)
    assert st["decoded_tokens"] >= g.completion_tokens and res.decoded_tokens == st["decoded_tokens"]
    if cut == "entropy":
        assert g.entropies is not None and g.entropies.shape == (g.completion_tokens,)
    # Without KV reuse every call re-decodes the prompt and the kept prefix.
    no_reuse = len(prompt) * st["generate_calls"]  # a lower bound of what a cache-less sampler re-decodes
    assert st["recomputed_prefix_tokens"] < no_reuse / 2


@pytest.mark.slow
def test_same_seed_same_power_chain(llama):
    config = PowerConfig(alpha=4.0, block_size=8, mcmc_steps=2, max_tokens=16, cut="entropy")
    prompt = llama.chat_prompt("Name a fruit.")
    a, sa, _ = power_sample_chain(llama, prompt, config, np.random.default_rng(7))
    b, sb, _ = power_sample_chain(llama, prompt, config, np.random.default_rng(7))
    assert a.tokens == b.tokens and sa.accepted == sb.accepted
