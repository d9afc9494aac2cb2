"""llama.cpp backend (the default): llama-cpp-python on CPU, with exact log-probs.

strop drives llama.cpp's decode step itself instead of the high-level
``Llama.generate``/``create_completion``: those need ``logits_all=True`` for
log-probs, which copies the full vocabulary row into a Python-side buffer for
every token (about 5x slower here). Here each step reads only the one logits
row it needs, as a zero-copy view, and the shared numpy kernel draws the token
and computes its base/proposal log-probs and entropy.

The KV cache holds one sequence. A request whose prompt shares a prefix with
it decodes only the new tokens, so resampling a suffix (MCMC) or continuing a
turn (RC) costs only the tokens that changed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from strop.backends.base import (
    ENTROPY,
    EXACT_LOGPROBS,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    Backend,
    Generation,
    SamplingParams,
    Scored,
    common_prefix_len,
)
from strop.backends.logits import score_rows
from strop.backends.vocab import GGUFVocab
from strop.errors import BackendError, ConfigError, ModelLoadError
from strop.models import check_gguf

# Context we allocate when the user gives none: enough for every strop method
# on a laptop without reserving the model's full trained context in RAM.
DEFAULT_N_CTX = 4096


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp prints load logs (and load errors) straight to fd 2; keep them off the user's terminal."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


class LlamaCppBackend(Backend):
    """A GGUF model run by llama.cpp.

    Args:
        model: path to a GGUF file.
        n_ctx: context window to allocate (default: the model's trained
            context, at most 4096).
        n_threads: CPU threads (default: llama-cpp-python's own default).
        n_batch: prompt tokens decoded per llama.cpp call.
        native_check: before the first load of this llama.cpp build, decode a
            few tokens in a child process (strop.backends.native), so a build
            that crashes on this CPU is a clear ModelLoadError, not a dead process.
    """

    name = "llamacpp"
    capabilities = frozenset({LOGPROBS, ENTROPY, SCORE, PREFIX_CACHE, EXACT_LOGPROBS})

    def __init__(self, model: str, *, n_ctx: int | None = None, n_threads: int | None = None, n_batch: int = 512,
                 native_check: bool = True) -> None:
        path = Path(model)
        if path.is_dir():
            raise ModelLoadError(f"the llamacpp backend needs a GGUF file, and {model} is a folder; use --backend hf for Hugging Face model folders")
        if not model.lower().endswith(".gguf") and not path.exists():
            raise ModelLoadError(f"model file not found: {model} (the llamacpp backend loads GGUF files; use --backend hf for hub ids)")
        check_gguf(path)
        try:
            import llama_cpp
        except ImportError as e:
            raise ModelLoadError("the llamacpp backend needs llama-cpp-python: pip install llama-cpp-python") from e
        if n_ctx is not None and n_ctx < 16:
            raise ConfigError(f"n_ctx must be >= 16, got {n_ctx}")
        if native_check:
            from strop.backends.native import check_build

            verdict = check_build()
            if not verdict.ok:
                raise ModelLoadError(verdict.message)
        self._lib = llama_cpp
        kwargs = {"n_threads": n_threads} if n_threads else {}
        try:
            with quiet_stderr():
                # n_ctx=0 asks llama.cpp for the trained context; we cap it below.
                probe = n_ctx or DEFAULT_N_CTX
                self._llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=probe, n_batch=n_batch, logits_all=False, verbose=False, **kwargs
                )
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelLoadError(f"llama.cpp could not load {path}: {e} (is the file a complete GGUF model?)") from e
        llm = self._llm
        self.model_id = str(path)
        # llama.cpp may round the context up (to 256) while llama-cpp-python sizes
        # its token buffer by the request; the smaller is the real limit.
        self.context_length = min(llm.n_ctx(), len(llm.input_ids), llm._model.n_ctx_train())
        self.n_vocab = llm.n_vocab()
        self.n_batch = llm.n_batch  # llama-cpp-python caps it at n_ctx
        self.vocab = GGUFVocab(llm)
        self.chat_template = self.vocab.chat_template
        self.eos_token_ids = self.vocab.eos_token_ids
        self.bos_token = self.vocab.bos_token
        self.eos_token = self.vocab.eos_token

    # ----------------------------------------------------------- tokenizer
    def tokenize(self, text: str) -> list[int]:
        return self.vocab.tokenize(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.vocab.detokenize(ids)

    # --------------------------------------------------------------- model
    def _eval(self, tokens: Sequence[int], all_logits: bool) -> np.ndarray:
        """Append ``tokens`` to the cached sequence.

        Returns logits (len(tokens), V) if ``all_logits`` else the last row
        (V,), the latter as a view valid only until the next decode.
        """
        llm, ctx = self._llm, self._llm._ctx
        rows = []
        for i in range(0, len(tokens), self.n_batch):
            chunk = list(tokens[i : i + self.n_batch])
            llm._batch.set_batch(batch=chunk, n_past=llm.n_tokens, logits_all=all_logits)
            try:
                ctx.decode(llm._batch)
            except RuntimeError as e:
                llm.n_tokens = 0  # the cache state is unknown now: forget it
                raise BackendError(f"llama.cpp decode failed: {e}") from e
            llm.input_ids[llm.n_tokens : llm.n_tokens + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            if all_logits:
                rows.append(np.ctypeslib.as_array(ctx.get_logits(), shape=(len(chunk), self.n_vocab)).copy())
        if all_logits:
            return np.concatenate(rows)
        return np.ctypeslib.as_array(ctx.get_logits_ith(-1), shape=(self.n_vocab,))

    def _rewind(self, ids: Sequence[int], limit: int) -> int:
        """Keep the cached prefix shared with ``ids``, at most ``limit`` tokens; drop the rest.

        ``limit`` < len(ids) so that at least the logits we need get recomputed.
        """
        llm = self._llm
        keep = min(common_prefix_len(llm.input_ids[: llm.n_tokens].tolist(), ids), limit)
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        llm.n_tokens = keep
        return keep

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        out = [int(t) for t in ids]
        bad = [t for t in out if not 0 <= t < self.n_vocab]
        if bad:
            raise ConfigError(f"token ids out of range [0, {self.n_vocab}): {bad[:5]}")
        return out

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator) -> Generation:
        started = time.perf_counter()
        ids = self._check_ids(prompt_ids)
        self.check_fits(len(ids))
        cached = self._rewind(ids, len(ids) - 1)
        first = self._eval(ids[cached:], all_logits=False)
        trace, finish, text = self._decode(first, lambda t: self._eval([t], all_logits=False), len(ids), params, rng)
        return self._result(trace, finish, text, len(ids), cached, started, params)

    def score(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, entropies: bool = False) -> Scored:
        if not prompt_ids:
            raise ConfigError("score needs a non-empty prompt (the first token has no prediction)")
        ids = self._check_ids(list(prompt_ids) + list(continuation_ids))
        self.check_fits(len(ids), 0)
        if not continuation_ids:
            return Scored(np.zeros(0), np.zeros(0) if entropies else None)
        cached = self._rewind(ids, len(prompt_ids) - 1)
        logits = self._eval(ids[cached:], all_logits=True)
        first = len(prompt_ids) - 1 - cached  # row r predicts ids[cached + r + 1]
        lp, ent = score_rows(logits[first : first + len(continuation_ids)], np.asarray(continuation_ids), entropies)
        return Scored(lp, ent, cached)

    @property
    def llama(self):
        """The underlying ``llama_cpp.Llama`` (shares this backend's KV cache)."""
        return self._llm

    def reset_cache(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.n_tokens = 0

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None  # type: ignore[assignment]
