"""Power sampling by SMC: exact kernels, the law of its samples against p^alpha, and its statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import branching_toy, empirical, tv_distance
from strop.engine import Engine, run_steps
from strop.errors import ConfigError
from strop.methods import make_steps, method_settings
from strop.methods.power.exact import power_target
from strop.methods.power.smc import SMCConfig, choose, smc_steps
from strop.methods.power.smc_kernels import block_log_weight, ess, log_mean_weight, ramp_exponent, systematic_resample

# ----------------------------------------------------------------- kernels


def test_ramp_is_linear_from_one_to_alpha_then_flat():
    assert [ramp_exponent(t, 4.0, 4) for t in range(6)] == [1.0, 1.75, 2.5, 3.25, 4.0, 4.0]
    assert ramp_exponent(0, 3.0, 0) == 3.0


def test_systematic_resampling_copies_each_particle_floor_or_ceil_of_n_w_times():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        w = rng.dirichlet(np.ones(n))
        anc = systematic_resample(np.log(w), float(rng.random()))
        counts = np.bincount(anc, minlength=n)
        assert counts.sum() == n and np.all(counts >= np.floor(n * w) - 1e-9) and np.all(counts <= np.ceil(n * w) + 1e-9)
        assert np.all(np.diff(anc) >= 0)
    with pytest.raises(ValueError):
        systematic_resample(np.zeros(3), 1.0)


def test_ess_and_the_mean_weight():
    assert ess(np.zeros(5)) == pytest.approx(5.0)
    assert ess(np.array([math.log(0.5), math.log(0.5), -math.inf, -math.inf])) == pytest.approx(2.0)
    assert log_mean_weight(np.log([1.0, 3.0])) == pytest.approx(math.log(2.0))


@pytest.mark.parametrize("ramp", [0, 3, 50])
def test_block_increments_telescope_to_the_final_power_weight(ramp):
    # A particle's increments over its blocks, plus the end correction, are alpha log p(y) - log q(y): the weight
    # of importance sampling from q to p^alpha, whatever the ramp and wherever the particle ended.
    rng = np.random.default_rng(1)
    alpha, block = 3.0, 2
    base, prop = rng.normal(size=7) - 1, rng.normal(size=7) - 1
    total, t_prev = 0.0, 0
    for k in range(1, 6):  # the particle ends after 7 tokens, inside block 4; block 5 only ramps its weight
        t_now = k * block
        start, stop = min(t_prev, 7), min(t_now, 7)
        total += block_log_weight(ramp_exponent(t_prev, alpha, ramp), ramp_exponent(t_now, alpha, ramp), base[:start].sum(),
                                  base[start:stop].sum(), prop[start:stop].sum())
        t_prev = t_now
    total += (alpha - ramp_exponent(t_prev, alpha, ramp)) * base.sum()
    assert total == pytest.approx(alpha * base.sum() - prop.sum())


def test_config_is_validated_and_names_the_field():
    for bad, field in [({"particles": 0}, "particles"), ({"kappa": 1.5}, "kappa"), ({"ramp": -1}, "ramp"), ({"select": "best"}, "select"),
                       ({"block": 0}, "block"), ({"target": "topk"}, "top_k")]:
        with pytest.raises(ConfigError, match=field):
            SMCConfig(**bad)
    with pytest.raises(ConfigError, match="sampler"):
        method_settings("power", sampler="gibbs")


def test_choose_by_vote_takes_the_answer_group_with_the_largest_total_weight():
    # "4" has two light particles (0.2 + 0.2) against one heavy "5" (0.35): the vote picks "4", its heavier particle.
    log_w = np.log([0.2, 0.35, 0.15, 0.2, 0.1])
    answers = ["4", "5", None, "4.0", "6"]
    same = lambda a, b: float(a) == float(b)  # noqa: E731
    assert choose(log_w, answers, "vote", same, np.random.default_rng(0)) == 0
    assert choose(log_w, [None] * 5, "vote", same, np.random.default_rng(0)) in range(5)  # nobody answered: a draw by weight
    picks = [choose(log_w, answers, "sample", same, np.random.default_rng(s)) for s in range(4000)]
    assert np.bincount(picks, minlength=5) / 4000 == pytest.approx([0.2, 0.35, 0.15, 0.2, 0.1], abs=0.03)


# -------------------------------------------------- the law of SMC samples (exact on a toy model)


def smc_samples(toy, config: SMCConfig, runs: int, seed: int = 0) -> list[tuple[int, ...]]:
    out = []
    for rng in np.random.default_rng(seed).spawn(runs):
        parts, log_w, _ = run_steps(toy, smc_steps(toy, toy.tokenize("q"), config, rng))
        out.append(tuple(parts[choose(log_w, [None] * len(parts), "sample", None, rng)].tokens))
    return out


def reference_ramp_target(toy, alpha: float, ramp: int, cap: int) -> dict:
    """The law the reference code's weights target: each token's probability to its own exponent a(t)."""
    prompt = toy.tokenize("q")
    w = {}
    for seq in toy.sequence_logprobs(prompt, cap):
        lp = toy.score(prompt, list(seq)).logprobs
        w[seq] = math.exp(sum(ramp_exponent(t, alpha, ramp) * x for t, x in enumerate(lp, start=1)))
    return {s: v / sum(w.values()) for s, v in w.items()}


# Deterministic given the seeds; the bounds leave room for the sampling noise of 600 runs over this model's
# completions (expected TV under 0.05 for an exact sampler) and for float differences between machines.
RUNS = 600


@pytest.mark.parametrize("ramp", [0, 3])
def test_smc_samples_approach_p_alpha_as_particles_grow(ramp):
    toy = branching_toy()
    target = power_target(toy, toy.tokenize("q"), 4, 3.0)
    tv = {}
    for n in (1, 4, 64):
        config = SMCConfig(alpha=3.0, particles=n, block=2, ramp=ramp, max_tokens=4)
        samples = smc_samples(toy, config, RUNS)
        tv[n] = tv_distance(empirical(samples), target)
        if n == 64:
            assert any(len(s) < 4 for s in samples) and any(len(s) == 4 for s in samples)  # early EOS and the cap both occur
    assert tv[1] > 0.25  # one particle is a plain proposal draw: far from p^alpha
    assert tv[1] > tv[4] > tv[64] and tv[64] < 0.09, tv  # measured: 0.39-0.41, 0.08, 0.03-0.04


def test_without_the_ramp_correction_the_reference_weights_target_another_law():
    toy = branching_toy()
    config = SMCConfig(alpha=3.0, particles=64, block=2, ramp=3, max_tokens=4, ramp_correction=False)
    got = empirical(smc_samples(toy, config, RUNS, seed=2))
    theirs = reference_ramp_target(toy, 3.0, 3, 4)
    assert tv_distance(got, theirs) < 0.09
    assert tv_distance(theirs, power_target(toy, toy.tokenize("q"), 4, 3.0)) > 0.15  # and that law is not p^alpha


def test_alone_and_batched_runs_are_identical_on_the_toy_backend():
    toy = branching_toy()
    config = SMCConfig(alpha=3.0, particles=8, block=1, ramp=2, max_tokens=4, kappa=0.9)
    rngs = lambda: [np.random.default_rng([5, i]) for i in range(6)]  # noqa: E731
    alone = [run_steps(toy, smc_steps(toy, toy.tokenize("q"), config, r)) for r in rngs()]
    together = Engine(toy, max_rows=20).run([smc_steps(toy, toy.tokenize("q"), config, r) for r in rngs()])
    for (pa, wa, sa), (pb, wb, sb) in zip(alone, together):
        assert [p.tokens for p in pa] == [p.tokens for p in pb]
        np.testing.assert_array_equal(wa, wb)
        assert sa["ess_per_block"] == sb["ess_per_block"] and sa["unique_ancestors"] == sb["unique_ancestors"]


def test_result_statistics_count_every_particle():
    toy = branching_toy()
    kwargs = method_settings("power", sampler="smc", particles=6, smc_block=1, ramp=2, kappa=1.0, max_tokens=4, alpha=3.0)
    events = []
    r = run_steps(toy, make_steps("power", toy, "q", np.random.default_rng(3), prompt_ids=toy.tokenize("q"),
                                  events=lambda kind, payload: events.append((kind, payload)), **kwargs))
    s = r.stats
    assert r.config["sampler"] == "smc" and r.config["particles"] == 6 and len(r.candidates) == 6
    assert s["blocks"] == len(s["ess_per_block"]) == len(s["resampled_per_block"]) == len(events)
    assert s["resamples"] == sum(s["resampled_per_block"]) == len(s["unique_ancestors"]) >= 1
    assert all(1 <= u <= 6 for u in s["unique_ancestors"])
    # decoded tokens: every token any particle drew, discarded particles included (more than the survivors hold)
    assert s["decoded_tokens"] == r.decoded_tokens >= max(g.completion_tokens for g in r.candidates)
    assert s["decoded_tokens"] == sum(s["live_per_block"])  # one token per live particle per one-token block
    assert sum(s["weights"]) == pytest.approx(1.0)
    assert [k for k, _ in events] == ["block"] * len(events) and {"ess", "resampled", "text", "live"} <= set(events[0][1])


def test_power_smc_is_the_power_method_with_smc_as_its_sampler():
    a = method_settings("power-smc", particles=5)["config"]
    b = method_settings("power", sampler="smc", particles=5)["config"]
    assert a == b and isinstance(a, SMCConfig)
    assert method_settings("power")["config"].__class__.__name__ == "PowerConfig"  # MH stays the default


def test_smc_options_reach_solve_eval_and_serve_from_the_samplers_module(tmp_path):
    # The options are declared in strop.methods.power.smc only; each surface builds its own from them.
    import json
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    helps = subprocess.run([sys.executable, "-m", "strop", "solve", "--help"], capture_output=True, text=True, timeout=300,
                           env={**__import__("os").environ, "COLUMNS": "200"})
    assert all(f in helps.stdout for f in ("--sampler", "--particles", "--smc-block", "--ramp", "--kappa", "--smc-select"))
    solve = subprocess.run([sys.executable, "-m", "strop", "solve", "2 + 2 = ?", "--method", "power", "--sampler", "smc", "--particles", "3",
                            "--smc-block", "4", "--max-tokens", "8", "--json"], capture_output=True, text=True, timeout=300)
    assert solve.returncode == 0, solve.stderr
    out = json.loads(solve.stdout)
    assert out["config"]["sampler"] == "smc" and out["config"]["particles"] == 3 and len(out["candidates"]) == 3
    assert out["stats"]["blocks"] == len(out["stats"]["ess_per_block"]) >= 1
    ev = subprocess.run([sys.executable, "-m", "strop", "eval", "--task", "arithmetic", "--limit", "2", "--max-tokens", "8", "--method",
                         "power-smc", "--particles", "2", "--smc-block", "4", "--out", str(tmp_path / "run")], capture_output=True,
                        text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    recs = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(r["config"]["config"]["particles"] == 2 and "ess_per_block" in r["stats"] for r in recs)
    serve = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from loopback import client, running
        from test_engine import CharToy
        import openai
        with running(CharToy()) as url:
            c = client(url)
            r = c.chat.completions.create(model="power-smc/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, seed=1,
                                          extra_body={"strop": {"particles": 3, "smc_block": 2}})
            m = c.chat.completions.create(model="power/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, seed=1,
                                          extra_body={"strop": {"sampler": "smc", "particles": 2, "smc_block": 2}})
            kinds = [ch.strop for ch in c.chat.completions.create(
                model="power-smc/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True,
                extra_body={"strop": {"particles": 2, "smc_block": 2}}) if getattr(ch, "strop", None)]
            try:
                c.chat.completions.create(model="power-smc/smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                          extra_body={"strop": {"particles": 0}})
                raise AssertionError("particles 0 was served")
            except openai.BadRequestError as e:
                assert "particles" in str(e), e
        ch = r.strop["choices"][0]
        assert ch["config"]["particles"] == 3 and ch["config"]["sampler"] == "smc", ch
        assert r.usage.completion_tokens == ch["decoded_tokens"] == ch["stats"]["decoded_tokens"] > 0
        assert m.strop["choices"][0]["config"]["particles"] == 2
        blocks = [k for k in kinds if "ess" in k]
        assert blocks and all("resampled" in k for k in blocks), kinds
        print("served")
    """) % str(Path(__file__).parents[1])], capture_output=True, text=True, timeout=300)
    assert serve.returncode == 0 and "served" in serve.stdout, serve.stderr + serve.stdout
