"""The backend contract: one parameter type, one result shape, one base class.

Methods (power sampling, RC, best-of-n, training rollouts) talk to models only
through ``Backend``. They ask for capabilities by name (``backend.require``),
never for a particular backend class, so a method written against the toy
model runs unchanged on llama.cpp, transformers or a remote server.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from strop.backends.chat import Message
from strop.backends.logits import Draw, draw

# The data shapes live in strop.backends.shapes; imported from here too, as they always were.
from strop.backends.shapes import (  # noqa: F401
    ENTROPY,
    EXACT_LOGPROBS,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    TOPK_BASE,
    FinishReason,
    Generation,
    GenRequest,
    OnToken,
    SamplingParams,
    Scored,
    TokenTrace,
)
from strop.backends.text import chat_ids
from strop.backends.thinking import THINK, ThinkTags
from strop.errors import CapabilityError, ConfigError, ContextOverflowError


class Backend(ABC):
    """A language model that strop's methods can sample from and score with.

    Token-level API: prompts and continuations are lists of token ids, so that
    samplers can cut and resample sequences exactly. ``chat_prompt`` turns chat
    messages into ids with the model's own template.
    """

    name: ClassVar[str]
    capabilities: frozenset[str] = frozenset()
    #: How ``load_backend`` finds the model: "embedded" (the embedded GGUF when none is named), "named" (only the
    #: model the caller names: a server's), or None (not loaded by name at all; ``load_hint`` says how to build it).
    model_source: ClassVar[str | None] = "embedded"
    load_hint: ClassVar[str] = ""
    #: whether ``generate_many`` runs rows together (else it loops over ``generate``)
    batches: ClassVar[bool] = False
    #: most rows one ``generate_many`` call should hold (the engine fills rounds up to it)
    max_batch: int = 1

    #: a human-readable id of the loaded model (a path or hub id)
    model_id: str
    #: token ids that end a completion
    eos_token_ids: frozenset[int]
    #: tokens the model can attend to (prompt + completion)
    context_length: int
    #: the model's chat template (jinja2), or None if it has none
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    #: extra variables the chat template is rendered with, e.g. ``{"enable_thinking": False}`` for Qwen3
    #: (``--chat-template-kwarg``); a template that does not read a variable ignores it
    chat_template_kwargs: Mapping[str, Any] = MappingProxyType({})
    #: the tags around the model's hidden reasoning (``strop.backends.thinking``): stripped before answers are
    #: extracted and summaries carried, and counted as ``thinking_tokens``
    think_tags: ThinkTags = THINK

    # ----------------------------------------------------------- tokenizer
    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens parsed, no BOS added (for prompts written with their markers)."""

    def tokenize_text(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text: a control token's text (``<|im_end|>``) stays text, no BOS added.

        The default suits backends whose ``tokenize`` parses no control tokens
        (``control_texts()`` empty); backends with control tokens override both.
        """
        return self.tokenize(text)

    def control_texts(self) -> tuple[str, ...]:
        """The text of every control token ``tokenize`` parses and ``tokenize_text`` leaves as text."""
        return ()

    @abstractmethod
    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens render as their text."""

    def chat_prompt(self, messages: Sequence[Message] | str, *, template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        """Prompt ids for a chat, rendered with the model's own template.

        Only the template's own markers become control tokens: message contents
        (questions, problems, a model's earlier text) are tokenised as plain
        text (``strop.backends.text``), and invalid Unicode is a ``ConfigError``.
        The template sees ``chat_template_kwargs`` as variables (chat-template
        switches such as ``enable_thinking``), updated by ``template_kwargs``
        for this call.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return chat_ids(self, messages, template_kwargs={**self.chat_template_kwargs, **(template_kwargs or {})})

    # ------------------------------------------------------------ sampling
    @abstractmethod
    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator, *,
                 on_token: OnToken | None = None) -> Generation:
        """Draw one completion of ``prompt_ids``.

        ``rng`` is the only source of randomness: the same rng state and the
        same prompt give the same tokens. Backends with ``prefix_cache`` reuse
        the longest cached prefix of ``prompt_ids``, so resampling a suffix
        (``prompt + kept_tokens``) costs only the new tokens. ``on_token`` sees
        each token id as it is drawn.
        """

    def generate_many(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """One completion per request, each with its own settings and rng.

        The default runs them one by one; backends that batch (``batches``)
        override it and decode the rows together. Either way row i's tokens
        come only from ``requests[i].rng``.
        """
        return [self.generate(r.prompt_ids, r.params, r.rng, **({"on_token": r.on_token} if r.on_token else {})) for r in requests]

    def _generate_many_streamed(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """``generate_many`` for a backend whose ``generate_stream`` admits rows mid-decode: every request through it."""
        out: list[Generation | None] = [None] * len(requests)
        rest = list(enumerate(requests))
        first, rest = rest[: self.max_batch], rest[self.max_batch :]

        def more(free: int) -> list[tuple[int, GenRequest]]:
            nonlocal rest
            take, rest = rest[:free], rest[free:]
            return take

        def done(i: int, g: Generation) -> None:
            out[i] = g

        self.generate_stream(first, more, done)
        return out  # type: ignore[return-value]

    def generate_stream(self, first: Sequence[tuple[Any, GenRequest]], more: Callable[[int], Sequence[tuple[Any, GenRequest]]],
                        done: Callable[[Any, Generation], None], *, max_rows: int | None = None) -> None:
        """Continuous decoding: rows join and finish independently, at most ``max_rows`` at once.

        ``first`` and every ``more(free)`` give (key, request) rows to start;
        ``done(key, generation)`` is called as each row finishes, and may make
        new rows available to the next ``more``. Returns when no row is active
        and ``more`` gives nothing. The default runs rounds of
        ``generate_many``; backends that can add rows mid-decode override it.
        """
        limit = max(1, max_rows or self.max_batch)
        pending = list(first)
        while pending:
            gens = self.generate_many([r for _, r in pending])
            for (key, _), g in zip(pending, gens):
                done(key, g)
            pending = list(more(limit))

    def _advance(self, rows: Sequence[ActiveRow], draws: Callable[[ActiveRow], Draw],
                 done: Callable[[Any, Generation], None]) -> list[ActiveRow]:
        """One decode step's bookkeeping in ``generate_stream``: each row takes its drawn token; finished rows go to
        ``done``; returns the rows still decoding."""
        still: list[ActiveRow] = []
        for r in rows:
            r.trace.add(draws(r))
            if r.req.on_token is not None:
                r.req.on_token(r.trace.tokens[-1])
            end = self._finished(r.trace, r.req.params, r.budget)
            if end is None:
                still.append(r)
                continue
            r.finish, r.text = end
            done(r.key, self._result(r.trace, r.finish, r.text, len(r.ids), r.keep, r.started, r.req.params))
        return still

    def generate_batch(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, rngs: Sequence[np.random.Generator]
    ) -> list[Generation]:
        """One completion per prompt with shared settings, each with its own rng (``generate_many`` underneath)."""
        if len(prompts) != len(rngs):
            raise ConfigError(f"generate_batch needs one rng per prompt, got {len(prompts)} prompts and {len(rngs)} rngs")
        return self.generate_many([GenRequest(p, params, r) for p, r in zip(prompts, rngs)])

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        """Base log-probs (and entropies) of ``continuation_ids`` after ``prompt_ids``."""
        raise CapabilityError(self.name, SCORE)

    # ----------------------------------------------------------- utilities
    def require(self, *capabilities: str) -> None:
        """Raise ``CapabilityError`` naming the first capability this backend lacks."""
        for cap in capabilities:
            if cap not in self.capabilities:
                raise CapabilityError(self.name, cap)

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the model. Idempotent."""

    def reset_cache(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Forget any cached prefix, so the next call computes its whole prompt afresh.

        Reusing a cached prefix is exact in arithmetic but not in float
        rounding (a prompt evaluated in other chunks rounds differently), so a
        caller that needs an output independent of earlier calls (the server,
        between requests) resets first. Default: nothing is cached.
        """

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_fits(self, prompt_len: int, extra: int = 1) -> None:
        if prompt_len == 0:
            raise ContextOverflowError("the prompt is empty: give at least one token")
        if prompt_len + extra > self.context_length:
            raise ContextOverflowError(
                f"the prompt has {prompt_len} tokens but the model's context holds {self.context_length}"
                f" (needs room for {extra} more); shorten the prompt"
            )

    def _decode(
        self,
        first_logits: np.ndarray,
        feed: Callable[[int], np.ndarray],
        prompt_len: int,
        params: SamplingParams,
        rng: np.random.Generator,
        on_token: OnToken | None = None,
    ) -> tuple[TokenTrace, FinishReason, str]:
        """The shared single-sequence sampling loop.

        ``first_logits`` predict the first completion token; ``feed(token)``
        appends a token to the model's context and returns the logits that
        follow it. Generation stops at EOS, a stop string, ``max_tokens`` or
        the end of the context window.
        """
        budget = min(params.max_tokens, self.context_length - prompt_len)
        trace = TokenTrace()
        logits = first_logits
        while True:
            trace.add(draw_params(logits, params, rng))
            if on_token is not None:
                on_token(trace.tokens[-1])
            end = self._finished(trace, params, budget)
            if end is not None:
                return trace, end[0], end[1]
            logits = feed(trace.tokens[-1])

    def _finished(self, trace: TokenTrace, params: SamplingParams, budget: int) -> tuple[FinishReason, str] | None:
        """(finish reason, text) if the sequence in ``trace`` has ended, else None."""
        if trace.tokens[-1] in self.eos_token_ids:
            # EOS is a control token: it belongs to the token ids, not to the text.
            return "eos", self.detokenize(trace.tokens[:-1])
        if params.stop:
            text = self.detokenize(trace.tokens)
            cut = _first_stop(text, params.stop)
            if cut is not None:
                return "stop", text[:cut]
        if len(trace.tokens) >= budget:
            return "length", self.detokenize(trace.tokens)
        return None

    def _result(
        self,
        trace: TokenTrace,
        finish: FinishReason,
        text: str,
        prompt_len: int,
        cached: int,
        started: float,
        params: SamplingParams,
        elapsed_s: float | None = None,
    ) -> Generation:
        return Generation(
            token_ids=tuple(trace.tokens),
            text=text,
            base_logprobs=np.asarray(trace.base, dtype=np.float64),
            proposal_logprobs=np.asarray(trace.proposal, dtype=np.float64),
            entropies=np.asarray(trace.entropy, dtype=np.float64) if params.return_entropy else None,
            finish_reason=finish,
            prompt_tokens=prompt_len,
            cached_prompt_tokens=cached,
            elapsed_s=time.perf_counter() - started if elapsed_s is None else elapsed_s,
        )


def draw_params(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> Draw:
    """``draw`` with a request's sampling settings."""
    return draw(logits, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p, rng=rng,
                want_entropy=params.return_entropy, base_k=params.top_k if params.base_top_k else None)


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefixes(held: Sequence[Sequence[int]], ids: Sequence[int], limit: int) -> list[int]:
    """How many leading tokens of ``ids`` each slot's tokens ``held`` share (at most ``limit``): one pass, read by
    ``pick_slot`` and ``longest_holder``."""
    return [min(common_prefix_len(toks, ids), limit) for toks in held]


def pick_slot(held: Sequence[Sequence[int]], last_used: Sequence[int], ids: Sequence[int], limit: int,
              busy: set[int], shared: Sequence[int] | None = None) -> tuple[int, int]:
    """The cache slot for a new sequence ``ids``: the slot not in ``busy`` whose tokens ``held`` share the longest
    prefix with ``ids`` (least recently used on ties), and how many of its tokens to reuse (at most ``limit``).
    ``shared``: ``shared_prefixes(held, ids, limit)`` when the caller has it already."""
    shared = shared_prefixes(held, ids, limit) if shared is None else shared
    reuse = {s: shared[s] for s in range(len(held)) if s not in busy}
    slot = max(reuse, key=lambda s: (reuse[s], -last_used[s]))
    return slot, reuse[slot]


def longest_holder(shared: Sequence[int], skip: int) -> tuple[int, int]:
    """The slot other than ``skip`` sharing the longest prefix (``shared``: ``shared_prefixes``), and that length;
    (-1, 0) when no other slot shares any. Busy slots count: their cached prefix can be copied."""
    best, length = -1, 0
    for s, c in enumerate(shared):
        if s != skip and c > length:
            best, length = s, c
    return best, length


@dataclass
class ActiveRow:
    """One request being decoded in a cache slot (the backends' ``generate_stream``)."""

    req: GenRequest
    ids: list[int]
    slot: int
    keep: int  # prompt tokens reused from the slot's cache (or copied from another row)
    budget: int
    copy_from: int | None = None  # index of the row whose prefix this one copies (llamacpp)
    key: Any = None  # the caller's name for this row
    started: float = 0.0
    trace: TokenTrace = field(default_factory=TokenTrace)
    logits: np.ndarray | None = None
    finish: FinishReason | None = None
    text: str = ""
