"""The request bodies ``strop serve`` accepts: the OpenAI chat/completions fields strop honours, plus ``strop``.

Unknown top-level fields are accepted and ignored, as OpenAI-compatible
servers do (clients send fields such as ``user`` or ``metadata``); the
``strop`` object is strict, because a misspelt method setting would
otherwise be silently ignored. Every bound here is a 400 with the field's
name, never a crash deeper in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Methods a request may ask for: every registered decoding method (strop.methods.method_names(), checked per
# request, so a method registered after import is served too). Problem-level solvers such as test-time variant
# RL train a model per problem and are not served.


class StropOptions(BaseModel):
    """``extra_body={"strop": {...}}``: the method and its settings (defaults as in ``strop solve``)."""

    model_config = ConfigDict(extra="forbid")

    method: str | None = Field(None, max_length=64, description="A registered method (GET /v1/models lists them as <method>/<model>);"
                                                                " default from the model prefix, else sample.")
    n: int | None = Field(None, ge=1, le=64, description="best-of-n / majority: samples.")
    alpha: float | None = Field(None, ge=1.0, le=64.0, description="power: the exponent.")
    block_size: int | None = Field(None, ge=1, le=4096, description="power: tokens per block.")
    mcmc_steps: int | None = Field(None, ge=0, le=256, description="power: MH steps per block.")
    cut: Literal["uniform", "entropy", "max-swap"] | None = Field(None, description="power: cut rule.")
    beta: float | None = Field(None, ge=0.0, le=64.0, description="power: entropy-cut exponent.")
    proposal_temperature: float | None = Field(None, gt=0.0, le=10.0, description="power: proposal temperature.")
    turns: int | None = Field(None, ge=1, le=64, description="rc / self-refine / long: turns T.")
    reasoning_tokens: int | None = Field(None, ge=1, description="rc: H_R.")
    summary_tokens: int | None = Field(None, ge=1, description="rc: H_S.")
    top_k: int | None = Field(None, ge=1, description="keep the k likeliest tokens.")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

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
    strop: StropOptions | None = None


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


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type == "text")
