"""An OpenAI-compatible completions server in front of a toy model, for exact tests of the openai backend.

llama.cpp's server (``tests/backends/test_openai_backend.py``) shows strop
works against a real server, but its model's law cannot be enumerated. This
server decodes a ``ToyBackend`` instead, so what the openai backend makes of
a server's answers (token strings mapped back to ids, raw log-probs, the
tempered proposal rebuilt from the top log-probs, the EOS log-prob fetched
by an echo request) can be checked against the exact values, and a sampler
run through it can be checked against its exact target law.

The toy's tokens must each be one token of the client's tokenizer (the
embedded model's by default). The toy reads only what follows the chat
template's last ``assistant`` header, after a fixed start token: every
question is the same state to it, as the prompt ``q`` is to the toy tests.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from strop.backends.base import SamplingParams
from strop.backends.logits import log_softmax
from strop.backends.toy import ToyBackend

HEADER = "assistant\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: a sampler sends thousands of short requests

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.model_id, "object": "model", "owned_by": "tests"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if not self.path.rstrip("/").endswith("/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        with self.server.lock:
            self.server.requests += 1
        self._send(200, self.server.complete(body))

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, toy: ToyBackend, start: str, client_vocab) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.toy, self.start, self.client_vocab = toy, start, client_vocab
        self.client_eos = [client_vocab.detokenize([t]) for t in client_vocab.eos_token_ids]
        self.model_id = "toy"
        self.lock = threading.Lock()
        self.requests = 0

    def context(self, prompt) -> list[int]:
        """The toy's context: its start token, then the toy tokens after the prompt's last assistant header."""
        text = self.client_vocab.detokenize(prompt) if isinstance(prompt, list) else str(prompt)
        text = text.rsplit(HEADER, 1)[-1]
        for eos in self.client_eos:  # the client may end a scored text with any of its EOS tokens
            text = text.replace(eos, self.toy.eos_token)
        return self.toy.tokenize(self.start + text)

    def top(self, ctx: list[int], k: int) -> dict[str, float]:
        """The k most likely next tokens with their raw (temperature 1) log-probs, as servers report them."""
        lp = log_softmax(self.toy.logits(ctx))
        order = [int(i) for i in np.argsort(-lp, kind="stable") if np.isfinite(lp[i])][:k]
        return {self.toy.vocab[i]: float(lp[i]) for i in order}

    def complete(self, body: dict) -> dict:
        toy, k = self.toy, int(body.get("logprobs") or 1)
        ctx = self.context(body["prompt"])
        if body.get("echo"):  # scoring: the prompt's own tokens with their log-probs, then one more token
            scored = toy.score(ctx[:1], ctx[1:]).logprobs
            # Servers render special tokens as "" (the client matches "" to any token).
            pieces = ["" if t == toy.eos_id else toy.vocab[t] for t in ctx[1:]]
            lps: list[float | None] = [float(v) for v in scored]
            tops: list[dict | None] = [self.top(ctx[:i + 1], k) for i in range(len(pieces))]
            if ctx[-1] == toy.eos_id:  # nothing follows the toy's EOS; the client reads only the echoed part
                pieces.append("")
                lps.append(0.0)
                tops.append(None)
            else:
                nxt = int(np.argmax(toy.logits(ctx)))
                pieces.append(toy.vocab[nxt])
                lps.append(float(log_softmax(toy.logits(ctx))[nxt]))
                tops.append(self.top(ctx, k))
            # The text before the toy's part is one piece without a log-prob, as a server reports the first token.
            pieces, lps, tops = ["<prefix>", *pieces], [None, *lps], [None, *tops]
            return _answer("".join(pieces[1:]), "length", pieces, lps, tops)
        params = SamplingParams(max_tokens=int(body["max_tokens"]), temperature=float(body.get("temperature", 1.0)),
                                top_p=float(body.get("top_p", 1.0)), top_k=int(body.get("top_k") or 0) or None)
        g = toy.generate(ctx, params, np.random.default_rng(int(body.get("seed") or 0)))
        ids = list(g.token_ids)
        ended = g.finish_reason == "eos"
        if ended:  # servers leave the EOS token out of the completion and say "stop"
            ids = ids[:-1]
        pieces = [toy.vocab[t] for t in ids]
        lps = [float(v) for v in g.base_logprobs[: len(ids)]]
        tops = [self.top(ctx + ids[:i], k) for i in range(len(ids))]
        return _answer("".join(pieces), "stop" if ended else "length", pieces, lps, tops)


def _answer(text: str, finish: str, pieces: list[str], lps: list, tops: list) -> dict:
    return {"id": "cmpl-toy", "object": "text_completion", "created": 0, "model": "toy",
            "choices": [{"index": 0, "text": text, "finish_reason": finish,
                         "logprobs": {"tokens": pieces, "token_logprobs": lps, "top_logprobs": tops, "text_offset": [0] * len(pieces)}}]}


@contextmanager
def serving(toy: ToyBackend, start: str, client_vocab) -> Iterator[_Server]:
    """The server on a free local port while the block runs; ``server.url`` is its base URL (``.../v1``)."""
    srv = _Server(toy, start, client_vocab)
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    thread = threading.Thread(target=srv.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(30)
