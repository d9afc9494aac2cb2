"""The shapes every backend speaks: sampling parameters, a request, a generation, scores, capability names.

Data only (and their checks); ``strop.backends.base`` holds the ``Backend`` contract that produces them and
re-exports these names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from strop.backends.logits import Draw
from strop.errors import ConfigError

FinishReason = Literal["eos", "length", "stop"]

# Capability names. Methods call ``backend.require(...)`` with these.
LOGPROBS = "logprobs"  # base and proposal log-probs of sampled tokens
ENTROPY = "entropy"  # base next-token entropy at each sampled position
SCORE = "score"  # log-probs (and entropies) of a continuation we supply
PREFIX_CACHE = "prefix_cache"  # continuing a prefix does not recompute it
EXACT_LOGPROBS = "exact_logprobs"  # proposal log-probs/entropies are exact, not top-k estimates
TOPK_BASE = "topk_base"  # base log-probs/entropies over the top-k tokens renormalised (SamplingParams.base_top_k)


@dataclass(frozen=True)
class SamplingParams:
    """How to draw one completion.

    Attributes:
        max_tokens: most tokens to generate (>= 1).
        temperature: 0 means greedy (argmax); otherwise logits are divided by it.
        top_k: keep only the k most likely tokens; None keeps all.
        top_p: keep the smallest set of tokens whose mass reaches top_p (1.0 keeps all).
        stop: strings that end generation; the completion's text is cut before
            the first one, its tokens keep the token that completed it.
        return_entropy: also report the base model's next-token entropy at
            every generated position (needed by the entropy cut).
        base_top_k: report base log-probs and entropies of the base model
            restricted to the ``top_k`` likeliest tokens and renormalised
            (temperature 1), not of the whole vocabulary: power sampling's
            top-k target. Needs ``top_k``; backends that can compute it have
            the ``topk_base`` capability.
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    return_entropy: bool = False
    base_top_k: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k must be an integer >= 1 or None, got {self.top_k!r}")
        if not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.base_top_k, bool) or (self.base_top_k and self.top_k is None):
            raise ConfigError(f"base_top_k renormalises the base model over the top_k tokens: it needs top_k set, got base_top_k="
                              f"{self.base_top_k!r}, top_k={self.top_k!r}")
        if isinstance(self.stop, str) or any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"stop must be a tuple of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True, eq=False)
class Generation:
    """One completion, the same shape from every backend.

    Arrays have one entry per generated token (length ``n = completion_tokens``):

    - ``base_logprobs[i]``: log p(token_i | prompt, tokens_<i) under the model
      at temperature 1 with no truncation (with ``SamplingParams.base_top_k``:
      over the top-k tokens, renormalised; entropies likewise);
    - ``proposal_logprobs[i]``: the same under the distribution the token was
      actually drawn from (temperature, top-k, top-p); 0 for greedy tokens;
    - ``entropies[i]``: entropy of the base next-token distribution at i,
      present only when ``SamplingParams.return_entropy`` was set.

    ``approximations`` names every quantity that is an estimate rather than
    exact (e.g. entropies from a server's top-k log-probs).
    """

    token_ids: tuple[int, ...]
    text: str
    base_logprobs: np.ndarray
    proposal_logprobs: np.ndarray
    entropies: np.ndarray | None
    finish_reason: FinishReason
    prompt_tokens: int
    cached_prompt_tokens: int = 0
    elapsed_s: float = 0.0
    approximations: tuple[str, ...] = ()

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "base_logprobs": self.base_logprobs.tolist(),
            "proposal_logprobs": self.proposal_logprobs.tolist(),
            "entropies": None if self.entropies is None else self.entropies.tolist(),
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "elapsed_s": self.elapsed_s,
            "approximations": list(self.approximations),
        }


@dataclass(frozen=True, eq=False)
class Scored:
    """Log-probs (temperature 1) of a supplied continuation; shapes (n,)."""

    logprobs: np.ndarray
    entropies: np.ndarray | None
    cached_prompt_tokens: int = 0
    approximations: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return float(np.sum(self.logprobs))


OnToken = Callable[[int], None]


@dataclass(frozen=True, eq=False)
class GenRequest:
    """One completion a method asks for: what the engine batches with other methods' requests.

    ``rng`` is the request's only randomness, so a row's tokens do not depend
    on which other rows share its batch. ``on_token(id)`` (optional) sees each
    token as it is drawn (the server streams sample/greedy this way).
    """

    prompt_ids: Sequence[int]
    params: SamplingParams
    rng: np.random.Generator
    on_token: OnToken | None = None


@dataclass
class TokenTrace:
    """Per-token records of a sequence as it was drawn: ids, base and proposal log-probs, entropies."""

    tokens: list[int] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    proposal: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)

    def add(self, d: Draw) -> None:
        self.tokens.append(d.token)
        self.base.append(d.base_logprob)
        self.proposal.append(d.proposal_logprob)
        self.entropy.append(d.entropy)
