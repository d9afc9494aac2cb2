"""The request bodies ``strop serve`` accepts: the OpenAI chat/completions fields strop honours, plus ``strop``.

Unknown top-level fields are accepted and ignored, as OpenAI-compatible
servers do (clients send fields such as ``user`` or ``metadata``), except the
ones that would change the answer and that strop does not implement
(``UNSUPPORTED``: ``logit_bias``, penalties, tools, response formats, other
servers' sampling extras): those are a 400 naming the field unless they hold
their no-op value. The ``strop`` object is strict, because a misspelt method
setting would otherwise be silently ignored. Every bound here is a 400 with
the field's name, never a crash deeper in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from strop.methods import options

# Methods a request may ask for: every registered decoding method (strop.methods.method_names(), checked per
# request, so a method registered after import is served too). Problem-level solvers such as test-time variant
# RL train a model per problem and are not served.


def strop_options_model() -> type[BaseModel]:
    """The ``strop`` object of a request (``extra_body={"strop": {...}}``): the method, and a field per registered
    method option that a request may set (``strop.methods.options``; plugins' included), with the option's bounds.

    Strict: a misspelt setting is a 400 naming it, not silently ignored. Built when the app is made, so methods
    registered by then (plugins) bring their fields.
    """
    fields: dict[str, Any] = {
        "method": (str | None, Field(None, max_length=64, description="A registered method (GET /v1/models lists them as"
                                                                      " <method>/<model>); default from the model prefix, else sample.")),
        "conversation": (Literal["refuse", "context"] | None, Field(None, description="rc / self-refine / long: a chat with earlier"
                                                                                      " turns is refused (400) or becomes part of the"
                                                                                      " problem (docs/serving.md); default: the server's.")),
    }
    for o in options().values():
        if o.server:
            kind: Any = Literal[o.choices] if o.choices else o.type
            fields[o.name] = (kind | None, Field(None, ge=o.ge, gt=o.gt, le=o.le, description=o.help))
    return create_model("StropOptions", __config__=ConfigDict(extra="forbid"), __doc__="The method and its settings"
                        " (defaults as in strop solve).", **fields)


StropOptions = strop_options_model()  # as the built-in methods declare them; an app builds its own (request_models)


def _text_part_only(schema: dict[str, Any]) -> None:
    """The documented shape (OpenAPI) of a content part: what is served, a text part; other parts are a 400 naming them."""
    schema["properties"]["type"] = {"const": "text", "type": "string", "title": "Type"}
    schema["properties"]["text"] = {"type": "string", "title": "Text"}
    schema["required"] = ["type", "text"]


def _content_required(schema: dict[str, Any]) -> None:
    """The documented shape of a message: its content is required (a message without text is a 400 naming it)."""
    content = schema["properties"]["content"]
    content["anyOf"] = [s for s in content.get("anyOf", []) if s.get("type") != "null"]
    content.pop("default", None)
    schema["required"] = [*schema.get("required", []), "content"]


class ContentPart(BaseModel):
    # Accepted loosely and checked by ``unsupported_field``, so that an image part is refused by name.
    model_config = ConfigDict(extra="allow", json_schema_extra=_text_part_only)

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_content_required)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(..., min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    strop: BaseModel | None = None  # request_models() puts the StropOptions of the app's methods here


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(_Common):
    prompt: str
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False


def request_models() -> tuple[type[ChatRequest], type[CompletionRequest]]:
    """The chat and completion request bodies with the ``strop`` object of the methods registered now."""
    options_model = strop_options_model()
    return (create_model("ChatRequest", __base__=ChatRequest, strop=(options_model | None, None)),
            create_model("CompletionRequest", __base__=CompletionRequest, strop=(options_model | None, None)))


def _is(*values: Any) -> Callable[[Any], bool]:
    return lambda v: any(v == x and type(v) is type(x) or v is x for x in values)


_ABSENT = _is(None)
# Fields a client may send that strop does not implement and that would change the answer: field -> (whether a value
# is the field's no-op, which is accepted, and what to say). Checked on the request's extra (undeclared) fields.
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logit_bias": (_is(None, {}), "logit biases are not implemented"),
    "frequency_penalty": (_is(None, 0, 0.0), "penalties are not implemented"),
    "presence_penalty": (_is(None, 0, 0.0), "penalties are not implemented"),
    "repetition_penalty": (_is(None, 1, 1.0), "penalties are not implemented"),
    "repeat_penalty": (_is(None, 1, 1.0), "penalties are not implemented"),
    "tools": (_is(None, []), "tool calling is not implemented"),
    "functions": (_is(None, []), "function calling is not implemented"),
    "tool_choice": (_is(None, "none", "auto"), "tool calling is not implemented"),
    "function_call": (_is(None, "none", "auto"), "function calling is not implemented"),
    "response_format": (lambda v: v is None or v == {"type": "text"}, "only plain text responses are implemented"),
    "audio": (_ABSENT, "audio output is not implemented"),
    "modalities": (lambda v: v is None or v == ["text"], "only text output is implemented"),
    "reasoning_effort": (_ABSENT, "the served model has no reasoning-effort setting"),
    "verbosity": (_ABSENT, "the served model has no verbosity setting"),
    "web_search_options": (_ABSENT, "web search is not implemented"),
    "top_k": (_is(None, 0, -1), "use strop.top_k (extra_body={'strop': {'top_k': k}})"),
    "min_p": (_is(None, 0, 0.0), "min-p sampling is not implemented"),
    "typical_p": (_is(None, 1, 1.0), "typical sampling is not implemented"),
    "min_tokens": (_is(None, 0), "a minimum length is not implemented"),
    "ignore_eos": (_is(None, False), "ignoring EOS is not implemented"),
    "best_of": (_is(None, 1), "use model best-of-n/<model> with strop.n"),
    "use_beam_search": (_is(None, False), "beam search is not implemented"),
    "length_penalty": (_is(None, 1, 1.0), "beam search is not implemented"),
    "mirostat": (_is(None, 0), "mirostat sampling is not implemented"),
    "grammar": (_ABSENT, "constrained decoding is not implemented"),
    "json_schema": (_ABSENT, "constrained decoding is not implemented"),
    "guided_json": (_ABSENT, "constrained decoding is not implemented"),
    "guided_regex": (_ABSENT, "constrained decoding is not implemented"),
    "guided_choice": (_ABSENT, "constrained decoding is not implemented"),
    "guided_grammar": (_ABSENT, "constrained decoding is not implemented"),
    "structured_outputs": (_ABSENT, "constrained decoding is not implemented"),
    "chat_template": (_ABSENT, "the model's own chat template is always used"),
    "chat_template_kwargs": (_is(None, {}), "chat-template variables are the server's: strop serve --chat-template-kwarg NAME=VALUE"),
    "add_generation_prompt": (_is(None, True), "the chat template always ends with the assistant's turn"),
    "continue_final_message": (_is(None, False), "continuing the last message is not implemented"),
    "echo": (_is(None, False), "echo is not supported"),
    "suffix": (_is(None, ""), "suffixes (fill-in-the-middle) are not implemented"),
}
# Extra fields of a message that strop would otherwise drop: name -> what to say.
UNSUPPORTED_IN_MESSAGE = {
    "tool_calls": "tool calls are not implemented",
    "function_call": "function calling is not implemented",
    "audio": "audio is not implemented",
    "name": "participant names are not implemented (the chat template has no place for them)",
}


def unsupported_field(req: BaseModel) -> tuple[str, str] | None:
    """(field, message) for the first field of ``req`` that strop would ignore although it changes the answer."""
    extra = req.model_extra or {}
    for name, value in extra.items():
        if name in UNSUPPORTED:
            neutral, why = UNSUPPORTED[name]
            if not neutral(value):
                return name, f"{name} is not supported by this server: {why}"
    for i, m in enumerate(getattr(req, "messages", None) or ()):
        for name, value in (m.model_extra or {}).items():
            if name in UNSUPPORTED_IN_MESSAGE and value not in (None, [], ""):
                return f"messages.{i}.{name}", f"messages[{i}].{name} is not supported: {UNSUPPORTED_IN_MESSAGE[name]}"
        if m.content is None:
            return f"messages.{i}.content", (f"messages[{i}] ({m.role}) has no content: messages without text are not supported "
                                             "(strop makes no tool calls, so a message cannot stand for one)")
        if isinstance(m.content, list):
            for j, part in enumerate(m.content):
                if part.type != "text":
                    return (f"messages.{i}.content.{j}.type",
                            f"messages[{i}].content[{j}] has type {part.type!r}; only text parts are supported")
                if not isinstance(part.text, str):
                    return f"messages.{i}.content.{j}.text", f"messages[{i}].content[{j}] is a text part without text"
    return None


def invalid_text(value: Any, path: str = "") -> str | None:
    """The path (``messages.0.content``) of the first string in ``value`` (keys included) that is not valid Unicode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, BaseModel):
        value = value.model_dump()
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for k, v in items:
        where = f"{path}.{k}" if path else str(k)
        if isinstance(k, str) and invalid_text(k) is not None:
            return where.encode("ascii", "backslashreplace").decode("ascii")
        found = invalid_text(v, where)
        if found is not None:
            return found
    return None


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type == "text")
