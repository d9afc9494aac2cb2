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
"""

from __future__ import annotations

import re

# Reading more than this is never needed to find an answer and would let a
# 10 MB output cost seconds of regex time.
MAX_SCAN_CHARS = 100_000

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (braces balanced), or None."""
    text = text[-MAX_SCAN_CHARS:]
    # If a later \boxed{ never closes, an earlier one cannot close after it
    # either (it would need the later one's braces closed first), so each scan
    # stops where the previous one started: linear time on hostile nesting.
    limit = len(text)
    start = text.rfind("\\boxed")
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
                        return text[i + 1 : j].strip()
        limit = start
        start = text.rfind("\\boxed", 0, start)
    return None


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
    """The final answer of a completion: boxed, else 'answer is N', else the last number."""
    text = text[-MAX_SCAN_CHARS:]
    boxed = extract_boxed(text)
    if boxed is not None:
        return normalize_answer(boxed)
    said = _ANSWER_IS.findall(text)
    if said:
        return normalize_answer(said[-1])
    nums = _NUMBER.findall(text)
    return normalize_answer(nums[-1]) if nums else None
