"""The baseline methods: greedy, sampling, best-of-n and majority vote, as step machines.

Best-of-n and majority vote ask for ``n`` independent samples in one yield
(the engine decodes them together, with other attempts' rows) and differ only
in how they choose: best-of-n by a score (mean log-likelihood by default, the
pick the power-sampling papers use for compute-matched baselines), majority
vote by the most common extracted answer (answers that state the same value
are one vote by default: ``strop.verifiers.voting``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import numpy as np

from strop.backends.base import Backend, Generation, GenRequest, SamplingParams
from strop.errors import ConfigError
from strop.methods.base import Events, MethodResult, MethodSpec, Progress, register_method
from strop.methods.options import Option, Settings
from strop.verifiers.extract import extract_answer
from strop.verifiers.voting import Same, check_vote, group_answers, vote_relation, winning_group

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


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")


def sample_steps(prompt_ids: Sequence[int], params: SamplingParams, n: int, rng: np.random.Generator, progress: Progress | None):
    """``n`` independent completions in one yield; each gets its own child rng, so results do not depend on batching."""
    _check_n(n)
    gens = yield [GenRequest(prompt_ids, params, r) for r in rng.spawn(n)]
    if progress:
        progress(n, n)
    return gens


def single_draw_params(method: str, params: SamplingParams | None) -> SamplingParams:
    """The sampling settings ``greedy`` or ``sample`` decode with (greedy keeps only max_tokens, stop, entropies)."""
    p = params or SamplingParams()
    if method == "greedy":
        return SamplingParams(max_tokens=p.max_tokens, temperature=0.0, stop=p.stop, return_entropy=p.return_entropy)
    return p


def _single(method: str, prompt_ids: Sequence[int], rng: np.random.Generator, params: SamplingParams | None, extract: Extract,
            on_token: Callable[[int], None] | None):
    started = time.perf_counter()
    p = single_draw_params(method, params)
    (g,) = yield [GenRequest(prompt_ids, p, rng, on_token)]
    return MethodResult(method, asdict(p), (g,), 0, extract(g.text), _stats([g], started))


def greedy(model: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
           params: SamplingParams | None = None, extract: Extract = extract_answer, events: Events | None = None):
    """Argmax decoding; ``params`` other than max_tokens/stop are ignored. ``events("token", ...)`` sees each token."""
    return (yield from _single("greedy", prompt_ids, rng, params, extract, _token_events(model, events)))


def sample(model: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
           params: SamplingParams | None = None, extract: Extract = extract_answer, events: Events | None = None):
    """One sample at the given temperature / top-k / top-p. ``events("token", ...)`` sees each token."""
    return (yield from _single("sample", prompt_ids, rng, params, extract, _token_events(model, events)))


def _token_events(model: Backend, events: Events | None) -> Callable[[int], None] | None:
    """Turn drawn token ids into ``token`` events with their text (for streaming), or None."""
    if events is None:
        return None
    eos = model.eos_token_ids

    def on_token(tok: int) -> None:
        if tok not in eos:
            events("token", {"token_id": tok, "text": model.detokenize([tok])})

    return on_token


def draw_until(prompt_ids: Sequence[int], params: SamplingParams, token_budget: int, rng: np.random.Generator, progress: Progress | None):
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
        (g,) = yield [GenRequest(prompt_ids, params, child)]
        gens.append(g)
        spent += g.completion_tokens
        if progress:
            progress(min(spent, token_budget), token_budget)
    return gens


def best_of_n(model: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
              params: SamplingParams | None = None, n: int = 4, token_budget: int | None = None,
              score: Callable[[Generation], float] = mean_logprob, extract: Extract = extract_answer):
    """``n`` samples (or as many as fit ``token_budget`` decoded tokens); answer with the highest-scoring one.

    Ties go to the first. The default score is the mean base log-likelihood,
    the papers' pick for compute-matched baselines; pass a verifier-based
    score to pick by correctness instead.
    """
    started = time.perf_counter()
    p = params or SamplingParams()
    if token_budget is not None:
        gens = yield from draw_until(prompt_ids, p, token_budget, rng, progress)
    else:
        gens = yield from sample_steps(prompt_ids, p, n, rng, progress)
    scores = [score(g) for g in gens]
    best = int(np.argmax(scores))
    stats = {**_stats(gens, started), "scores": scores}
    config = {**asdict(p), "n": len(gens), "token_budget": token_budget, "score": getattr(score, "__name__", "custom")}
    return MethodResult("best-of-n", config, tuple(gens), best, extract(gens[best].text), stats)


def majority(model: Backend, prompt_ids: Sequence[int], rng: np.random.Generator, *, progress: Progress | None = None,
             params: SamplingParams | None = None, n: int = 4, vote: str = "equivalence", same: Same | None = None,
             extract: Extract = extract_answer):
    """``n`` samples; answer with the most common extracted answer.

    ``vote`` decides which answers are one vote (``strop.verifiers.voting``):
    "equivalence" (math-verify in a checker process: ``0.5`` and
    ``\\frac{1}{2}`` are one vote) or "string" (identical strings); ``same``,
    any symmetric relation, overrides it. The answer is the winning group's
    first member, and ``stats["votes"]`` counts each group under that member.
    Ties go to the group seen first. Samples with no extractable answer do not
    vote; if none has one, the first sample is returned with answer None.
    """
    check_vote(vote)
    started = time.perf_counter()
    p = params or SamplingParams()
    gens = yield from sample_steps(prompt_ids, p, n, rng, progress)
    answers = [extract(g.text) for g in gens]
    groups = group_answers(answers, same or vote_relation(vote))
    best = winning_group(groups)
    chosen = groups.index(best) if best is not None else 0
    votes = {answers[groups.index(g)]: c for g, c in Counter(g for g in groups if g is not None).items()}
    stats = {**_stats(gens, started), "votes": votes}
    return MethodResult("majority", {**asdict(p), "n": n, "vote": vote}, tuple(gens), chosen,
                        answers[chosen] if best is not None else None, stats)


# ------------------------------------------------------------ registration
# Sampling settings, read by most methods (power and RC list them too): declared here, once.
# temperature, top_p and max_tokens reach the server as OpenAI's own request fields, not in the strop object.
TEMPERATURE = Option("temperature", float, 1.0, "Sampling temperature.", ge=0.0, server=False)
TOP_P = Option("top_p", float, 1.0, "Nucleus sampling mass, in (0, 1].", gt=0.0, le=1.0, server=False)
TOP_K = Option("top_k", int, None, "Keep only the k most likely tokens.", nullable=True, ge=1)
MAX_TOKENS = Option("max_tokens", int, 256, "Most tokens to generate per sample (power: per chain).", ge=1, server=False)
N = Option("n", int, 4, "Samples for best-of-n and majority; ttrl: samples per GRPO group.", ge=1, flags=("-n", "--n"))
VOTE = Option("vote", str, "equivalence", "majority (and eval's maj@k): which answers are one vote: equivalence (math-verify, so 0.5"
                                          " and \\frac{1}{2} are one vote) | string (identical answers only).",
              choices=("equivalence", "string"))
SAMPLING = (TEMPERATURE, TOP_P, TOP_K, MAX_TOKENS)


def _params(f: Settings) -> SamplingParams:
    return SamplingParams(max_tokens=f.max_tokens, temperature=f.temperature, top_p=f.top_p, top_k=f.top_k)


def _with_n(f: Settings) -> dict:
    _check_n(f.n)
    return {"params": _params(f), "n": f.n}


def _majority(f: Settings) -> dict:
    return {**_with_n(f), "vote": check_vote(f.vote)}


def _one_budget(kw: dict) -> int:
    return kw["params"].max_tokens


def _n_budget(kw: dict) -> int:
    return kw["params"].max_tokens * kw.get("n", 1)


register_method(MethodSpec("greedy", greedy, lambda f: {"params": replace(_params(f), temperature=0.0)}, _one_budget,
                           takes_stop=True, events=("token",), help="argmax decoding", options=(MAX_TOKENS,)))
register_method(MethodSpec("sample", sample, lambda f: {"params": _params(f)}, _one_budget,
                           takes_stop=True, events=("token",), help="one sample at --temperature / --top-p / --top-k", options=SAMPLING))
register_method(MethodSpec("best-of-n", best_of_n, _with_n, _n_budget, takes_stop=True,
                           help="n samples; answers with the highest mean log-likelihood", options=(*SAMPLING, N)))
register_method(MethodSpec("majority", majority, _majority, _n_budget, takes_stop=True,
                           help="n samples; answers with the most common extracted answer (--vote: equivalence or string)",
                           options=(*SAMPLING, N, VOTE)))
