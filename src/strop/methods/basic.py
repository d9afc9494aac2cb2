"""The baseline methods: greedy, sampling, best-of-n and majority vote.

Best-of-n and majority vote decode ``n`` independent samples (batched when the
backend batches) and differ only in how they choose: best-of-n by a score
(mean log-likelihood by default, the pick the power-sampling papers use for
compute-matched baselines), majority vote by the most common extracted answer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np

from strop.backends.base import Backend, Generation, SamplingParams
from strop.errors import ConfigError
from strop.methods.base import MethodResult, Progress, register_method
from strop.verifiers.extract import extract_answer

Extract = Callable[[str], "str | None"]


def mean_logprob(g: Generation) -> float:
    """Mean base log-probability per token (-inf for an empty completion)."""
    return float(np.mean(g.base_logprobs)) if g.completion_tokens else float("-inf")


def _stats(gens: Sequence[Generation], started: float) -> dict[str, float | int]:
    return {
        "samples": len(gens),
        "decoded_tokens": sum(g.completion_tokens for g in gens),
        "elapsed_s": time.perf_counter() - started,
    }


def draw_samples(
    backend: Backend, prompt_ids: Sequence[int], params: SamplingParams, n: int, rng: np.random.Generator, progress: Progress | None
) -> list[Generation]:
    """``n`` independent completions; each gets its own child rng so results do not depend on batching."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    rngs = rng.spawn(n)
    if backend.batches:
        gens = backend.generate_batch([prompt_ids] * n, params, rngs)
        if progress:
            progress(n, n)
        return gens
    gens: list[Generation] = []
    for i, r in enumerate(rngs):
        gens.append(backend.generate(prompt_ids, params, r))
        if progress:
            progress(i + 1, n)
    return gens


def single_draw_params(method: str, params: SamplingParams | None) -> SamplingParams:
    """The sampling settings ``greedy`` or ``sample`` decode with (greedy keeps only max_tokens, stop, entropies)."""
    p = params or SamplingParams()
    if method == "greedy":
        return SamplingParams(max_tokens=p.max_tokens, temperature=0.0, stop=p.stop, return_entropy=p.return_entropy)
    return p


def single_draw_result(method: str, params: SamplingParams, g: Generation, started: float,
                       extract: Extract = extract_answer) -> MethodResult:
    """The result of a one-draw method; the eval harness builds the same from batched draws."""
    return MethodResult(method, asdict(params), (g,), 0, extract(g.text), _stats([g], started))


# Methods whose one draw per prompt can be decoded in a batch across prompts.
SINGLE_DRAW_METHODS = ("greedy", "sample")


@register_method("greedy")
def greedy(backend: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
           params: SamplingParams | None = None, extract: Extract = extract_answer) -> MethodResult:
    """Argmax decoding; ``params`` other than max_tokens/stop are ignored."""
    started = time.perf_counter()
    p = single_draw_params("greedy", params)
    return single_draw_result("greedy", p, backend.generate(prompt_ids, p, rng), started, extract)


@register_method("sample")
def sample(backend: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
           params: SamplingParams | None = None, extract: Extract = extract_answer) -> MethodResult:
    """One sample at the given temperature / top-k / top-p."""
    started = time.perf_counter()
    p = single_draw_params("sample", params)
    return single_draw_result("sample", p, backend.generate(prompt_ids, p, rng), started, extract)


def draw_until(
    backend: Backend, prompt_ids: Sequence[int], params: SamplingParams, token_budget: int, rng: np.random.Generator,
    progress: Progress | None
) -> list[Generation]:
    """Independent samples until their decoded tokens reach ``token_budget`` (at least one sample).

    This is how best-of-N is matched to another method's compute: N is
    whatever makes the decoded tokens equal, rejected proposals included.
    """
    if not isinstance(token_budget, int) or token_budget < 1:
        raise ConfigError(f"token_budget must be an integer >= 1, got {token_budget!r}")
    gens: list[Generation] = []
    spent = 0
    while spent < token_budget:
        (child,) = rng.spawn(1)
        gens.append(backend.generate(prompt_ids, params, child))
        spent += gens[-1].completion_tokens
        if progress:
            progress(min(spent, token_budget), token_budget)
    return gens


@register_method("best-of-n")
def best_of_n(backend: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
              params: SamplingParams | None = None, n: int = 4, token_budget: int | None = None,
              score: Callable[[Generation], float] = mean_logprob, extract: Extract = extract_answer) -> MethodResult:
    """``n`` samples (or as many as fit ``token_budget`` decoded tokens); answer with the highest-scoring one.

    Ties go to the first. The default score is the mean base log-likelihood,
    the papers' pick for compute-matched baselines; pass a verifier-based
    score to pick by correctness instead.
    """
    started = time.perf_counter()
    p = params or SamplingParams()
    if token_budget is not None:
        gens = draw_until(backend, prompt_ids, p, token_budget, rng, progress)
    else:
        gens = draw_samples(backend, prompt_ids, p, n, rng, progress)
    scores = [score(g) for g in gens]
    best = int(np.argmax(scores))
    stats = {**_stats(gens, started), "scores": scores}
    config = {**asdict(p), "n": len(gens), "token_budget": token_budget, "score": getattr(score, "__name__", "custom")}
    return MethodResult("best-of-n", config, tuple(gens), best,
                        extract(gens[best].text), stats)


@register_method("majority")
def majority(backend: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
             params: SamplingParams | None = None, n: int = 4, extract: Extract = extract_answer) -> MethodResult:
    """``n`` samples; answer with the most common extracted answer.

    Ties go to the answer seen first. Samples with no extractable answer do not
    vote; if none has one, the first sample is returned with answer None.
    """
    started = time.perf_counter()
    p = params or SamplingParams()
    gens = draw_samples(backend, prompt_ids, p, n, rng, progress)
    answers = [extract(g.text) for g in gens]
    votes = Counter(a for a in answers if a is not None)
    winner = max(votes, key=lambda a: (votes[a], -answers.index(a))) if votes else None
    chosen = answers.index(winner) if winner is not None else 0
    stats = {**_stats(gens, started), "votes": dict(votes)}
    return MethodResult("majority", {**asdict(p), "n": n}, tuple(gens), chosen, winner, stats)
