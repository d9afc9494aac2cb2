"""Power sampling by Sequential Monte Carlo: N particles decoded side by side towards p^alpha.

After Azizi et al., "Power-SMC" (arXiv 2602.10273). The particles of one
problem are one yield of N requests, so the engine decodes them in one batch
(with other problems' rows), and a particle never waits for another's MH
steps: the latency is that of decoding N sequences together, not of a chain of
proposals. Every ``block`` tokens the effective sample size of the weights is
checked and, when it falls below ``kappa * N``, the particles are resampled
(systematic). A resampled particle continues from its ancestor's tokens; the
backends reuse the ancestor's cached prefix (llama.cpp copies it between
sequences, the hf slot cache copies it between slots), so no kept token is
decoded again. The weights are in ``smc_kernels``; all randomness comes from
the attempt's rng (a child per particle per block), so a result is the same
alone or batched with other problems on a backend that decodes rows alone.

Where strop differs from the reference code (each on purpose):
- the ramp re-tempers the kept prefix when the exponent rises (the target after
  block k is p(y_{1:t})^{a_k}) and tempers ended particles on to alpha, so the
  weighted particles target p^alpha at the end; the reference weighs token t by
  p(y_t)^{a_t} / q(y_t), whose target gives the first R tokens a smaller power.
  ``ramp_correction=False`` reproduces the reference's weights;
- the proposal temperature is 1/a_k for the whole of block k (a request has one
  temperature) rather than changing every token; the weights use the
  proposal's own log-probs, so the target is the same either way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from strop.backends.base import LOGPROBS, TOPK_BASE, Backend, Generation, GenRequest, SamplingParams
from strop.errors import ConfigError
from strop.methods.base import Events, MethodResult, Progress
from strop.methods.options import PANEL_P, Option
from strop.methods.power.kernels import Target, check_target, draw_index
from strop.methods.power.smc_kernels import block_log_weight, ess, log_mean_weight, normalized_weights, ramp_exponent, systematic_resample
from strop.verifiers.extract import extract_answer
from strop.verifiers.voting import Same, check_vote, group_answers, vote_relation

SELECTS: tuple[str, ...] = ("sample", "vote")


@dataclass(frozen=True)
class SMCConfig:
    """Settings of the SMC power sampler.

    Defaults: the paper's constants (alpha 4, kappa 0.5, block 64, ramp 400)
    except the particles: Power-SMC uses N = 64 on a GPU; strop's default is 16,
    the rows the llamacpp backend decodes at once, because on a CPU a batch's
    cost grows with its rows (docs/power_sampling.md, "Samplers").

    Attributes:
        alpha: the power; the target is p^alpha (> 0).
        particles: N, sequences decoded side by side.
        block: tokens between ESS checks (the reference's ``block_size``).
        ramp: tokens over which the exponent rises linearly from 1 to alpha (0: alpha from the start).
        kappa: resample when ESS < kappa * N (0: never; 1: whenever the weights are unequal).
        max_tokens: length cap of every particle.
        select: "sample" (one particle drawn in proportion to its weight) or "vote" (the answer group with the
            largest total weight, answers grouped by ``vote``; its heaviest particle answers).
        vote: which answers are one group for select "vote": "equivalence" or "string".
        proposal_temperature: the proposal's temperature; None means 1/a_k in block k.
        top_k: truncate the proposal to the k likeliest tokens (None: no truncation).
        target: "full" or "topk", as for MH (``PowerConfig.target``).
        ramp_correction: re-temper kept tokens as the exponent ramps (target p^alpha); False weighs each token
            by its own exponent, as the reference code does.
    """

    alpha: float = 4.0
    particles: int = 16
    block: int = 64
    ramp: int = 400
    kappa: float = 0.5
    max_tokens: int = 3072
    select: str = "sample"
    vote: str = "equivalence"
    proposal_temperature: float | None = None
    top_k: int | None = None
    target: Target = "full"
    ramp_correction: bool = True
    sampler: str = field(default="smc", init=False)  # in the record's config, beside MH's

    def __post_init__(self) -> None:
        check_target(self.alpha, self.proposal_temperature, self.top_k, self.target)
        for name in ("particles", "block", "max_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.ramp, int) or isinstance(self.ramp, bool) or self.ramp < 0:
            raise ConfigError(f"ramp must be an integer >= 0, got {self.ramp!r}")
        if not (isinstance(self.kappa, (int, float)) and 0.0 <= self.kappa <= 1.0):
            raise ConfigError(f"kappa must be a number in [0, 1], got {self.kappa!r}")
        if self.select not in SELECTS:
            raise ConfigError(f"select must be one of {', '.join(SELECTS)}, got {self.select!r}")
        check_vote(self.vote)

    def proposal(self, max_tokens: int, exponent: float) -> SamplingParams:
        """The proposal of a block whose target exponent is ``exponent``, for at most ``max_tokens`` tokens."""
        t = self.proposal_temperature if self.proposal_temperature is not None else 1.0 / exponent
        return SamplingParams(max_tokens=max_tokens, temperature=t, top_k=self.top_k, base_top_k=self.target == "topk")


@dataclass
class Particle:
    """One particle's tokens and what was recorded when each was drawn; ``done`` once it ended (EOS or the cap)."""

    tokens: list[int] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    proposal: list[float] = field(default_factory=list)
    ended: bool = False  # the last token is EOS
    done: bool = False
    log_p: float = 0.0  # sum of ``base``, kept as tokens are added (the weights read it every block)

    def extend(self, g: Generation) -> None:
        self.tokens += g.token_ids
        self.base += g.base_logprobs.tolist()
        self.proposal += g.proposal_logprobs.tolist()
        self.log_p += math.fsum(g.base_logprobs)
        self.ended = g.finish_reason == "eos"

    def copy(self) -> Particle:
        return Particle(list(self.tokens), list(self.base), list(self.proposal), self.ended, self.done, self.log_p)


def _increment(config: SMCConfig, p: Particle, start: int, prefix: float, t_prev: int, t_now: int) -> float:
    """Log-weight increment of particle ``p`` for the block from step ``t_prev`` to ``t_now``: its tokens from ``start``
    on are new, ``prefix`` is the log-probability of those before.

    With the correction, the target after step t is p(y)^{a(t)} for every particle (an ended one included):
    ``block_log_weight``. Without it (the reference), token i counts with exponent a(i) when drawn and never again.
    """
    new_prop = math.fsum(p.proposal[start:])
    if config.ramp_correction:
        inc = block_log_weight(ramp_exponent(t_prev, config.alpha, config.ramp), ramp_exponent(t_now, config.alpha, config.ramp),
                               prefix, math.fsum(p.base[start:]), new_prop)
    else:
        exps = [ramp_exponent(i, config.alpha, config.ramp) for i in range(start + 1, len(p.base) + 1)]
        inc = math.fsum(e * b for e, b in zip(exps, p.base[start:])) - new_prop
    return inc if not math.isnan(inc) else -math.inf


def smc_steps(
    model: Backend,
    prompt_ids: Sequence[int],
    config: SMCConfig,
    rng: np.random.Generator,
    *,
    progress: Progress | None = None,
    on_block: Callable[[dict], None] | None = None,
):
    """The particle filter as a step machine; returns (particles, log-weights, statistics).

    Each block is one yield: one request per live particle, continuing its tokens up to the block's end.
    ``on_block(info)`` sees each block's ESS, whether it resampled and the surviving ancestors.
    """
    model.require(LOGPROBS, *((TOPK_BASE,) if config.target == "topk" else ()))
    started = time.perf_counter()
    prompt = list(prompt_ids)
    model.check_fits(len(prompt))
    max_tokens = min(config.max_tokens, model.context_length - len(prompt))
    n_blocks = math.ceil(max_tokens / config.block)
    n = config.particles
    parts = [Particle() for _ in range(n)]
    log_w = np.zeros(n)
    stats: dict = {"particles": n, "resamples": 0, "ess_per_block": [], "resampled_per_block": [], "unique_ancestors": [],
                   "live_per_block": [], "decoded_tokens": 0, "recomputed_prefix_tokens": 0, "generate_calls": 0}
    approximations: set[str] = set()  # what the backend estimated rather than computed (a server's top-k log-probs)
    t_prev = 0
    for k in range(1, n_blocks + 1):
        live = [i for i in range(n) if not parts[i].done]
        if not live:
            break
        t_now = min(k * config.block, max_tokens)
        exponent = ramp_exponent(t_now, config.alpha, config.ramp) if config.ramp_correction else \
            ramp_exponent((t_prev + t_now) // 2, config.alpha, config.ramp)
        gens = yield [GenRequest(prompt + parts[i].tokens, config.proposal(t_now - len(parts[i].tokens), exponent), r)
                      for i, r in zip(live, rng.spawn(len(live)))]
        starts = [len(p.tokens) for p in parts]
        prefixes = [p.log_p for p in parts]
        for i, g in zip(live, gens):
            parts[i].extend(g)
            parts[i].done = g.finish_reason != "length" or len(parts[i].tokens) >= max_tokens
            stats["decoded_tokens"] += g.completion_tokens
            stats["recomputed_prefix_tokens"] += g.prompt_tokens - g.cached_prompt_tokens
            stats["generate_calls"] += 1
            approximations.update(g.approximations)
        for i in range(n):  # ended particles too: their weight follows the exponent on to alpha
            log_w[i] += _increment(config, parts[i], starts[i], prefixes[i], t_prev, t_now)
        t_prev = t_now
        e = ess(log_w)
        resample = e < config.kappa * n and any(not p.done for p in parts)
        info = {"block": k, "ess": e, "resampled": resample, "live": len(live)}
        if resample:
            ancestors = systematic_resample(log_w, float(rng.random()))
            parts = [parts[a].copy() for a in ancestors]
            log_w = np.full(n, log_mean_weight(log_w))
            stats["resamples"] += 1
            stats["unique_ancestors"].append(len(set(ancestors.tolist())))
            info["unique_ancestors"] = stats["unique_ancestors"][-1]
        stats["ess_per_block"].append(e)
        stats["resampled_per_block"].append(resample)
        stats["live_per_block"].append(len(live))
        if on_block:
            info["heaviest"] = int(np.argmax(log_w))
            info["particle"] = parts[info["heaviest"]]
            on_block(info)
        if progress:
            progress(k, n_blocks)
    if config.ramp_correction:  # every particle ended before the ramp did: temper the rest of the way to alpha
        a_end = ramp_exponent(t_prev, config.alpha, config.ramp)
        log_w += np.array([block_log_weight(a_end, config.alpha, p.log_p, 0.0, 0.0) for p in parts])
        log_w[np.isnan(log_w)] = -math.inf
    stats["blocks"] = len(stats["ess_per_block"])
    stats["approximations"] = sorted(approximations)
    stats["elapsed_s"] = time.perf_counter() - started
    return parts, log_w, stats


def choose(log_w: np.ndarray, answers: Sequence[str | None], select: str, same: Same, rng: np.random.Generator) -> int:
    """The particle that answers: drawn in proportion to its weight, or the heaviest of the answer group with the
    largest total weight (``select`` "vote"; no particle with an answer: drawn as for "sample")."""
    w = normalized_weights(log_w)
    if select == "vote":
        groups = group_answers(answers, same)
        totals: dict[int, float] = {}
        for g, wi in zip(groups, w):
            if g is not None:
                totals[g] = totals.get(g, 0.0) + float(wi)
        if totals:
            best = max(totals, key=lambda g: (totals[g], -groups.index(g)))
            members = [i for i, g in enumerate(groups) if g == best]
            return max(members, key=lambda i: (w[i], -i))
    return draw_index(w, rng)


def smc(
    model: Backend,
    prompt_ids: Sequence[int],
    config: SMCConfig,
    rng: np.random.Generator,
    *,
    progress: Progress | None = None,
    extract: Callable[[str], str | None] = extract_answer,
    events: Events | None = None,
    same: Same | None = None,
):
    """Power sampling by SMC (see ``SMCConfig``) as a step machine, returning a ``MethodResult``.

    ``candidates`` are the final particles (copies included), ``chosen`` the one
    that answers. ``events("block", ...)`` sees each block's ESS, whether it
    resampled, and the text of the heaviest particle (a snapshot: resampling
    may drop it later).
    """

    def block_event(info: dict) -> None:
        assert events is not None
        p = info.pop("particle")
        events("block", {**info, "text": model.detokenize(p.tokens[:-1] if p.ended else p.tokens)})

    parts, log_w, stats = yield from smc_steps(model, prompt_ids, config, rng, progress=progress,
                                               on_block=block_event if events else None)
    approx = tuple(stats["approximations"])
    gens = tuple(Generation(token_ids=tuple(p.tokens), text=model.detokenize(p.tokens[:-1] if p.ended else p.tokens),
                            base_logprobs=np.asarray(p.base), proposal_logprobs=np.asarray(p.proposal), entropies=None,
                            finish_reason="eos" if p.ended else "length", prompt_tokens=len(prompt_ids), approximations=approx)
                 for p in parts)
    answers = [extract(g.text) for g in gens]
    chosen = choose(log_w, answers, config.select, same or vote_relation(config.vote), rng)
    weights = normalized_weights(log_w)
    wall = stats["elapsed_s"]
    stats.update({"weights": [round(float(x), 6) for x in weights], "final_ess": ess(log_w),
                  "tokens_per_s": stats["decoded_tokens"] / wall if wall > 0 else None})
    return MethodResult("power", asdict(config), gens, chosen, answers[chosen], stats)


# Declared here, by the sampler that reads them; the power method lists them (``strop.methods.power.sampler``).
PARTICLES = Option("particles", int, 16, "power --sampler smc: particles decoded side by side (N).", ge=1, panel=PANEL_P)
SMC_BLOCK = Option("smc_block", int, 64, "power --sampler smc: tokens between ESS checks (Power-SMC's block_size).", ge=1,
                   panel=PANEL_P)
RAMP = Option("ramp", int, 400, "power --sampler smc: tokens over which the exponent rises from 1 to alpha (0: none).", ge=0,
              panel=PANEL_P)
KAPPA = Option("kappa", float, 0.5, "power --sampler smc: resample when ESS < kappa * N.", ge=0.0, le=1.0, panel=PANEL_P)
SMC_SELECT = Option("smc_select", str, "sample", "power --sampler smc: the answer: a particle drawn by weight (sample) or the answer"
                                                 " group with the largest total weight (vote, grouped by --vote).",
                    choices=SELECTS, panel=PANEL_P)
RAMP_CORRECTION = Option("ramp_correction", bool, True, "power --sampler smc: re-temper kept tokens as the exponent ramps (target"
                                                        " p^alpha); off: each token keeps its own exponent, as Power-SMC's code.",
                         panel=PANEL_P)
SMC_OPTIONS = (PARTICLES, SMC_BLOCK, RAMP, KAPPA, SMC_SELECT, RAMP_CORRECTION)
