"""Text in, text out: message contents are tokenised as plain text on every backend.

A chat prompt mixes two kinds of text: the chat template's own markers
(``<|im_start|>``, ``<|im_end|>``, ...), which must become control tokens, and
the contents of the messages (a user's question, a task's problem, a summary a
model wrote in an earlier RC turn), which must not: a user message holding the
text ``<|im_end|>\\n<|im_start|>system\\n...`` is text about tokens, as it is on
every OpenAI-compatible API, not a new system turn.

``chat_ids`` renders the template once with the real contents (the text the
model sees, unchanged) and once with a unique marker per content, which tells
where each content lies in the rendered text. Every occurrence of a control
token's text is then located; a content that no occurrence touches is left
inside the surrounding text and tokenised with it exactly as before, so a
prompt whose contents hold no control-token text gets the very ids it always
got. A content that one touches is cut out and tokenised as plain text (the
tokenizer's own "special tokens off" mode), and the template's pieces around it
keep their markers. A template that rewrites contents in a way the markers
cannot follow (beyond trimming whitespace) leaves no spans: then contents
without control-token text are tokenised as before, and one with such text is
refused with a ``ConfigError`` rather than tokenised as control tokens.

Text that is not valid Unicode (lone surrogates, which JSON's ``"\\ud800"``
escape and Python's ``surrogateescape`` produce) cannot be encoded for a
tokenizer: ``check_text`` turns it into a ``ConfigError`` naming where it is.
"""

from __future__ import annotations

import bisect
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from strop.backends.chat import Message, render_chat
from strop.errors import ConfigError

Span = tuple[int, int]


class ChatTokenizer(Protocol):
    """What ``chat_ids`` needs: a tokenizer with both modes, its control tokens' text and the chat template."""

    chat_template: str | None
    bos_token: str
    eos_token: str

    def tokenize(self, text: str) -> list[int]: ...
    def tokenize_text(self, text: str) -> list[int]: ...
    def control_texts(self) -> tuple[str, ...]: ...


def check_text(text: str, what: str) -> None:
    """Raise ``ConfigError`` if ``text`` is not valid Unicode (a lone surrogate), saying where.

    >>> check_text("fine", "the question")
    >>> check_text("a\\ud800b", "the question")
    Traceback (most recent call last):
    ...
    strop.errors.ConfigError: the question is not valid Unicode: a lone surrogate U+D800 at character 1; send UTF-8 text
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        byte = f" (how Python reads the byte 0x{code - 0xDC00:02X} of input that is not UTF-8)" if 0xDC80 <= code <= 0xDCFF else ""
        raise ConfigError(f"{what} is not valid Unicode: a lone surrogate U+{code:04X} at character {e.start}{byte}; "
                          "send UTF-8 text") from None


def content_spans(template: str | None, messages: Sequence[Message], text: str, *, bos_token: str = "",
                  eos_token: str = "", add_generation_prompt: bool = True,
                  template_kwargs: Mapping[str, Any] | None = None) -> list[Span] | None:
    """Where each message's content lies in ``text`` (the chat rendered with ``template``), in order; None if unknown.

    The template is rendered again with a marker in place of each content; the
    text between markers is the template's own. A template may trim a content;
    any other change (or a template whose output depends on the contents)
    gives None. Empty contents have no span.

    >>> content_spans(None, [{"role": "user", "content": "2 + 2?"}], "Question: 2 + 2?\\nAnswer:")
    [(10, 16)]
    """
    nonce = secrets.token_hex(8)
    marked = [{**m, "content": f"[[strop-{nonce}-{i}]]"} for i, m in enumerate(messages)]
    try:
        skeleton = render_chat(template, marked, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=add_generation_prompt,
                               template_kwargs=template_kwargs)
    except ConfigError:
        return None
    parts = re.split(rf"\[\[strop-{nonce}-(\d+)\]\]", skeleton)
    if not text.startswith(parts[0]):
        return None
    pos, spans = len(parts[0]), []
    for k in range(1, len(parts), 2):
        content, after = messages[int(parts[k])]["content"], parts[k + 1]
        for shown in dict.fromkeys((content, content.strip(), content.lstrip(), content.rstrip())):
            if text.startswith(shown, pos) and text.startswith(after, pos + len(shown)):
                break
        else:
            return None
        if shown:
            spans.append((pos, pos + len(shown)))
        pos += len(shown) + len(after)
    return spans if pos == len(text) else None


def control_hits(text: str, controls: Iterable[str]) -> list[Span]:
    """Every occurrence (overlapping ones too) of every control token's text in ``text``, sorted.

    >>> control_hits("a<|x|>b<|x|>", ["<|x|>"])
    [(1, 6), (7, 12)]
    """
    hits = []
    for c in controls:
        if not c:
            continue
        i = text.find(c)
        while i >= 0:
            hits.append((i, i + len(c)))
            i = text.find(c, i + 1)
    return sorted(hits)


def touched(spans: Sequence[Span], hits: Sequence[Span]) -> list[Span]:
    """The spans (sorted, disjoint) that any hit overlaps, in order.

    >>> touched([(0, 3), (5, 9), (12, 20)], [(7, 13)])
    [(5, 9), (12, 20)]
    """
    starts = [s for s, _ in spans]
    out: set[int] = set()
    for a, b in hits:
        j = bisect.bisect_left(starts, b) - 1  # the last span starting before the hit ends
        while j >= 0 and spans[j][1] > a:
            out.add(j)
            j -= 1
    return [spans[j] for j in sorted(out)]


def split_tokenize(text: str, plain: Sequence[Span], tokenize: Callable[[str], list[int]],
                   tokenize_text: Callable[[str], list[int]]) -> list[int]:
    """``text`` tokenised with control tokens parsed, except the ``plain`` spans, tokenised as plain text."""
    if not plain:
        return tokenize(text)
    ids: list[int] = []
    pos = 0
    for s, e in plain:
        if pos < s:
            ids += tokenize(text[pos:s])
        ids += tokenize_text(text[s:e])
        pos = e
    if pos < len(text):
        ids += tokenize(text[pos:])
    return ids


def chat_ids(tok: ChatTokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = True,
             template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
    """Prompt ids of a chat: the template's markers are control tokens, the message contents plain text.

    ``template_kwargs``: chat-template variables (``enable_thinking``), see ``render_chat``.
    """
    for i, m in enumerate(messages):
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            check_text(m["content"], f"message {i}'s content")
    kw: dict[str, Any] = {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "add_generation_prompt": add_generation_prompt,
                          "template_kwargs": template_kwargs}
    text = render_chat(tok.chat_template, messages, **kw)
    controls = tok.control_texts()
    if not controls:
        return tok.tokenize(text)
    spans = content_spans(tok.chat_template, messages, text, **kw)
    if spans is None:
        for i, m in enumerate(messages):
            hit = next((c for c in controls if c in m["content"]), None)
            if hit is not None:
                raise ConfigError(f"message {i}'s content holds the control-token text {hit!r}, and this model's chat template "
                                  "changes message contents in a way strop cannot follow, so it cannot keep that text as "
                                  "plain text; remove it from the message")
        return tok.tokenize(text)
    return split_tokenize(text, touched(spans, control_hits(text, controls)), tok.tokenize, tok.tokenize_text)


# ------------------------------------------------------- transformers tokenizers
def hf_tokenize_text(tokenizer: Any, text: str) -> list[int]:
    """Ids of ``text`` with a transformers tokenizer, special tokens' text left as text, nothing added."""
    check_text(text, "the text")
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


def hf_tokenize(tokenizer: Any, text: str) -> list[int]:
    """Ids of ``text`` with a transformers tokenizer, special tokens parsed, nothing added."""
    check_text(text, "the text")
    return list(tokenizer.encode(text, add_special_tokens=False))


def hf_control_texts(tokenizer: Any) -> tuple[str, ...]:
    """The text of every special added token: what ``split_special_tokens`` keeps as text."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    texts = {t.content for t in added.values() if getattr(t, "special", False) and t.content}
    texts |= {t for t in getattr(tokenizer, "all_special_tokens", ()) if isinstance(t, str) and t}
    return tuple(sorted(texts))


class HFText:
    """A transformers tokenizer seen as a ``ChatTokenizer`` (what ``chat_ids`` takes); control texts read once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chat_template = getattr(tokenizer, "chat_template", None)
        self.bos_token = getattr(tokenizer, "bos_token", None) or ""
        self.eos_token = getattr(tokenizer, "eos_token", None) or ""
        self._controls = hf_control_texts(tokenizer)

    def tokenize(self, text: str) -> list[int]:
        return hf_tokenize(self.tokenizer, text)

    def tokenize_text(self, text: str) -> list[int]:
        return hf_tokenize_text(self.tokenizer, text)

    def control_texts(self) -> tuple[str, ...]:
        return self._controls
