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
import json
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from strop import __version__
from strop.backends.base import Backend
from strop.engine import Cancelled, Engine, Job
from strop.errors import BackendError, ConfigError, StropError
from strop.methods import MethodResult, make_steps, method_names, method_settings, method_spec
from strop.methods.rc_prompts import RCPrompts
from strop.server.conversation import MODES, Refused, as_problem
from strop.server.schemas import ChatRequest, CompletionRequest, invalid_text, text_of, unsupported_field


@dataclass(frozen=True)
class ServeConfig:
    """Limits and identity of a server.

    Attributes:
        model_name: the id clients pass as ``model`` (``<method>/<model_name>`` picks a method).
        max_tokens: most tokens one generation may ask for (``max_tokens`` / H_R / H_S).
        default_max_tokens: chat ``max_tokens`` when the request gives none.
        max_request_tokens: most tokens one request may decode in all (n x the method's budget).
        max_body_bytes: larger request bodies get 413.
        max_pending: requests running or queued at once; one more gets 429.
        timeout_s: per-request time limit, queueing included; then 503.
        api_key: when set, requests need ``Authorization: Bearer <api_key>``.
        max_rows: most rows decoded together in one round, across requests (None: the backend's
            ``max_batch``; 1 decodes one row at a time, the pre-engine behaviour, for comparison).
        rc_prompts: the templates of rc, self-refine and long (``strop serve --rc-prompts DIR``).
        conversation: what rc, self-refine and long do with a chat that has earlier turns: ``refuse`` (400)
            or ``context`` (they become part of the problem; ``strop.server.conversation``). A request's
            ``strop.conversation`` overrides it.
    """

    model_name: str = "smollm2"
    max_tokens: int = 4096
    default_max_tokens: int = 256
    max_request_tokens: int = 65536
    max_body_bytes: int = 1 << 20
    max_pending: int = 16
    timeout_s: float = 600.0
    api_key: str | None = None
    max_rows: int | None = None
    rc_prompts: RCPrompts = field(default_factory=RCPrompts)
    conversation: str = "refuse"

    def __post_init__(self) -> None:
        if self.max_rows is not None and self.max_rows < 1:
            raise ConfigError(f"serve: max_rows must be >= 1, got {self.max_rows}")
        for name in ("max_tokens", "default_max_tokens", "max_request_tokens", "max_body_bytes", "max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve: {name} must be >= 1, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise ConfigError(f"serve: timeout_s must be > 0, got {self.timeout_s}")
        if self.conversation not in MODES:
            raise ConfigError(f"serve: conversation must be one of {', '.join(MODES)}, got {self.conversation!r}")
        if not self.model_name or self.model_name.split("/", 1)[0] in method_names():
            raise ConfigError(f"serve: model_name {self.model_name!r} must be non-empty and not start with a method name")


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                413: "invalid_request_error", 429: "rate_limit_error"}.get(self.status, "server_error")
        body = {"error": {"message": _utf8(self.message), "type": kind, "param": _utf8(self.param), "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _utf8(text: str | None) -> str | None:
    """``text`` with any lone surrogate (from a client's invalid JSON string) written as an escape, so it can be sent."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


# ------------------------------------------------------------------ the plan
@dataclass
class Plan:
    """What one request will run: method, its keyword arguments, the input, n choices, a seed."""

    method: str
    kwargs: dict[str, Any]
    prompt_ids: list[int] | None
    question: str | None
    system: str | None
    n: int
    seed: int
    prompt_tokens: int


def resolve_method(model: str, requested: str | None, config: ServeConfig) -> str:
    """The method a request names, by ``strop.method`` or by a ``<method>/`` model prefix; 404 for another model."""
    prefix = None
    if model != config.model_name:
        head, _, rest = model.partition("/")
        if head not in method_names() or rest != config.model_name:
            raise APIError(404, f"model {model!r} is not served here; use {config.model_name!r} or <method>/{config.model_name} "
                                f"(methods: {', '.join(method_names())})", code="model_not_found", param="model")
        prefix = head
    if prefix and requested and prefix != requested:
        raise APIError(400, f"the model prefix asks for {prefix!r} but strop.method asks for {requested!r}", param="strop.method")
    if requested and requested not in method_names():
        raise APIError(400, f"strop.method {requested!r} is not a method served here (methods: {', '.join(method_names())})",
                       param="strop.method")
    return requested or prefix or "sample"


def plan_request(req: ChatRequest | CompletionRequest, backend: Backend, config: ServeConfig) -> Plan:
    """Validate a request against the server's limits and the backend, and say what will run (no decoding)."""
    bad_text = invalid_text(req)
    if bad_text is not None:
        raise APIError(400, f"{bad_text} is not valid Unicode: it holds a lone surrogate (a \\ud800-\\udfff escape without "
                            "its pair); send UTF-8 text", param=bad_text, code="invalid_unicode")
    refused = unsupported_field(req)
    if refused is not None:
        raise APIError(400, refused[1], param=refused[0], code="unsupported_parameter")
    opts = req.strop.model_dump(exclude_none=True) if req.strop else {}
    method = resolve_method(req.model, opts.pop("method", None), config)
    conversation = opts.pop("conversation", config.conversation)
    chat = isinstance(req, ChatRequest)
    max_tokens = (req.max_completion_tokens or req.max_tokens) if chat else req.max_tokens
    max_tokens = max_tokens or config.default_max_tokens
    for name, value in (("max_tokens", max_tokens), ("strop.reasoning_tokens", opts.get("reasoning_tokens")),
                        ("strop.summary_tokens", opts.get("summary_tokens"))):
        if value is not None and value > config.max_tokens:
            raise APIError(400, f"{name} = {value} exceeds this server's limit of {config.max_tokens}", param=name)
    if chat and req.top_logprobs:
        raise APIError(400, "top_logprobs is not supported (logprobs of the chosen tokens are)", param="top_logprobs")
    if not chat and req.logprobs:
        raise APIError(400, "completions logprobs (top alternatives) are not supported; use chat with logprobs: true",
                       param="logprobs")
    if not chat and req.echo:
        raise APIError(400, "echo is not supported", param="echo")
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if any(not s for s in stop) or len(stop) > 4:
        raise APIError(400, "stop takes at most 4 non-empty strings", param="stop")
    spec = method_spec(method)
    if stop and not spec.takes_stop:
        raise APIError(400, f"stop is not supported by method {method!r} (it would cut a turn or a chain midway)", param="stop")

    try:
        kwargs = method_settings(method, temperature=1.0 if req.temperature is None else req.temperature,
                                 top_p=1.0 if req.top_p is None else req.top_p, max_tokens=max_tokens,
                                 rc_prompts=config.rc_prompts, **opts)
    except StropError as e:
        raise APIError(400, str(e), param="strop") from e
    if stop:
        kwargs["params"] = replace(kwargs["params"], stop=stop)
    budget = spec.budget(kwargs) * req.n
    if budget > config.max_request_tokens:
        raise APIError(400, f"this request could decode up to {budget} tokens ({method}, n = {req.n}); "
                            f"this server's limit is {config.max_request_tokens}", param="max_tokens")

    if chat:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": text_of(m.content)} for m in req.messages]
        users = [m["content"] for m in messages if m["role"] == "user"]
        systems = [m["content"] for m in messages if m["role"] == "system"]
        question, system = (users[-1] if users else None), (systems[0] if systems else None)
        if spec.input == "question":  # one problem text: the chat becomes it, or is refused (never partly dropped)
            try:
                question, system = as_problem(messages, method, conversation)
            except Refused as e:
                raise APIError(400, str(e), param="messages", code=e.code) from e
    else:
        messages, question, system = None, req.prompt, None
    prompt_ids: list[int] | None = None
    try:
        if spec.input == "question":
            prompt_tokens = len(backend.chat_prompt([*([{"role": "system", "content": system}] if system else []),
                                                     {"role": "user", "content": question or ""}]))
        else:
            prompt_ids = backend.chat_prompt(messages) if messages is not None else backend.tokenize(req.prompt)
            if not prompt_ids:
                raise APIError(400, "the prompt is empty", param="prompt")
            backend.check_fits(len(prompt_ids))
            prompt_tokens = len(prompt_ids)
    except StropError as e:  # template failure, untokenizable text, prompt longer than the context
        raise APIError(400, str(e), param="messages" if chat else "prompt",
                       code="context_length_exceeded" if "context" in str(e) else None) from e
    seed = req.seed if req.seed is not None else secrets.randbits(63)
    return Plan(method, kwargs, prompt_ids, question, system, req.n, seed, prompt_tokens)


def plan_machines(backend: Backend, plan: Plan, emit: Callable[[dict[str, Any]], None] | None, *, stream_tokens: bool) -> list[Any]:
    """One step machine per choice; ``emit`` (None: nobody listens) gets each choice's events: turns, blocks,
    progress, and tokens if ``stream_tokens``."""
    spec = method_spec(plan.method)
    machines = []
    for i in range(plan.n):
        def progress(done: int, total: int, i: int = i) -> None:
            assert emit is not None
            emit({"event": "progress", "choice": i, "done": done, "total": total})

        def events(kind: str, payload: dict[str, Any], i: int = i) -> None:
            assert emit is not None
            if kind != "token" or stream_tokens:
                emit({"event": kind, "choice": i, **payload})

        listens = emit is not None and (stream_tokens or any(k != "token" for k in spec.events))
        rng = np.random.default_rng([plan.seed, i])
        machines.append(make_steps(plan.method, backend, plan.question, rng, prompt_ids=plan.prompt_ids if spec.input == "prompt" else None,
                                   system=plan.system, progress=progress if emit is not None else None,
                                   events=events if listens else None, **plan.kwargs))
    return machines


# ---------------------------------------------------------------- responses
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


# ------------------------------------------------------------------- engine
class ServerEngine:
    """The engine thread in front of the backend, bounded admission, time limits, cancellation."""

    def __init__(self, backend: Backend, config: ServeConfig) -> None:
        self.backend, self.config = backend, config
        self.engine = Engine(backend, max_rows=config.max_rows)
        self.thread = threading.Thread(target=self.engine.serve_forever, name="strop-engine", daemon=True)
        self.thread.start()
        self.pending = 0
        self.draining = False
        self.requests: set[Any] = set()

    def admit(self) -> None:
        if self.draining:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        if self.pending >= self.config.max_pending:
            raise APIError(429, f"too many requests in flight (limit {self.config.max_pending}); retry shortly",
                           code="too_many_requests", headers={"Retry-After": "1"})
        self.pending += 1

    def submit(self, machines: list[Any]) -> tuple[asyncio.Future, Callable[[], None]]:
        """Queue a request's machines; returns (future of their results, cancel). The future fails with the first error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        results: list[Any] = [None] * len(machines)
        left = [len(machines)]
        jobs: list[Job] = []
        lock = threading.Lock()

        def cancel() -> None:
            for job in jobs:
                job.cancel()

        def settle(value: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            fut.set_exception(error) if error is not None else fut.set_result(value)

        def release() -> None:
            # A request counts against max_pending until the backend is done with it, even after a timeout.
            self.pending -= 1
            self.requests.discard(cancel)

        def done(job: Job, k: int) -> None:  # on the engine thread
            with lock:
                left[0] -= 1
                last = left[0] == 0
                results[k] = job.result
            if job.error is not None:
                cancel()  # one choice failed: the others stop at their next round
                loop.call_soon_threadsafe(settle, None, job.error)
            elif last:
                loop.call_soon_threadsafe(settle, list(results), None)
            if last:
                loop.call_soon_threadsafe(release)

        self.requests.add(cancel)
        try:
            for k, m in enumerate(machines):
                jobs.append(self.engine.submit(m, lambda job, k=k: done(job, k)))
        except Cancelled:
            cancel()
            release()
            raise APIError(503, "the server is shutting down", code="shutting_down") from None
        return fut, cancel

    def shutdown(self) -> None:
        self.draining = True
        for cancel in list(self.requests):
            cancel()
        self.engine.stop()
        self.thread.join()
        self.backend.close()


def _timeout_error(config: ServeConfig) -> APIError:
    return APIError(503, f"the request did not finish within this server's time limit ({config.timeout_s:g} s)", code="timeout")


def _error_event(err: APIError) -> str:
    """An error inside a stream that has already answered 200: one SSE event in OpenAI's error shape."""
    return "data: " + json.dumps({"error": {"message": err.message, "code": err.code, "status": err.status,
                                            "type": "server_error" if err.status >= 500 else "invalid_request_error"}}) + "\n\n"


def _method_error(e: BaseException) -> APIError:
    if isinstance(e, BackendError):
        return APIError(503, f"backend failed: {e}", code="backend_error")
    if isinstance(e, StropError):
        return APIError(400, str(e))
    return APIError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error")


# ---------------------------------------------------------------------- app
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
    """The FastAPI app serving ``backend``; ``uvicorn.run(create_app(...))`` or ``strop serve`` runs it."""
    config = config or ServeConfig()
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
                raise _timeout_error(config) from None
            except asyncio.CancelledError:  # the client went away
                cancel()
                raise
            except Cancelled:
                raise APIError(503, "the request was cancelled (server shutting down)", code="cancelled") from None
            except Exception as e:
                raise _method_error(e) from e
            if chat:
                return chat_body(plan, results, backend, rid=rid, created=created, model=req.model, logprobs=req.logprobs)
            return completion_body(plan, results, rid=rid, created=created, model=req.model)

        queue: asyncio.Queue = asyncio.Queue()
        stream_tokens = not (req.stop or False)  # text that may become a stop string must not be sent early
        machines = plan_machines(backend, plan, lambda ev: loop.call_soon_threadsafe(queue.put_nowait, ev), stream_tokens=stream_tokens)
        engine.admit()
        fut, cancel = engine.submit(machines)
        fut.add_done_callback(lambda f: queue.put_nowait({"event": "_done"}))
        return StreamingResponse(_stream(plan, req, chat, fut, queue, cancel, rid, created), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _stream(plan: Plan, req: Any, chat: bool, fut: asyncio.Future, queue: asyncio.Queue, cancel: Callable[[], None],
                      rid: str, created: int) -> AsyncIterator[str]:
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

        deadline = time.monotonic() + config.timeout_s
        try:
            if chat:
                yield chunk([piece(i, role=True) for i in range(plan.n)])
            while True:
                left = deadline - time.monotonic()
                try:
                    ev = await asyncio.wait_for(queue.get(), max(left, 0.001))
                except TimeoutError:
                    cancel()
                    yield _error_event(_timeout_error(config))
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
                    yield _error_event(_method_error(e) if not isinstance(e, Cancelled)
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

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(req: ChatRequest) -> Any:
        return await run(req, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(authorised)])
    async def completions(req: CompletionRequest) -> Any:
        return await run(req, chat=False)

    app.add_middleware(_BodyLimit, limit=config.max_body_bytes)
    return app
