"""Power sampling: draw from p(y | x)^alpha by Metropolis-Hastings over suffixes.

Block-wise, as in Karan & Du (arXiv 2510.14901): extend the sequence by B
tokens from the proposal, then run N MH steps targeting p(y_{1:kB})^alpha;
repeat until EOS or ``max_tokens``. The cut rule picks where each move
resamples: uniform (Karan & Du), at entropy jumps (Zhou, Mehrotra & Liu,
arXiv 2605.30327), or uniform with greedy acceptance (max-swap).

No token is ever re-scored. Every token of the chain's state was drawn by the
proposal given exactly the prefix it still has (a move only replaces a
suffix), so the base and proposal log-probs and entropies recorded when it
was generated are the ones the acceptance ratio needs; and both sides of the
ratio come from the same computation path. With a prefix-caching backend a
proposal costs only the tokens it generates (plus re-decoding the part of
the kept prefix that a rejected proposal overwrote in the cache).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from strop.backends.base import ENTROPY, EXACT_LOGPROBS, LOGPROBS, TOPK_BASE, Backend, Generation, GenRequest, SamplingParams, TokenTrace
from strop.errors import ConfigError
from strop.methods.base import Events, MethodResult, MethodSpec, Progress, register_method
from strop.methods.basic import MAX_TOKENS, TOP_K, VOTE
from strop.methods.options import PANEL_P, Option, Settings
from strop.methods.power.kernels import TARGETS, CutRule, Target, check_target, cut_log_probs, draw_index, log_acceptance, max_swap_accepts, mh_accepts
from strop.methods.power.smc import SMC_OPTIONS, SMCConfig, smc
from strop.verifiers.extract import extract_answer

CUT_RULES: tuple[str, ...] = ("uniform", "entropy", "max-swap")
SAMPLERS: tuple[str, ...] = ("mh", "smc")


@dataclass(frozen=True)
class PowerConfig:
    """Settings of the power sampler (defaults: the papers' constants for MATH500).

    Attributes:
        alpha: the power; the target is p^alpha (> 0; > 1 sharpens).
        block_size: tokens added per block, B.
        mcmc_steps: MH steps after each block, N.
        max_tokens: length cap of the whole completion, T_max.
        cut: "uniform", "entropy" (cut at entropy jumps) or "max-swap" (alpha = infinity).
        beta: exponent of the entropy-jump weights (entropy cut only).
        proposal_temperature: temperature of the proposal q; None means 1/alpha.
        top_k: truncate the proposal to the k likeliest tokens (None: no truncation).
        target: the p in p^alpha. "full": the base model over the whole vocabulary.
            "topk": at every position the base model over the proposal's ``top_k``
            likeliest tokens, renormalised, as the entropy-cut reference code computes
            it (with top_k = 50); the cut's entropies are then over those k tokens too.
            Its k is ``top_k`` (required): a target over other tokens than the
            proposal can draw would either waste proposals or be unreachable.
    """

    alpha: float = 4.0
    block_size: int = 192
    mcmc_steps: int = 10
    max_tokens: int = 3072
    cut: CutRule = "uniform"
    beta: float = 4.0
    proposal_temperature: float | None = None
    top_k: int | None = None
    target: Target = "full"

    def __post_init__(self) -> None:
        check_target(self.alpha, self.proposal_temperature, self.top_k, self.target)
        for name in ("block_size", "max_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.mcmc_steps, int) or self.mcmc_steps < 0:
            raise ConfigError(f"mcmc_steps must be an integer >= 0, got {self.mcmc_steps!r}")
        if self.cut not in CUT_RULES:
            raise ConfigError(f"cut must be one of {', '.join(CUT_RULES)}, got {self.cut!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"beta must be a finite number > 0, got {self.beta!r}")

    @property
    def temperature(self) -> float:
        return self.proposal_temperature if self.proposal_temperature is not None else 1.0 / self.alpha

    def proposal(self, max_tokens: int) -> SamplingParams:
        """Sampling parameters of the proposal q for a suffix of at most ``max_tokens``."""
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_k=self.top_k, return_entropy=self.cut == "entropy",
                              base_top_k=self.target == "topk")


@dataclass
class Chain(TokenTrace):
    """The current sequence and what was recorded when each of its tokens was drawn."""

    ended: bool = False  # the last token is EOS

    def __len__(self) -> int:
        return len(self.tokens)

    def cut_then_extend(self, m: int, g: Generation) -> Chain:
        """A new chain: this one's first ``m`` tokens followed by ``g``'s tokens."""
        ent = self.entropy[:m] + (g.entropies.tolist() if g.entropies is not None else [])
        return Chain(
            self.tokens[:m] + list(g.token_ids),
            self.base[:m] + g.base_logprobs.tolist(),
            self.proposal[:m] + g.proposal_logprobs.tolist(),
            ent,
            g.finish_reason == "eos",
        )


@dataclass
class ChainStats:
    proposals: list[int] = field(default_factory=list)  # per block
    accepted: list[int] = field(default_factory=list)  # per block
    decoded_tokens: int = 0  # every generated token, rejected proposals included
    recomputed_prefix_tokens: int = 0  # prompt/prefix tokens decoded again (cache misses)
    generate_calls: int = 0

    def count(self, g: Generation) -> None:
        self.decoded_tokens += g.completion_tokens
        self.recomputed_prefix_tokens += g.prompt_tokens - g.cached_prompt_tokens
        self.generate_calls += 1


def mh_step(
    prompt: Sequence[int],
    chain: Chain,
    cap: int,
    config: PowerConfig,
    rng: np.random.Generator,
    stats: ChainStats,
):
    """One MH move on ``chain`` under the length cap (a step machine: one proposal request); returns (next chain, accepted)."""
    length = len(chain)
    ent = np.asarray(chain.entropy) if config.cut == "entropy" else None
    log_c = cut_log_probs(length, ent, config.cut, config.beta)
    m = draw_index(np.exp(log_c), rng)
    (g,) = yield [GenRequest(list(prompt) + chain.tokens[:m], config.proposal(cap - m), rng)]
    stats.count(g)
    new = chain.cut_then_extend(m, g)
    base_cur, base_new = math.fsum(chain.base[m:]), math.fsum(new.base[m:])
    if config.cut == "max-swap":
        return (new, True) if max_swap_accepts(base_cur, base_new) else (chain, False)
    new_ent = np.asarray(new.entropy) if config.cut == "entropy" else None
    log_c_new = cut_log_probs(len(new), new_ent, config.cut, config.beta)[m]
    log_a = log_acceptance(
        config.alpha, base_cur, base_new, math.fsum(chain.proposal[m:]), math.fsum(new.proposal[m:]), float(log_c[m]), float(log_c_new)
    )
    return (new, True) if mh_accepts(log_a, rng) else (chain, False)


def chain_steps(
    model: Backend,
    prompt_ids: Sequence[int],
    config: PowerConfig,
    rng: np.random.Generator,
    *,
    progress: Progress | None = None,
    on_block: Callable[[int, Chain], None] | None = None,
):
    """The block-wise MH chain as a step machine; returns (final chain, statistics, wall seconds).

    ``on_block(k, chain)`` is called after block k's MH steps (k = 1, 2, ...).
    All randomness (cut points, proposals, acceptances) comes from ``rng``, in
    the order a one-chain run draws it, so the chain is the same alone or
    batched with other chains.
    """
    model.require(LOGPROBS, *((ENTROPY,) if config.cut == "entropy" else ()), *((TOPK_BASE,) if config.target == "topk" else ()))
    started = time.perf_counter()
    prompt = list(prompt_ids)
    max_tokens = min(config.max_tokens, model.context_length - len(prompt))
    model.check_fits(len(prompt))
    n_blocks = math.ceil(max_tokens / config.block_size)
    chain, stats = Chain(), ChainStats()
    total_steps, done_steps = n_blocks * config.mcmc_steps, 0
    for k in range(1, n_blocks + 1):
        if chain.ended:
            break
        cap = min(k * config.block_size, max_tokens)
        (g,) = yield [GenRequest(prompt + chain.tokens, config.proposal(cap - len(chain)), rng)]
        stats.count(g)
        chain = chain.cut_then_extend(len(chain), g)
        accepted = 0
        for _ in range(config.mcmc_steps):
            chain, ok = yield from mh_step(prompt, chain, cap, config, rng, stats)
            accepted += ok
            done_steps += 1
            if progress:  # (MH steps done, most there can be; a chain ending at EOS stops early)
                progress(done_steps, total_steps)
        stats.proposals.append(config.mcmc_steps)
        stats.accepted.append(accepted)
        if on_block:
            on_block(k, chain)
    return chain, stats, time.perf_counter() - started


def power_sample_chain(
    backend: Backend,
    prompt_ids: Sequence[int],
    config: PowerConfig,
    rng: np.random.Generator,
    *,
    progress: Progress | None = None,
    on_block: Callable[[int, Chain], None] | None = None,
) -> tuple[Chain, ChainStats, float]:
    """Run one chain alone on ``backend``; returns (final chain, statistics, wall seconds). See ``chain_steps``."""
    from strop.engine import run_steps

    return run_steps(backend, chain_steps(backend, prompt_ids, config, rng, progress=progress, on_block=on_block))


def power(
    model: Backend,
    prompt_ids: Sequence[int],
    rng: np.random.Generator,
    *,
    progress: Progress | None = None,
    config: PowerConfig | SMCConfig | None = None,
    extract: Callable[[str], str | None] = extract_answer,
    events: Events | None = None,
):
    """Power sampling towards p^alpha, as a step machine: by Metropolis-Hastings (a ``PowerConfig``, the default)
    or by Sequential Monte Carlo (an ``SMCConfig``: ``strop.methods.power.smc``).

    MH: ``events("block", {"block": k, "text": ...})`` sees the chain's text
    after block k. It is a snapshot, not a prefix of the answer: a later
    block's MH steps may cut and redraw any earlier token.
    """
    config = config or PowerConfig()
    if isinstance(config, SMCConfig):
        return (yield from smc(model, prompt_ids, config, rng, progress=progress, extract=extract, events=events))

    def block_text(k: int, chain: Chain) -> None:
        assert events is not None
        events("block", {"block": k, "text": model.detokenize(chain.tokens[:-1] if chain.ended else chain.tokens)})

    chain, stats, wall = yield from chain_steps(model, prompt_ids, config, rng, progress=progress,
                                                on_block=block_text if events else None)
    body = chain.tokens[:-1] if chain.ended else chain.tokens
    g = Generation(
        token_ids=tuple(chain.tokens),
        text=model.detokenize(body),
        base_logprobs=np.asarray(chain.base),
        proposal_logprobs=np.asarray(chain.proposal),
        entropies=np.asarray(chain.entropy) if config.cut == "entropy" else None,
        finish_reason="eos" if chain.ended else "length",
        prompt_tokens=len(prompt_ids),
        elapsed_s=wall,
        approximations=() if EXACT_LOGPROBS in model.capabilities else ("proposal_logprobs_topk",),
    )
    proposals, accepted = sum(stats.proposals), sum(stats.accepted)
    out_stats = {
        "proposals": proposals,
        "accepted": accepted,
        "acceptance_rate": accepted / proposals if proposals else None,
        "proposals_per_block": stats.proposals,
        "accepted_per_block": stats.accepted,
        "blocks": len(stats.proposals),
        "decoded_tokens": stats.decoded_tokens,
        "recomputed_prefix_tokens": stats.recomputed_prefix_tokens,
        "generate_calls": stats.generate_calls,
        "elapsed_s": wall,
        "tokens_per_s": stats.decoded_tokens / wall if wall > 0 else None,
    }
    return MethodResult("power", asdict(config), (g,), 0, extract(g.text), out_stats)


ALPHA = Option("alpha", float, 4.0, "power: the exponent; samples from p^alpha.", gt=0.0, panel=PANEL_P)
BLOCK_SIZE = Option("block_size", int, 192, "power: tokens per block (B).", ge=1, panel=PANEL_P)
MCMC_STEPS = Option("mcmc_steps", int, 10, "power: MH steps per block (N).", ge=0, panel=PANEL_P)
CUT = Option("cut", str, "uniform", "power: cut rule, uniform | entropy | max-swap.", choices=CUT_RULES, panel=PANEL_P)
BETA = Option("beta", float, 4.0, "power: exponent of the entropy-jump cut weights.", gt=0.0, panel=PANEL_P)
PROPOSAL_TEMPERATURE = Option("proposal_temperature", float, None, "power: proposal temperature (default 1/alpha).", nullable=True,
                              gt=0.0, panel=PANEL_P)
SAMPLER = Option("sampler", str, "mh", "power: the sampler, mh (Metropolis-Hastings) | smc (Sequential Monte Carlo:"
                                       " --particles, --smc-block, --ramp, --kappa, --smc-select).", choices=SAMPLERS, panel=PANEL_P)
TARGET = Option("target", str, "full", "power: target p^alpha over the full vocabulary (full) or over the --top-k tokens"
                                       " renormalised (topk, the entropy-cut reference's; needs --top-k).", choices=TARGETS, panel=PANEL_P)


def _smc_config(f: Settings) -> SMCConfig:
    return SMCConfig(alpha=f.alpha, particles=f.particles, block=f.smc_block, ramp=f.ramp, kappa=f.kappa, max_tokens=f.max_tokens,
                     select=f.smc_select, vote=f.vote, proposal_temperature=f.proposal_temperature, top_k=f.top_k, target=f.target,
                     ramp_correction=f.ramp_correction)


def _settings(f: Settings) -> dict:
    if f.sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {f.sampler!r}")
    if f.sampler == "smc":
        return {"config": _smc_config(f)}
    return {"config": PowerConfig(alpha=f.alpha, block_size=f.block_size, mcmc_steps=f.mcmc_steps, max_tokens=f.max_tokens, cut=f.cut,
                                  beta=f.beta, proposal_temperature=f.proposal_temperature, top_k=f.top_k, target=f.target)}


def _budget(kw: dict) -> int:
    cfg = kw["config"]
    if isinstance(cfg, SMCConfig):
        return cfg.max_tokens * cfg.particles
    return cfg.max_tokens * (1 + cfg.mcmc_steps)


register_method(MethodSpec("power", power, _settings, _budget, events=("block",), unit="steps",
                           options=(ALPHA, SAMPLER, BLOCK_SIZE, MCMC_STEPS, CUT, BETA, PROPOSAL_TEMPERATURE, TARGET, MAX_TOKENS, TOP_K,
                                    *SMC_OPTIONS, VOTE),
                           help="power sampling towards p^alpha: Metropolis-Hastings (--block-size, --mcmc-steps, --cut) or"
                                " --sampler smc (--particles, --smc-block, --ramp, --kappa)"))
# The same method with SMC as its default sampler: a model prefix for the server (``power-smc/<model>``).
register_method(MethodSpec("power-smc", power, lambda f: {"config": _smc_config(f)}, _budget, events=("block",), unit="blocks",
                           options=(ALPHA, PROPOSAL_TEMPERATURE, TARGET, MAX_TOKENS, TOP_K, *SMC_OPTIONS, VOTE),
                           help="power sampling towards p^alpha by Sequential Monte Carlo (power --sampler smc)"))
