"""``strop serve``'s requests: the server's limits (``ServeConfig``), errors in OpenAI's shape, and the plan of a
request (which method, its settings, its input), validated before any decoding."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from strop.backends.base import Backend
from strop.errors import ConfigError, ContextOverflowError, StropError
from strop.methods import make_steps, method_names, method_settings, method_spec
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
                       code="context_length_exceeded" if isinstance(e, ContextOverflowError) else None) from e
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
