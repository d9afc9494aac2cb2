"""Toy language models whose whole sequence distribution can be enumerated.

A toy model is a vocabulary of strings plus a function from the context (all
token ids so far, prompt included) to next-token logits. It goes through the
same sampling kernel and the same result shape as the real backends, so a
sampler tested on a toy model is tested as it runs on a real one; and because
``sequence_logprobs`` enumerates every completion exactly, samplers can be
checked against the true target distribution, not against another sampler.

>>> toy = ToyBackend.from_table(["a", "b", "$"], {(): {"a": 0.5, "b": 0.5}, ("a",): {"$": 1.0}, ("b",): {"$": 1.0}}, eos="$")
>>> sorted(round(float(np.exp(v)), 3) for v in toy.sequence_logprobs([], max_tokens=3).values())
[0.5, 0.5]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from strop.backends.base import (
    ENTROPY,
    EXACT_LOGPROBS,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    TOPK_BASE,
    Backend,
    Generation,
    OnToken,
    SamplingParams,
    Scored,
)
from strop.backends.logits import log_softmax, score_rows
from strop.errors import ConfigError

NextLogits = Callable[[tuple[int, ...]], np.ndarray]


class ToyBackend(Backend):
    """An explicit next-token model over a small vocabulary.

    Args:
        vocab: token strings; token id = index. Tokenisation is greedy
            longest-match over these strings.
        next_logits: context ids (prompt + generated so far) -> logits (V,).
            Use ``-inf`` for impossible tokens. Must be deterministic.
        eos: the end-of-sequence token (string or id).
        context_length: prompt + completion limit.
    """

    name = "toy"
    capabilities = frozenset({LOGPROBS, ENTROPY, SCORE, PREFIX_CACHE, EXACT_LOGPROBS, TOPK_BASE})
    model_source = None
    load_hint = "the toy backend is built in code: strop.backends.toy.ToyBackend(vocab, next_logits, eos=...)"

    def __init__(
        self,
        vocab: Sequence[str],
        next_logits: NextLogits,
        *,
        eos: str | int,
        context_length: int = 4096,
        model_id: str = "toy",
    ) -> None:
        if len(vocab) < 2 or len(set(vocab)) != len(vocab) or any(not v for v in vocab):
            raise ConfigError(f"toy vocab must hold >= 2 distinct non-empty strings, got {list(vocab)!r}")
        self.vocab = tuple(vocab)
        self._index = {v: i for i, v in enumerate(self.vocab)}
        eos_id = eos if isinstance(eos, int) else self._index.get(eos, -1)
        if not 0 <= eos_id < len(self.vocab):
            raise ConfigError(f"toy eos {eos!r} is not in the vocabulary")
        self.eos_id = eos_id
        self.eos_token_ids = frozenset({eos_id})
        self.eos_token = self.vocab[eos_id]
        self.context_length = context_length
        self.model_id = model_id
        self._fn = next_logits
        self._cached = lru_cache(maxsize=1 << 16)(self._checked_logits)

    @classmethod
    def from_table(
        cls,
        vocab: Sequence[str],
        table: Mapping[tuple[str, ...], Mapping[str, float]],
        *,
        eos: str,
        order: int | None = None,
        **kwargs: object,
    ) -> ToyBackend:
        """A model from explicit next-token probabilities.

        ``table`` maps a context (the last ``order`` tokens of the whole
        context as strings, prompt included; the whole context if ``order`` is
        None) to a {next token: probability} dict. The context is the only
        input, as for any language model: a backend cannot tell a prompt from
        a kept prefix of an earlier completion. A context missing from the
        table is an error at sampling time.
        """
        index = {v: i for i, v in enumerate(vocab)}
        rows: dict[tuple[str, ...], np.ndarray] = {}
        for ctx, probs in table.items():
            row = np.full(len(vocab), -np.inf)
            total = sum(probs.values())
            if any(p < 0 for p in probs.values()) or not np.isclose(total, 1.0):
                raise ConfigError(f"toy table row {ctx!r} must hold probabilities >= 0 summing to 1, got {dict(probs)!r}")
            for tok, p in probs.items():
                if tok not in index:
                    raise ConfigError(f"toy table row {ctx!r} names {tok!r}, which is not in the vocabulary")
                if p > 0:
                    row[index[tok]] = np.log(p)
            rows[tuple(ctx)] = row

        def next_logits(context: tuple[int, ...]) -> np.ndarray:
            key = tuple(vocab[i] for i in context)
            if order is not None:
                key = key[len(key) - order :] if order else ()
            if key not in rows:
                raise ConfigError(f"toy table has no row for context {key!r}")
            return rows[key]

        return cls(vocab, next_logits, eos=eos, **kwargs)  # type: ignore[arg-type]

    # ----------------------------------------------------------- tokenizer
    def tokenize(self, text: str) -> list[int]:
        ids, i = [], 0
        by_len = sorted(self.vocab, key=len, reverse=True)
        while i < len(text):
            for v in by_len:
                if text.startswith(v, i):
                    ids.append(self._index[v])
                    i += len(v)
                    break
            else:
                raise ConfigError(f"toy tokenizer: no token matches {text[i:i + 10]!r}")
        return ids

    def detokenize(self, ids: Sequence[int]) -> str:
        return "".join(self.vocab[i] for i in ids)

    # ------------------------------------------------------------- model
    def _checked_logits(self, context: tuple[int, ...]) -> np.ndarray:
        row = np.asarray(self._fn(context), dtype=np.float64)
        if row.shape != (len(self.vocab),) or not np.any(np.isfinite(row)):
            raise ConfigError(f"toy next_logits returned shape {row.shape} / no finite entry for context {context!r}")
        return row

    def logits(self, context: Sequence[int]) -> np.ndarray:
        """Next-token logits after ``context`` (memoised; the model is deterministic)."""
        return self._cached(tuple(context))

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator, *,
                 on_token: OnToken | None = None) -> Generation:
        started = time.perf_counter()
        ctx = list(prompt_ids)
        plen = len(ctx)
        self.check_fits(max(plen, 1))

        def feed(tok: int) -> np.ndarray:
            ctx.append(tok)
            return self.logits(ctx)

        trace, finish, text = self._decode(self.logits(ctx), feed, plen, params, rng, on_token)
        return self._result(trace, finish, text, plen, plen, started, params)

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        ctx, plen = list(prompt_ids), len(prompt_ids)
        rows = []
        for tok in continuation_ids:
            rows.append(self.logits(ctx))
            ctx.append(int(tok))
        if not rows:
            return Scored(np.zeros(0), np.zeros(0) if entropies else None, plen)
        lp, ent = score_rows(np.stack(rows), np.asarray(continuation_ids), entropies)
        return Scored(lp, ent, plen)

    def sequence_logprobs(self, prompt_ids: Sequence[int], max_tokens: int, temperature: float = 1.0, *,
                          log_probs: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[tuple[int, ...], float]:
        """Every completion of at most ``max_tokens`` tokens and its exact log-probability.

        Completions end at EOS or at ``max_tokens`` (a length cut-off is a
        terminal outcome too), so the probabilities sum to 1. ``temperature``
        enumerates the tempered proposal instead of the base model;
        ``log_probs`` (a logits row -> log-probs, -inf off the support)
        enumerates any other per-token distribution, e.g. a top-k proposal.
        Exponential in length: for small models only.
        """
        out: dict[tuple[int, ...], float] = {}
        plen = len(prompt_ids)

        def walk(ctx: list[int], logp: float) -> None:
            gen = tuple(ctx[plen:])
            if gen and (gen[-1] == self.eos_id or len(gen) == max_tokens):
                out[gen] = logp
                return
            logits = self.logits(ctx)
            row = log_probs(logits) if log_probs is not None else log_softmax(logits / temperature)
            for tok in np.flatnonzero(np.isfinite(row)):
                walk(ctx + [int(tok)], logp + float(row[tok]))

        walk(list(prompt_ids), 0.0)
        return out
