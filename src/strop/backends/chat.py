"""Chat templates: one renderer for every backend.

All backends render chats with the model's own jinja2 template through this
function, so that the same messages become the same token ids on llama.cpp,
transformers and a remote server (the cross-backend log-prob checks rely on
it). The sandboxed environment mirrors what transformers uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, TypedDict

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from strop.errors import ConfigError


class Message(TypedDict):
    role: str
    content: str


def user_turn(text: str, system: str | None = None) -> list[Message]:
    """A one-question chat: the optional system message, then the user's text.

    >>> user_turn("2 + 2?", system="Be brief.")
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '2 + 2?'}]
    """
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


# Used only for models that ship no template (base models, toy models).
PLAIN_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}Question: {{ m['content'] }}\n"
    "{% else %}Answer: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


@lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


# Variables the renderer itself passes; a chat-template switch may not take their names.
RESERVED_VARIABLES = frozenset({"messages", "bos_token", "eos_token", "add_generation_prompt", "raise_exception"})


def check_template_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` as chat-template variables, or a ``ConfigError`` naming the bad one.

    >>> check_template_kwargs({"enable_thinking": False})
    {'enable_thinking': False}
    """
    for k in kwargs:
        if not isinstance(k, str) or not k.isidentifier():
            raise ConfigError(f"a chat-template variable needs a name like enable_thinking, got {k!r}")
        if k in RESERVED_VARIABLES:
            raise ConfigError(f"chat-template variable {k!r} is set by strop itself; choose another name")
    return dict(kwargs)


def render_chat(
    template: str | None,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Render ``messages`` with ``template`` (or a plain Q/A format if None).

    ``template_kwargs`` become template variables, as ``apply_chat_template``'s
    extra keyword arguments do in transformers (``enable_thinking=False``).
    """
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ConfigError(f"message {i} must have string 'role' and 'content', got {m!r}")
    extra = check_template_kwargs(template_kwargs or {})
    try:
        return _compile(template or PLAIN_TEMPLATE).render(
            **extra,
            messages=list(messages),
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except jinja2.TemplateError as e:
        raise ConfigError(f"the model's chat template failed on these messages: {e}") from e
