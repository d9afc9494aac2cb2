"""Thinking models: the reasoning a model writes between tags (``<think>...</think>``) is not its answer.

A thinking model (DeepSeek-R1, Qwen3, ...) writes its scratch work inside a
block and its answer after it. Anything read off a completion as an answer
(``extract_answer``, the verifiers) and any summary RC carries to its next
turn must come from the visible text only: a number or a ``\\boxed{}`` the
model tried and dropped while thinking is not what it answered.

What counts as hidden, in ``split_thinking``:

- ``OPEN ... CLOSE``: the block, tags included;
- ``OPEN ...`` never closed (the model ran out of tokens while thinking):
  everything from the open tag on, so a cut-off thought never yields an answer;
- ``... CLOSE`` with no open tag before it: everything up to the close tag.
  Some chat templates (DeepSeek-R1's, Qwen3's with thinking on) open the block
  in the prompt, so the completion starts inside it;
- a close tag left over after that is dropped (``strip_thinking``).

The tags are configurable (``ThinkTags``); strop's default is ``<think>`` /
``</think>``. Scanning is linear in the text (``str.find`` only), since model
output is hostile input.

>>> strip_thinking("<think>maybe 41?</think>The answer is 42.")
'The answer is 42.'
>>> strip_thinking("<think>maybe 41, or")
''
>>> strip_thinking("maybe 41?</think>42")
'42'
>>> strip_thinking("[THINK]x[/THINK]y", ThinkTags("[THINK]", "[/THINK]"))
'y'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from strop.errors import ConfigError


@dataclass(frozen=True)
class ThinkTags:
    """The tags around a thinking model's hidden reasoning.

    Attributes:
        open: the text that opens a reasoning block (default ``<think>``).
        close: the text that closes it (default ``</think>``).
    """

    open: str = "<think>"
    close: str = "</think>"

    def __post_init__(self) -> None:
        for name in ("open", "close"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"think tag {name!r} must be non-blank text, got {v!r}")
        if self.open == self.close:
            # One tag for both ends cannot tell where a block opens from where it closes.
            raise ConfigError(f"think tags must differ, got open = close = {self.open!r}")


THINK = ThinkTags()

Span = tuple[int, int]


def thinking_spans(text: str, tags: ThinkTags = THINK) -> list[Span]:
    """The hidden parts of ``text`` as ``(start, end)`` character spans, tags included, in order (see the module doc)."""
    spans: list[Span] = []
    first_open = text.find(tags.open)
    first_close = text.find(tags.close)
    pos = 0
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        pos = first_close + len(tags.close)
        spans.append((0, pos))
    while True:
        start = text.find(tags.open, pos)
        if start == -1:
            return spans
        end = text.find(tags.close, start + len(tags.open))
        if end == -1:
            spans.append((start, len(text)))
            return spans
        pos = end + len(tags.close)
        spans.append((start, pos))


def strip_thinking(text: str, tags: ThinkTags = THINK) -> str:
    """``text`` without its reasoning blocks: what the model answered, to extract answers and summaries from."""
    spans = thinking_spans(text, tags)
    if not spans:
        return text
    parts, pos = [], 0
    for s, e in spans:
        parts.append(text[pos:s])
        pos = e
    parts.append(text[pos:])
    # A close tag left over after its block closed is markup, not answer; dropping it also makes stripping twice
    # (extract_answer, then extract_boxed inside it) the same as stripping once.
    return "".join(parts).replace(tags.close, "").strip()


def thinking_text(text: str, tags: ThinkTags = THINK) -> str:
    """What the model thought: the text inside its reasoning blocks (tags removed), or the whole text if it has none.

    >>> thinking_text("<think>try 6*7</think>It is 42.")
    'try 6*7'
    >>> thinking_text("no blocks here")
    'no blocks here'
    """
    spans = thinking_spans(text, tags)
    if not spans:
        return text
    inner = []
    for s, e in spans:
        block = text[s:e]
        if block.startswith(tags.open):
            block = block[len(tags.open):]
        if block.endswith(tags.close):
            block = block[: -len(tags.close)]
        inner.append(block.strip())
    return "\n\n".join(b for b in inner if b)


def hidden_token_count(detokenize: Callable[[Sequence[int]], str], token_ids: Sequence[int], text: str,
                       tags: ThinkTags = THINK) -> int:
    """How many of ``token_ids`` (whose text is ``text``) lie in reasoning blocks, tags included.

    A token counts if any of its characters is hidden. Token ``j`` covers the
    characters from ``len(detokenize(ids[:j]))`` to ``len(detokenize(ids[:j+1]))``;
    each block's first and last token are found by bisection over those prefix
    lengths, so a text without tags costs no detokenising at all and one with
    tags O(log n) calls per block.
    """
    spans = thinking_spans(text, tags)
    if not spans:
        return 0
    n = len(token_ids)
    cache: dict[int, int] = {0: 0}

    def length(k: int) -> int:
        if k not in cache:
            cache[k] = len(detokenize(token_ids[:k]))
        return cache[k]

    def first_k(pred: Callable[[int], bool]) -> int:  # smallest k in [0, n] with pred(k), else n + 1
        lo, hi = 0, n + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if mid <= n and pred(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    hidden: set[int] = set()
    for s, e in spans:
        first = first_k(lambda k, s=s: length(k) > s) - 1  # the token holding character s
        last = first_k(lambda k, e=e: length(k) >= e) - 1  # the token holding character e - 1
        hidden.update(range(max(first, 0), min(last, n - 1) + 1))
    return len(hidden)
