"""``strop serve``: strop's methods behind the OpenAI chat/completions API (FastAPI).

One backend serves every request through one engine thread (``strop.engine``):
each choice of each request is a step machine, and every round the requests
pending across all of them are decoded together, so concurrent requests share
the backend's batches. Only that thread touches the backend's state (KV
cache, weights). Each request's randomness comes only from its own seed; its
tokens can still differ in float rounding with the batch it shared (as on any
batching server). Admission is bounded (``max_pending`` running or queued,
then 429), every request has a time limit (then 503, and the method stops at
its next round), and a per-request decode budget rejects absurd settings
before any work (400).

Method choice: ``extra_body={"strop": {"method": "power", "alpha": 4}}`` or
a model-name prefix (``power/smollm2``). Streaming sends each RC turn and
each power-sampling block as it finishes, as ``strop`` events on the chunks;
the answer's text follows as content when the method has committed to it,
since RC's answer is its last turn and a power-sampling chain may redraw any
token until it ends. Sample and greedy stream their tokens as they are drawn
(unless stop strings are set: text that may become a stop string is not sent). ``usage.completion_tokens`` counts every token the
method decoded (discarded samples, rejected proposals, summaries).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from strop import __version__
from strop.backends.base import Backend
from strop.engine import Cancelled
from strop.methods import load_plugins, method_names
from strop.server.bridge import ServerEngine, method_error, timeout_error
from strop.server.plan import APIError, ServeConfig, plan_machines, plan_request
from strop.server.schemas import ChatRequest, CompletionRequest, request_models
from strop.server.wire import chat_body, completion_body, stream_events


class _BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413 before they are parsed (chunked bodies included)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = APIError(413, f"request body exceeds this server's limit of {self.limit} bytes", code="request_too_large").response()
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await too_big(scope, receive, send)


class _TooLarge(BaseException):
    """Not an Exception: FastAPI turns any Exception raised while reading a body into a 400, and this must stay a 413."""


def create_app(backend: Backend, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``backend``; ``uvicorn.run(create_app(...))`` or ``strop serve`` runs it.

    Long because FastAPI's routes and handlers are closures over this app's engine and limits; each is short, and
    the request logic lives in ``plan``, ``bridge`` and ``wire``.
    """
    config = config or ServeConfig()
    load_plugins()  # before the request bodies are built: plugins' methods bring their settings
    engine = ServerEngine(backend, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has stopped accepting and waited for (or cancelled) in-flight requests.
        engine.shutdown()

    app = FastAPI(title="strop", version=__version__, lifespan=lifespan,
                  description="strop's reasoning methods behind the OpenAI chat/completions API.")
    app.state.engine = engine

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            msg = "the request body is not valid JSON"
        return APIError(400, f"{where}: {msg}" if where else msg, param=where or None, code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return APIError(exc.status_code, str(exc.detail)).response()

    async def authorised(request: Request) -> None:
        if config.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and secrets.compare_digest(given[7:].encode(), config.api_key.encode())):
            raise APIError(401, "missing or wrong API key (Authorization: Bearer <key>)", code="invalid_api_key")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "shutting_down" if engine.draining else "ok", "model": config.model_name,
                "backend": getattr(backend, "name", "?"), "pending": engine.pending, "max_pending": config.max_pending}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict[str, Any]:
        ids = [config.model_name] + [f"{m}/{config.model_name}" for m in method_names()]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "strop"} for i in ids]}

    async def run(req: ChatRequest | CompletionRequest, chat: bool) -> Any:
        plan = plan_request(req, backend, config)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}"
        created = int(time.time())
        loop = asyncio.get_running_loop()
        if not req.stream:
            machines = plan_machines(backend, plan, None, stream_tokens=False)
            engine.admit()
            fut, cancel = engine.submit(machines)
            try:
                results = await asyncio.wait_for(asyncio.shield(fut), config.timeout_s)
            except TimeoutError:
                cancel()
                raise timeout_error(config.timeout_s) from None
            except asyncio.CancelledError:  # the client went away
                cancel()
                raise
            except Cancelled:
                raise APIError(503, "the request was cancelled (server shutting down)", code="cancelled") from None
            except Exception as e:
                raise method_error(e) from e
            if chat:
                return chat_body(plan, results, backend, rid=rid, created=created, model=req.model, logprobs=req.logprobs)
            return completion_body(plan, results, rid=rid, created=created, model=req.model)

        queue: asyncio.Queue = asyncio.Queue()
        stream_tokens = not (req.stop or False)  # text that may become a stop string must not be sent early
        machines = plan_machines(backend, plan, lambda ev: loop.call_soon_threadsafe(queue.put_nowait, ev), stream_tokens=stream_tokens)
        engine.admit()
        fut, cancel = engine.submit(machines)
        fut.add_done_callback(lambda f: queue.put_nowait({"event": "_done"}))
        return StreamingResponse(stream_events(plan, req, chat, backend, fut, queue, cancel, rid, created, config.timeout_s),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    chat_model, completion_model = request_models()  # the strop object as the methods registered now declare it

    async def chat_completions(req: ChatRequest) -> Any:
        return await run(req, chat=True)

    async def completions(req: CompletionRequest) -> Any:
        return await run(req, chat=False)

    # The annotations FastAPI reads (this module's are strings naming the base classes): the bodies built above.
    chat_completions.__annotations__["req"], completions.__annotations__["req"] = chat_model, completion_model
    app.post("/v1/chat/completions", dependencies=[Depends(authorised)])(chat_completions)
    app.post("/v1/completions", dependencies=[Depends(authorised)])(completions)

    app.add_middleware(_BodyLimit, limit=config.max_body_bytes)
    return app
