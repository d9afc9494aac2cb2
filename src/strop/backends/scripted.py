"""A backend that answers from a script: for testing methods' control flow exactly.

``ScriptedBackend(respond)`` calls ``respond(prompt_text)`` for every
generation and returns its text, tokenised one character per token (so token
counts are character counts and ``max_tokens`` truncates characters). Every
prompt it receives is kept in ``prompts``, so a test can assert exactly what a
method conditioned each call on. It reports no log-probs (all zero) and says so
through its capabilities. Token ids are code points; EOS is ``EOS``, one past the
last code point, so any text (a NUL included) stays text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from strop.backends.base import Backend, Generation, OnToken, SamplingParams

EOS = 0x110000  # not a code point: no text tokenises to it


class ScriptedBackend(Backend):
    name = "scripted"
    capabilities = frozenset()

    def __init__(self, respond: Callable[[str], str], *, context_length: int = 1 << 20) -> None:
        self.respond = respond
        self.prompts: list[str] = []
        self.model_id = "scripted"
        self.context_length = context_length
        self.eos_token_ids = frozenset({EOS})
        self.chat_template = None

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids if i != EOS)

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams, rng: np.random.Generator, *,
                 on_token: OnToken | None = None) -> Generation:
        started = time.perf_counter()
        prompt = self.detokenize(prompt_ids)
        self.prompts.append(prompt)
        text = self.respond(prompt)
        ids = self.tokenize(text)
        finish = "eos"
        if len(ids) > params.max_tokens:
            ids, finish = ids[: params.max_tokens], "length"
        else:
            ids = ids + [EOS]
        n = len(ids)
        if on_token is not None:
            for t in ids:
                on_token(t)
        return Generation(tuple(ids), self.detokenize(ids), np.zeros(n), np.zeros(n), np.zeros(n) if params.return_entropy else None,
                          finish, len(prompt_ids), 0, time.perf_counter() - started)
