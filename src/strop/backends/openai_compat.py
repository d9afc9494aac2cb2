"""Any OpenAI-compatible completions server (vLLM, SGLang, llama.cpp server) as a backend.

Users with GPUs or clusters keep their serving fleet; strop sends it
completion requests with log-probs and turns the answers into the common
``Generation`` shape.

What a server gives and what strop estimates (named in ``approximations``):
- base log-probs of sampled tokens: exact, provided the server reports raw
  log-probs (before temperature/top-k). llama.cpp's server does; vLLM does
  with its default ``--logprobs-mode raw_logprobs``.
- proposal log-probs: exact at temperature 1 with no top-k/top-p (proposal =
  base) and for greedy; otherwise recomputed from the top-``top_logprobs``
  entries (``proposal_logprobs_topk``).
- entropies: from the top entries, the rest of the mass spread evenly over
  the rest of the vocabulary (``entropy_topk``).
- the EOS token's log-prob, which servers leave out of the completion, is
  fetched with one scoring request (servers cache the prefix), with its top
  log-probs when its proposal log-prob or entropy is rebuilt from them.

Reproducibility: the rng picks the server's ``seed``, so the same rng state
should give the same tokens; how faithfully depends on the server. With
llama-cpp-python's server the first request with a seed was seen to differ
from later identical ones; greedy decoding is deterministic.

Token ids: the server returns token strings; strop maps each back through a
local tokenizer (``tokenizer=``, default the embedded model's vocabulary) and
refuses an answer it cannot map one-to-one rather than guess.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from strop.backends.base import (
    ENTROPY,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    TOPK_BASE,
    Backend,
    FinishReason,
    Generation,
    GenRequest,
    OnToken,
    SamplingParams,
    Scored,
)
from strop.backends.logits import proposal_support
from strop.backends.vocab import Vocab, load_vocab
from strop.errors import BackendError, CapabilityError, ConfigError, ModelLoadError

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def _topk_entropy(top: dict[str, float], n_vocab: int) -> float:
    """Entropy estimate from the top entries; the remaining mass spread evenly over the other tokens."""
    lp = np.array(list(top.values()), dtype=np.float64)
    p = np.exp(lp)
    h = float(-np.sum(p * lp))
    rest, others = 1.0 - float(p.sum()), max(n_vocab - len(lp), 1)
    if rest > 1e-12:
        h -= rest * math.log(rest / others)
    return h


def _from_content(content: Any) -> tuple[list[str], list[float | None], list[dict[str, float] | None]]:
    """Completion log-probs in the chat shape (``logprobs.content``: one entry per token with its ``top_logprobs``),
    as llama.cpp's ``llama-server`` answers on /v1/completions, turned into the legacy lists. Entries that carry
    the token ``id`` become ``token_id:<id>`` pieces (vLLM's convention), so no token text is mapped back: a
    byte-fallback piece's text does not survive the round trip."""

    def name(c: Any) -> str:
        return f"token_id:{int(c['id'])}" if c.get("id") is not None else c["token"]

    tokens, lps, tops = [], [], []
    for c in content:
        tokens.append(name(c))
        lps.append(c["logprob"])
        alts = c.get("top_logprobs")
        tops.append({name(a): a["logprob"] for a in alts} if alts else None)
    return tokens, lps, tops


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible ``/v1/completions`` endpoint.

    Args:
        model: the server's model name (default: the first one it lists).
        base_url: the server, e.g. ``http://127.0.0.1:8000/v1`` ($OPENAI_BASE_URL).
        api_key: $OPENAI_API_KEY, or a placeholder for servers without auth.
        tokenizer: GGUF file, model folder or hub id whose tokenizer matches
            the server's model (default: the embedded SmolLM2 GGUF).
        top_logprobs: how many alternatives to ask for when estimating
            entropies or tempered proposal log-probs.
        timeout: seconds per request.
        concurrency: requests ``generate_many`` keeps in flight at once, so a
            server that batches (vLLM, SGLang, llama.cpp with parallel slots)
            decodes them together; 1 sends them one at a time.
    """

    name = "openai"
    capabilities = frozenset({LOGPROBS, ENTROPY, SCORE, PREFIX_CACHE})
    model_source = "named"  # the server's model name; no default
    batches = True

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        tokenizer: str | None = None,
        top_logprobs: int = 20,
        timeout: float = 120.0,
        context_length: int | None = None,
        concurrency: int = 8,
    ) -> None:
        try:
            import openai
        except ImportError as e:
            raise ModelLoadError("the openai backend needs the openai package: pip install openai") from e
        if not 1 <= top_logprobs <= 100:
            raise ConfigError(f"top_logprobs must be in [1, 100], got {top_logprobs}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.max_batch = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._openai = openai
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "strop", timeout=timeout, max_retries=1
        )
        self.top_logprobs = top_logprobs
        if tokenizer is None:
            from strop.models import embedded_model_path

            tokenizer = str(embedded_model_path())
        self.vocab: Vocab = load_vocab(tokenizer)
        self.model_id = model or self._first_model()
        self.context_length = context_length or self.vocab.context_length
        self.chat_template = self.vocab.chat_template
        self.eos_token_ids = self.vocab.eos_token_ids
        self.bos_token = self.vocab.bos_token
        self.eos_token = self.vocab.eos_token

    # ---------------------------------------------------------- transport
    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        o = self._openai
        try:
            return fn(**kwargs)
        except o.APIConnectionError as e:
            raise BackendError(f"cannot reach the server at {self.base_url} ({what}): {e.__cause__ or e}") from e
        except o.APIStatusError as e:
            raise BackendError(f"the server at {self.base_url} answered {e.status_code} to {what}: {_short(e.message)}") from e
        except o.OpenAIError as e:
            raise BackendError(f"the server at {self.base_url} failed on {what}: {_short(str(e))}") from e
        except ValueError as e:  # undecodable body (garbage that is not JSON)
            raise BackendError(f"the server at {self.base_url} sent an unreadable answer to {what}: {_short(str(e))}") from e

    def _first_model(self) -> str:
        page = self._call("GET /models", self._client.models.list)
        try:
            return str(page.data[0].id)
        except (AttributeError, IndexError, TypeError) as e:
            raise BackendError(f"the server at {self.base_url} lists no models") from e

    def _complete(self, prompt: str | list[int], **kwargs: Any) -> tuple[str, str, list[str], list[float | None], list[dict[str, float] | None]]:
        """One completion request; returns (text, finish_reason, tokens, token_logprobs, top_logprobs), validated."""
        try:
            resp = self._call("POST /completions", self._client.completions.create, model=self.model_id, prompt=prompt, **kwargs)
        except BackendError as e:
            if isinstance(prompt, str):
                raise
            raise BackendError(f"{e} (this prompt holds control-token text inside a message, which strop keeps as text by "
                               "sending token ids as the prompt; this server takes only text prompts: vLLM, SGLang and "
                               "llama.cpp's own server take token ids)") from e
        try:
            choice = resp.choices[0]
            lp = choice.logprobs
            if lp.tokens is None and getattr(lp, "content", None) is not None:
                tokens, token_lps, tops = _from_content(lp.content)
            else:
                tokens, token_lps = list(lp.tokens), list(lp.token_logprobs)
                tops = list(lp.top_logprobs) if lp.top_logprobs is not None else [None] * len(tokens)
            text, finish = str(choice.text), str(choice.finish_reason)
            if len(token_lps) != len(tokens) or len(tops) != len(tokens) or not all(isinstance(t, str) for t in tokens):
                raise TypeError("log-prob lists of unequal length")
            for v in token_lps:
                if v is not None and not (isinstance(v, (int, float)) and v <= 1e-6):
                    raise TypeError(f"log-prob {v!r} is not a number <= 0")
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            raise BackendError(
                f"the server at {self.base_url} returned a malformed completion ({e}); it must support 'logprobs' on /v1/completions"
            ) from e
        return text, finish, tokens, token_lps, tops

    # ----------------------------------------------------------- tokenizer
    def tokenize(self, text: str) -> list[int]:
        return self.vocab.tokenize(text)

    def tokenize_text(self, text: str) -> list[int]:
        return self.vocab.tokenize_text(text)

    def control_texts(self) -> tuple[str, ...]:
        return self.vocab.control_texts()

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.vocab.detokenize(ids)

    def _prompt_of(self, ids: list[int]) -> str | list[int]:
        """What to send as ``prompt``: the text of ``ids``, or the ids themselves when the server would read that
        text back with more control tokens than ``ids`` hold (control-token text in a message, kept as text)."""
        text = self.detokenize(ids)
        ctrl = self.vocab.control_ids
        if ctrl and sum(t in ctrl for t in self.vocab.tokenize(text)) != sum(t in ctrl for t in ids):
            return ids
        return text

    def _ids_of(self, pieces: list[str]) -> list[int]:
        """Map the server's token strings back to ids, one to one, or fail clearly."""
        if all(p.startswith("token_id:") for p in pieces):  # vLLM --return-tokens-as-token-ids
            return [int(p.split(":", 1)[1]) for p in pieces]
        ids = []
        for p in pieces:
            one = self.vocab.tokenize(p)
            if len(one) != 1:
                whole = self.vocab.tokenize("".join(pieces))
                if len(whole) == len(pieces):
                    return whole
                raise BackendError(
                    f"cannot map the server's token {p!r} to one token id of the local tokenizer; "
                    "pass the server's own tokenizer with tokenizer=..., or use vLLM with --return-tokens-as-token-ids"
                )
            ids.append(one[0])
        return ids

    def _aligned(self, pieces: list[str], ids: list[int]) -> bool:
        """Whether the server's token strings are our ids. Servers render special
        tokens and partial UTF-8 bytes as '', which matches anything."""
        return all(p == "" or p == self.vocab.detokenize([t]) for p, t in zip(pieces, ids))

    # ------------------------------------------------------------ sampling
    def generate_many(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Up to ``concurrency`` HTTP requests in flight at once (a bounded thread pool); results in request order.

        Each request's server seed comes from its own rng, so the answers do not
        depend on which requests were in flight together (beyond the server's
        own batched rounding).
        """
        if self.max_batch == 1 or len(requests) <= 1:
            return super().generate_many(requests)
        return self._generate_many_streamed(requests)

    def generate_stream(self, first: Sequence[tuple[Any, GenRequest]], more: Callable[[int], Sequence[tuple[Any, GenRequest]]],
                        done: Callable[[Any, Generation], None], *, max_rows: int | None = None) -> None:
        """Up to ``max_rows`` (at most ``concurrency``) requests in flight; a new one is sent as soon as any answers,
        so a batching server's slots stay full instead of waiting for the slowest request of a round."""
        limit = max(1, min(max_rows or self.max_batch, self.max_batch))
        if limit == 1:
            super().generate_stream(first, more, done, max_rows=1)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_batch, thread_name_prefix="strop-openai")
        flying: dict[Future, Any] = {}

        def send(rows: Sequence[tuple[Any, GenRequest]]) -> None:
            for key, r in rows:
                flying[self._pool.submit(self.generate, r.prompt_ids, r.params, r.rng, on_token=r.on_token)] = key

        send(first)
        failure: BaseException | None = None
        while flying:
            answered, _ = wait(list(flying), return_when=FIRST_COMPLETED)
            for f in answered:
                key = flying.pop(f)
                if f.exception() is not None:
                    failure = failure or f.exception()
                elif failure is None:
                    done(key, f.result())
            if failure is None and len(flying) < limit:
                send(more(limit - len(flying)))
        if failure is not None:  # the requests already sent have finished; nothing is left running
            raise failure

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator, *,
                 on_token: OnToken | None = None) -> Generation:
        if params.base_top_k:  # a top-k normaliser needs every top-k logit; a server returns only its top log-probs
            raise CapabilityError(self.name, TOPK_BASE, "use a local backend (llamacpp, hf) for power sampling's top-k target")
        started = time.perf_counter()
        ids = [int(t) for t in prompt_ids]
        self.check_fits(len(ids))
        exact_q = params.temperature == 0.0 or (params.temperature == 1.0 and params.top_k is None and params.top_p == 1.0)
        need_top = params.return_entropy or not exact_q
        text, finish, pieces, lps, tops = self._complete(
            self._prompt_of(ids),
            max_tokens=min(params.max_tokens, self.context_length - len(ids)),
            temperature=params.temperature,
            top_p=params.top_p,
            logprobs=self.top_logprobs if need_top else 1,
            stop=list(params.stop) or None,
            # The same rng state gives the same server seed, hence the same tokens.
            seed=int(rng.integers(0, 2**31 - 1)),
            # Neutralise server-side defaults (llama.cpp: top_k=40, min_p=0.05, repeat_penalty=1.1);
            # top_k=0 means "no top-k" to both llama.cpp and vLLM.
            extra_body={"top_k": params.top_k or 0, "min_p": 0.0, "repeat_penalty": 1.0, "repetition_penalty": 1.0},
        )
        if any(v is None for v in lps):
            raise BackendError(f"the server at {self.base_url} returned a token without a log-prob")
        tok_ids = self._ids_of(pieces)
        base = [float(v) for v in lps]  # type: ignore[arg-type]
        approx: list[str] = []
        reason: FinishReason = "length" if finish == "length" else ("stop" if params.stop else "eos")
        if reason == "eos":
            # The EOS's top entries too when its proposal log-prob or entropy is rebuilt from them (else NaN
            # there would make every weight of a particle that ended NaN).
            eos = min(self.eos_token_ids)
            eos_lp, eos_top = self._echo(ids + tok_ids, [eos], top=need_top)
            tok_ids.append(eos)
            base.append(float(eos_lp[0]))
            tops.append(eos_top[0])
        if on_token is not None:  # the server answered whole; report its tokens in order
            for t in tok_ids:
                on_token(t)
        if params.temperature == 0.0:
            proposal = [0.0] * len(base)
        elif exact_q:
            proposal = list(base)
        else:
            approx.append("proposal_logprobs_topk")
            proposal = [self._topk_proposal(b, t, params) for b, t in zip(base, tops)]
        ent = None
        if params.return_entropy:
            approx.append("entropy_topk")
            ent = np.array([_topk_entropy(t, self.vocab.n_vocab) if t else float("nan") for t in tops])
        return Generation(
            token_ids=tuple(tok_ids),
            text=text,
            base_logprobs=np.asarray(base),
            proposal_logprobs=np.asarray(proposal),
            entropies=ent,
            finish_reason=reason,
            prompt_tokens=len(ids),
            elapsed_s=time.perf_counter() - started,
            approximations=tuple(approx),
        )

    def _topk_proposal(self, base_lp: float, top: dict[str, float] | None, params: SamplingParams) -> float:
        if not top:
            return float("nan")
        vals = np.array(list(top.values()), dtype=np.float64)
        if not np.any(np.isclose(vals, base_lp)):
            vals = np.append(vals, base_lp)
        ids, logq = proposal_support(vals, params.temperature, params.top_k, params.top_p)
        where = np.flatnonzero(np.isclose(vals if ids is None else vals[ids], base_lp))
        return float(logq[where[0]]) if where.size else float("-inf")

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        """Log-probs of a continuation via ``echo=True``: the server scores the prompt it is given."""
        if not prompt_ids:
            raise ConfigError("score needs a non-empty prompt (the first token has no prediction)")
        if not continuation_ids:
            return Scored(np.zeros(0), np.zeros(0) if entropies else None)
        got, tops = self._echo(prompt_ids, continuation_ids, top=entropies)
        ent = np.array([_topk_entropy(t, self.vocab.n_vocab) if t else float("nan") for t in tops]) if entropies else None
        return Scored(got, ent, approximations=("entropy_topk",) if entropies else ())

    def _echo(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *,
              top: bool) -> tuple[np.ndarray, list[dict[str, float] | None]]:
        """The server's raw log-probs of the continuation's tokens and, with ``top``, each position's top entries."""
        ids = [int(t) for t in prompt_ids] + [int(t) for t in continuation_ids]
        self.check_fits(len(ids), 1)
        n = len(continuation_ids)
        _, _, pieces, lps, tops = self._complete(
            self._prompt_of(ids), max_tokens=1, echo=True, temperature=0.0, logprobs=self.top_logprobs if top else 1
        )
        # The echoed prompt comes first, then the one generated token.
        echoed = pieces[: len(pieces) - 1]
        if len(echoed) < n or not self._aligned(echoed[-n:], ids[-n:]):
            raise BackendError("the server tokenised the scored text differently from the local tokenizer; pass tokenizer=... matching the server's model")
        got = lps[len(echoed) - n : len(echoed)]
        if any(v is None for v in got):
            raise BackendError(f"the server at {self.base_url} returned no log-prob for a scored token")
        return np.asarray(got, dtype=np.float64), tops[len(echoed) - n : len(echoed)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client.close()


def _short(msg: str, limit: int = 200) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= limit else msg[:limit] + "..."
