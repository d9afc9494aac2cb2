"""Pulling a final answer out of free-form model output.

Model output is hostile input: these functions are linear-time, never
evaluate anything, and return None rather than raise on text they cannot read.

>>> extract_answer("so the total is \\\\boxed{42}.")
'42'
>>> extract_answer("The answer is 1,234.")
'1234'
>>> extract_answer("17 + 25 = 42")
'42'
>>> extract_answer("no idea") is None
True
>>> extract_answer("The solutions are \\\\boxed{1} and \\\\boxed{3}.")
'1, 3'
"""

from __future__ import annotations

import re

from strop.backends.thinking import strip_thinking

# Reading more than this is never needed to find an answer and would let a
# 10 MB output cost seconds of regex time.
MAX_SCAN_CHARS = 100_000

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (braces balanced), or None. ``final_boxes`` reads a list of boxes."""
    text = strip_thinking(text)[-MAX_SCAN_CHARS:]
    found = _box_before(text, len(text))
    return text[found[1] : found[2]].strip() if found is not None else None


# Several boxes are one answer only when nothing but these stands between them: math delimiters, spacing
# commands and \text{} wrappers (dropped here), then list punctuation and the words "and" / "or". Prose between
# two boxes makes the earlier one a draft that the later one corrects.
_SEP_NOISE = re.compile(r"\$|\\[\[\]()]|\\q?quad(?![a-zA-Z])|\\[,;:! ]|\\\\|~|\\(?:text|textrm|textbf|textit|mathrm)\s*\{([^{}]*)\}")
_JOINER = re.compile(r"\s*(?:[,;]|\\?&)?\s*(?:(?:and|or)\s*)?", re.IGNORECASE)
# A hedge: alternatives offered together ("\boxed{4} or maybe \boxed{5}", "\boxed{4}, possibly \boxed{5}",
# "\boxed{4}. Or perhaps it is \boxed{5}"). Its boxes are one answer, a list of candidates, not a draft and its
# correction: a list is right only where the gold answer is one, so a hedge never wins a single-answer question.
# Drafting keeps other words between the boxes ("First guess \boxed{4}. Checking again, the answer is \boxed{5}").
_HEDGE = re.compile(r"\s*[,;.]?\s*(?:or\s*)?(?:else\s+)?(?:maybe|possibly|perhaps|probably|or)\s*(?:even\s+)?"
                    r"(?:(?:it|that|the\s+answer)\s*(?:is|'s|could\s+be|might\s+be|may\s+be)\s*)?:?\s*", re.IGNORECASE)
# A variable name written outside its box ("$x = \boxed{1}$ and $y = \boxed{2}$"): kept, so the answer reads "x = 1, y = 2".
_LABEL = re.compile(r"(?:^|(?<=[\s,;:(]))([A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?)\s*=\s*$")
# Longest stretch of raw text between two boxes of one answer; more is never a list separator, and the bound keeps
# the regexes above on short strings.
MAX_JOIN_CHARS = 64


def _box_before(text: str, limit: int) -> tuple[int, int, int] | None:
    """(start of ``\\boxed``, start of its content, index of its closing brace) of the last box complete before ``limit``."""
    # If a later \boxed{ never closes, an earlier one cannot close after it either (it would need the later one's
    # braces closed first), so each scan stops where the previous one started: linear time on hostile nesting, also
    # over the several calls that collect a run of boxes (each starts where the last box found begins).
    start = text.rfind("\\boxed", 0, limit)
    while start != -1:
        i = text.find("{", start, limit)
        if i != -1 and text[start + len("\\boxed") : i].strip() == "":
            depth = 0
            for j in range(i, limit):
                c = text[j]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return start, i + 1, j
        limit = start
        start = text.rfind("\\boxed", 0, start)
    return None


def _label(between: str) -> tuple[str, str | None]:
    """Split the text before a box into (what precedes a trailing ``name =``, the name or None)."""
    clean = _SEP_NOISE.sub(lambda m: m.group(1) or " ", between)
    m = _LABEL.search(clean)
    if m is None:
        return clean, None
    head = clean[: m.start(1)]
    # "x + y = \boxed{5}": y is a term of an expression there, not the name of the boxed value.
    return head, None if head.rstrip()[-1:] in set("+-*/^=<>|\\}") else m.group(1)


def final_boxes(text: str) -> list[str]:
    r"""The final answer's boxes: the last ``\boxed{}`` and the boxes joined to it as one list, in order.

    Boxes form one answer when only list punctuation (``,`` ``;`` ``&``), the
    words *and* / *or*, a hedge (*or maybe*, *possibly*, *perhaps*, *or it
    could be*), math delimiters, spacing and ``\text{}`` wrappers stand
    between them, each optionally preceded by a variable name and ``=`` written
    outside the box, which is kept (``$x = \boxed{1}$, $y = \boxed{2}$`` gives
    ``["x = 1", "y = 2"]``). Other text between two boxes ends the run: the
    earlier box was a draft. Contents are stripped; an empty list if no box closes.

    >>> final_boxes(r"so \boxed{(2, 2)} \text{ and } \boxed{(6, 2)}.")
    ['(2, 2)', '(6, 2)']
    >>> final_boxes(r"first \boxed{2}; wait, recomputing gives \boxed{3}")
    ['3']
    >>> final_boxes(r"It is \boxed{4} or maybe \boxed{5}.")
    ['4', '5']
    """
    text = strip_thinking(text)[-MAX_SCAN_CHARS:]
    boxes: list[str] = []
    labels: list[str | None] = []
    box = _box_before(text, len(text))
    while box is not None:
        start, content, close = box
        boxes.append(text[content:close].strip())
        prev = _box_before(text, start)
        joined = prev is not None and start - prev[2] - 1 <= MAX_JOIN_CHARS
        head, name = _label(text[prev[2] + 1 : start] if joined else text[max(0, start - MAX_JOIN_CHARS) : start])
        labels.append(name)
        if not (joined and (_JOINER.fullmatch(head) or _HEDGE.fullmatch(head))):
            break
        box = prev
    boxes.reverse()
    labels.reverse()
    if len(boxes) <= 1:
        return boxes  # a lone box reads as it always did, whatever precedes it
    return [f"{name} = {box}" if name and "=" not in box else box for name, box in zip(labels, boxes)]


def boxed_answer(text: str) -> str | None:
    """The final answer's boxes (``final_boxes``) as one string, a comma-separated list when there are several; or None."""
    boxes = final_boxes(text)
    return ", ".join(boxes) if boxes else None


def normalize_answer(ans: str) -> str:
    """Canonical form for comparing short answers: numbers lose commas, '$' and trailing '.0'."""
    a = ans.strip().strip("$").strip().rstrip(".").strip()
    if _NUMBER.fullmatch(a):
        a = a.replace(",", "")
        if "." in a:
            a = a.rstrip("0").rstrip(".")
        if a in {"-0", ""}:
            a = "0"
    return a


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: boxed (several boxes in a row are one list, ``final_boxes``), else 'answer is N', else the last number.

    Only the visible text counts: a thinking model's reasoning blocks are dropped first (``strop.backends.thinking``).
    """
    text = strip_thinking(text)[-MAX_SCAN_CHARS:]
    boxes = final_boxes(text)
    if boxes:
        return ", ".join(normalize_answer(b) for b in boxes)
    said = _ANSWER_IS.findall(text)
    if said:
        return normalize_answer(said[-1])
    nums = _NUMBER.findall(text)
    return normalize_answer(nums[-1]) if nums else None
