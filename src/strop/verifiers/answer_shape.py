r"""What kind of answer a string is, where math-verify's value comparison is not enough.

Two things a careful grader reads before comparing values:

- **Multiple choice.** A gold answer that is one option letter (``B``, ``(B)``,
  ``\text{(B)}``) is answered by the letter the completion chooses, however it
  writes it: ``\boxed{B}``, ``Answer: (B)``, ``The correct option is (B).``,
  ``B) 42``. math-verify reads ``(B)`` in prose as nothing and ``B) 42`` as 42.
- **Brackets.** ``(1, 2)`` is an ordered pair or an open interval, ``[1, 2]`` a
  closed interval, ``\{1, 2\}`` a set: math-verify compares the elements and
  calls ``(1, 2)`` and ``\{1, 2\}`` equal. When both answers are one bracketed
  group with a different bracket pair, they are different answers.

Pure functions on short strings (the callers cap answer length); linear time.

>>> choice_letter(r"\text{(C)}"), choice_letter("42")
('C', None)
>>> chosen_letter("Comparing the options, the correct option is (B).")
'B'
>>> bracket_kind(r"\left( 1, 2 \right)"), bracket_kind(r"\{1, 2\}"), bracket_kind("(0, 1]"), bracket_kind("(x + 1)")
('()', 'set', '(]', None)
"""

from __future__ import annotations

import re

from strop.verifiers.extract import final_boxes

LETTERS = "ABCDEFGHIJ"  # options A-J (MMLU-Pro has ten)
_WRAP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{([^{}]*)\}")
_ONE_LETTER = re.compile(rf"\(?\s*([{LETTERS}])\s*\)?\.?")
# "answer is (B)", "Answer: B", "the correct option is (B)", "choice (B)": the last such statement wins.
_STATED = re.compile(rf"(?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option\s*)?\(([{LETTERS}])\)|"
                     rf"(?:answer|option|choice)\s*(?:is|:|=)\s*\**([{LETTERS}])\**(?![A-Za-z])", re.IGNORECASE)
# A line that starts with the option: "B) 42 apples", "(B) 42 apples".
_LEADING = re.compile(rf"(?m)^\s*\**\(?([{LETTERS}])\)")


def _unwrap(s: str) -> str:
    return _WRAP.sub(lambda m: m.group(1), s.replace("$", "")).strip()


def choice_letter(gold: str) -> str | None:
    """The option letter when ``gold`` is a multiple-choice answer (one letter A-J, bare or in parentheses), else None."""
    m = _ONE_LETTER.fullmatch(_unwrap(gold))
    return m.group(1) if m else None


def chosen_letter(text: str) -> str | None:
    r"""The option a completion chooses: a boxed letter, else the last "answer/option/choice is (X)", else the last
    line starting "X)" or "(X)"; None when it names none.

    >>> chosen_letter(r"so \boxed{\text{(D)}}"), chosen_letter("B) 42 apples"), chosen_letter("I think 42.")
    ('D', 'B', None)
    """
    boxes = final_boxes(text)
    if boxes:
        return choice_letter(boxes[-1]) if len(boxes) == 1 else None  # two boxed options at once choose none
    stated = list(_STATED.finditer(text))
    if stated:
        m = stated[-1]
        return (m.group(1) or m.group(2)).upper()
    leading = _LEADING.findall(text)
    return leading[-1] if leading else None


_OPEN, _CLOSE = "([", ")]"


def bracket_kind(answer: str) -> str | None:
    r"""The bracket pair around the whole of ``answer`` when it is one bracketed group of several elements:
    "()", "[]", "(]", "[)" (a tuple or an interval) or "set" (``\{...\}``, one element or more); else None
    (a number, an expression in grouping parentheses, a union of intervals, a list of groups)."""
    s = _unwrap(answer)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\lbrace", "\\{"), ("\\rbrace", "\\}"), ("\\!", ""), (" ", "")):
        s = s.replace(a, b)
    if s.startswith("\\{") and s.endswith("\\}"):
        depth = 0
        for i in range(0, len(s) - 1):
            if s.startswith("\\{", i):
                depth += 1
            elif s.startswith("\\}", i):
                depth -= 1
                if depth == 0 and i != len(s) - 2:
                    return None  # "\{1\} \cup \{2\}": two groups
        return "set"
    if len(s) < 2 or s[0] not in _OPEN or s[-1] not in _CLOSE:
        return None
    depth, comma = 0, False
    for i, c in enumerate(s):
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None  # the first group closes before the end: "(0, 1) \cup (2, 3)", "(1, 2), (3, 4)"
        elif c == "," and depth == 1:
            comma = True
    return s[0] + s[-1] if comma else None


def shape_mismatch(gold: str, answer: str) -> str | None:
    """Why ``answer`` cannot equal ``gold`` whatever their elements (different bracket pairs), or None."""
    g, a = bracket_kind(gold), bracket_kind(answer)
    if g and a and g != a:
        names = {"()": "a pair or open interval ( )", "[]": "a closed interval [ ]", "(]": "a half-open interval ( ]",
                 "[)": "a half-open interval [ )", "set": "a set { }"}
        return f"{names[a]} is not {names[g]}"
    return None
