"""``strop serve``'s answers on the wire: response bodies, usage, and the event stream of a streamed request."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from strop.backends.base import Backend
from strop.engine import Cancelled
from strop.methods import MethodResult
from strop.server.bridge import method_error, timeout_error
from strop.server.plan import APIError, Plan


def _finish(r: MethodResult) -> str:
    return "length" if r.candidates[r.chosen].finish_reason == "length" else "stop"


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _strop_block(plan: Plan, results: list[MethodResult]) -> dict[str, Any]:
    return {"method": plan.method, "seed": plan.seed,
            "choices": [{"answer": r.answer, "decoded_tokens": r.decoded_tokens, "config": _jsonable(r.config),
                         "stats": _jsonable(r.stats)} for r in results]}


def _usage(plan: Plan, results: list[MethodResult]) -> dict[str, Any]:
    completion = sum(r.decoded_tokens for r in results)
    # OpenAI's field for the hidden part of completion_tokens: a thinking model's reasoning blocks (methods.base.thinking_tokens).
    thinking = sum(int(r.stats.get("thinking_tokens", 0)) for r in results)
    return {"prompt_tokens": plan.prompt_tokens, "completion_tokens": completion, "total_tokens": plan.prompt_tokens + completion,
            "completion_tokens_details": {"reasoning_tokens": thinking}}


def _logprobs(backend: Backend, r: MethodResult) -> dict[str, Any]:
    g = r.candidates[r.chosen]
    ids = list(g.token_ids)
    if g.finish_reason == "eos" and ids:
        ids = ids[:-1]  # the EOS token is not part of the text
    out = []
    for tid, lp in zip(ids, g.base_logprobs):
        tok = backend.detokenize([tid])
        out.append({"token": tok, "logprob": float(lp) if math.isfinite(lp) else -9999.0,
                    "bytes": list(tok.encode("utf-8")), "top_logprobs": []})
    return {"content": out}


def chat_body(plan: Plan, results: list[MethodResult], backend: Backend, *, rid: str, created: int, model: str,
              logprobs: bool) -> dict[str, Any]:
    choices = [{"index": i, "message": {"role": "assistant", "content": r.text}, "finish_reason": _finish(r),
                "logprobs": _logprobs(backend, r) if logprobs else None} for i, r in enumerate(results)]
    return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "usage": _usage(plan, results), "strop": _strop_block(plan, results)}


def completion_body(plan: Plan, results: list[MethodResult], *, rid: str, created: int, model: str) -> dict[str, Any]:
    choices = [{"index": i, "text": r.text, "finish_reason": _finish(r), "logprobs": None} for i, r in enumerate(results)]
    return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": _usage(plan, results), "strop": _strop_block(plan, results)}


def error_event(err: APIError) -> str:
    """An error inside a stream that has already answered 200: one SSE event in OpenAI's error shape."""
    return "data: " + json.dumps({"error": {"message": err.message, "code": err.code, "status": err.status,
                                            "type": "server_error" if err.status >= 500 else "invalid_request_error"}}) + "\n\n"




async def stream_events(plan: Plan, req: Any, chat: bool, backend: Backend, fut: asyncio.Future, queue: asyncio.Queue,
                        cancel: Callable[[], None], rid: str, created: int, timeout_s: float) -> AsyncIterator[str]:
    """The server-sent events of a streamed request: its role chunk, then per event (a token's text, an RC turn, a power
    block) a chunk, then the rest of each choice's text, the finish reasons, the strop block (and usage), [DONE]."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    token_ids: list[list[int]] = [[] for _ in range(plan.n)]
    sent = [""] * plan.n  # text already streamed per choice

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return "data: " + json.dumps({"id": rid, "object": kind, "created": created, "model": req.model,
                                      "choices": choices, **extra}) + "\n\n"

    def piece(i: int, text: str | None = None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
            return {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": i, "text": text or "", "finish_reason": finish, "logprobs": None}

    deadline = time.monotonic() + timeout_s
    try:
        if chat:
            yield chunk([piece(i, role=True) for i in range(plan.n)])
        while True:
            left = deadline - time.monotonic()
            try:
                ev = await asyncio.wait_for(queue.get(), max(left, 0.001))
            except TimeoutError:
                cancel()
                yield error_event(timeout_error(timeout_s))
                break
            if ev["event"] == "token":
                # Text deltas from the token ids so far; a token ending inside a UTF-8 character waits for the next.
                i = ev["choice"]
                token_ids[i].append(ev["token_id"])
                text = backend.detokenize(token_ids[i])
                if not text.endswith("\ufffd") and text.startswith(sent[i]) and len(text) > len(sent[i]):
                    yield chunk([piece(i, text[len(sent[i]):])])
                    sent[i] = text
                continue
            if ev["event"] != "_done":
                yield chunk([piece(ev["choice"])], strop=ev)
                continue
            try:
                results = fut.result()
            except BaseException as e:  # noqa: BLE001 - reported in the stream, the connection closes cleanly
                yield error_event(method_error(e) if not isinstance(e, Cancelled)
                                   else APIError(503, "the request was cancelled", code="cancelled"))
                break
            for i, r in enumerate(results):
                rest = r.text[len(sent[i]):] if r.text.startswith(sent[i]) else r.text
                if rest:
                    yield chunk([piece(i, rest)])
                yield chunk([piece(i, finish=_finish(r))])
            final = {"strop": _strop_block(plan, results)}
            if req.stream_options and req.stream_options.include_usage:
                final["usage"] = _usage(plan, results)
            yield chunk([], **final)
            break
        yield "data: [DONE]\n\n"
    finally:
        if not fut.done():
            cancel()  # the client went away or the time ran out: stop at the next round
