"""RC's prompts as named templates: strop's own by default, or a folder of text files.

RC (``strop.methods.rc``) asks the model two things each turn: reason about
the problem (from the latest summary, after the first turn), then summarise
that reasoning. A model trained with RC (``strop.training.rc``, or the
checkpoints the paper's authors released) learned one exact wording of both,
so inference has to ask in that wording: the prompts are data, loadable from
files, and the same ``RCPrompts`` drives RC decoding and RC training.

Five named templates, Python ``str.format`` strings (a literal brace is
written twice: ``\\boxed{{}}``), filled with these fields:

===========================  ==========================================  ===============================
template (file)              used for                                    fields
===========================  ==========================================  ===============================
``reason``                   the first reasoning turn (no summary yet)   ``{problem}``; ``{summary}`` optional, filled with ""
``reason_from_summary``      every later reasoning turn                  ``{problem}``, ``{summary}``
``summarize``                the first summary (no earlier summary)      ``{problem}``, ``{reasoning}``; ``{summary}`` optional, ""
``summarize_from_summary``   every later summary                         ``{problem}``, ``{reasoning}``, ``{summary}``
``refine``                   self-refine's later turns                   ``{problem}``, ``{reasoning}`` (the previous attempt)
===========================  ==========================================  ===============================

``{problem}`` is the task's question, ``{summary}`` the summary carried from
the previous turn, ``{reasoning}`` the reasoning turn being summarised.

A folder for ``load_prompts`` (``--rc-prompts DIR``, a recipe's
``rc.prompts``) holds ``reason.txt`` and ``summarize.txt``; the other three
files are optional. Without ``reason_from_summary.txt`` the ``reason.txt``
template serves every turn, so it must hold ``{summary}`` (an empty summary
section on turn 1: the way the reference code's single reasoning prompt
works); likewise ``summarize.txt`` without ``summarize_from_summary.txt``.
Without ``refine.txt`` self-refine keeps strop's own. Files are read as UTF-8,
exactly (a trailing newline is part of the prompt). Every problem with the
folder (a missing file, an unknown file, an unknown or missing field, a stray
brace) is reported at once, in one ``ConfigError``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, fields
from pathlib import Path

from strop.errors import ConfigError

REASON = (
    "{problem}\n\nSolve the problem step by step and put your final answer in \\boxed{{}}."
)
REASON_FROM_SUMMARY = (
    "{problem}\n\nHere is a summary of my earlier attempt at this problem:\n{summary}\n\n"
    "Improve on it: check the summary, verify its answer or prove it another way, try a different strategy, "
    "or continue where it left off. Put your final answer in \\boxed{{}}."
)
_SUMMARY_ASK = (
    "Here is my latest attempt:\n{reasoning}\n\n"
    "Write a first-person summary of my work so far in at most two short paragraphs: what I tried, what I found, "
    "and my current answer. Keep what matters from the earlier summary. Do not add new reasoning."
)
SUMMARIZE = "{problem}\n\n" + _SUMMARY_ASK
SUMMARIZE_FROM_SUMMARY = "{problem}\n\nSummary of my earlier attempts:\n{summary}\n\n" + _SUMMARY_ASK
REFINE = (
    "{problem}\n\nHere is my previous attempt:\n{reasoning}\n\n"
    "Improve on it: check it, fix mistakes or try another way. Put your final answer in \\boxed{{}}."
)

# template -> (fields it must hold, fields it may hold)
FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "reason": (frozenset({"problem"}), frozenset({"summary"})),
    "reason_from_summary": (frozenset({"problem", "summary"}), frozenset()),
    "summarize": (frozenset({"problem", "reasoning"}), frozenset({"summary"})),
    "summarize_from_summary": (frozenset({"problem", "reasoning", "summary"}), frozenset()),
    "refine": (frozenset({"problem", "reasoning"}), frozenset()),
}
# Files a folder must hold; the others fall back as the module doc says.
REQUIRED_FILES = ("reason", "summarize")
# Field names other RC code uses, and what they are called here: named in the error, so a renamed copy is one step away.
_RENAMES = {"curr_summary": "summary", "existing_summary": "summary", "attempt": "reasoning", "question": "problem"}


def template_problems(name: str, template: str) -> list[str]:
    """What is wrong with ``template`` as RC template ``name`` (empty: nothing)."""
    required, optional = FIELDS[name]
    allowed = required | optional
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:  # a lone "{" or "}"
        return [f"{e} (a literal brace is written twice: {{{{ or }}}})"]
    problems, seen = [], set()
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if field not in allowed:
            hint = f" (rename it {{{_RENAMES[field]}}})" if field in _RENAMES and _RENAMES[field] in allowed else ""
            problems.append(f"unknown field {shown}{hint}")
        elif spec or conversion:
            problems.append(f"{shown}: fields take no conversion or format spec")
        seen.add(field)
    missing = sorted(required - seen)
    if missing:
        problems.append(f"missing field{'s' if len(missing) > 1 else ''} {', '.join('{' + m + '}' for m in missing)}")
    if problems:
        fields_ = ", ".join("{" + f + "}" for f in sorted(required)) + (
            "; optional " + ", ".join("{" + f + "}" for f in sorted(optional)) if optional else "")
        problems[-1] += f" [{name} takes {fields_}]"
    return problems


@dataclass(frozen=True)
class RCPrompts:
    """The five RC templates (see the module doc for when each is used and its fields); strop's own by default.

    Validated on construction: an unknown or missing field, or a stray brace,
    in any template is one ``ConfigError`` listing every problem.
    """

    reason: str = REASON
    reason_from_summary: str = REASON_FROM_SUMMARY
    summarize: str = SUMMARIZE
    summarize_from_summary: str = SUMMARIZE_FROM_SUMMARY
    refine: str = REFINE

    def __post_init__(self) -> None:
        _raise_if_bad({f.name: template_problems(f.name, getattr(self, f.name)) for f in fields(self)}, "RC prompts")

    def reason_prompt(self, problem: str, summary: str) -> str:
        """The reasoning turn's instruction: ``reason`` at the start (empty summary), else ``reason_from_summary``."""
        if not summary:
            return self.reason.format(problem=problem, summary="")
        return self.reason_from_summary.format(problem=problem, summary=summary)

    def summary_prompt(self, problem: str, reasoning: str, summary: str) -> str:
        """The summariser's instruction: ``summarize`` when there is no earlier summary, else ``summarize_from_summary``."""
        if not summary:
            return self.summarize.format(problem=problem, reasoning=reasoning, summary="")
        return self.summarize_from_summary.format(problem=problem, reasoning=reasoning, summary=summary)

    def refine_prompt(self, problem: str, attempt: str) -> str:
        """Self-refine: ``reason`` for the first attempt, then ``refine`` carrying the previous attempt whole."""
        if not attempt:
            return self.reason.format(problem=problem, summary="")
        return self.refine.format(problem=problem, reasoning=attempt)


def _raise_if_bad(found: dict[str, list[str]], what: str) -> None:
    lines = [f"  {where}: {p}" for where, ps in found.items() for p in ps]
    if lines:
        raise ConfigError(f"{what} are not valid templates:\n" + "\n".join(lines))


def load_prompts(directory: str | Path) -> RCPrompts:
    """``RCPrompts`` from a folder of ``<template>.txt`` files (the module doc says which are needed)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"--rc-prompts: {folder} is not a folder (it should hold reason.txt and summarize.txt)")
    names = list(FIELDS)
    texts: dict[str, str] = {}
    found: dict[str, list[str]] = {}
    unknown = sorted(p.name for p in folder.glob("*.txt") if p.stem not in FIELDS)
    if unknown:
        found[str(folder)] = [f"unknown template file{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                              f"(template files: {', '.join(n + '.txt' for n in names)})"]
    for name in names:
        path = folder / f"{name}.txt"
        if not path.is_file():
            if name in REQUIRED_FILES:
                found.setdefault(str(folder), []).append(f"missing {name}.txt")
            continue
        try:
            texts[name] = path.read_bytes().decode("utf-8")  # bytes: no newline translation, the text exactly
        except UnicodeDecodeError as e:
            found[str(path)] = [f"not UTF-8 text ({e.reason} at byte {e.start})"]
    # One file for every turn when the "from summary" one is absent: then it must take the summary as well.
    for first, later in (("reason", "reason_from_summary"), ("summarize", "summarize_from_summary")):
        if first in texts and later not in texts:
            texts[later] = texts[first]
    for name, text in texts.items():
        source = folder / f"{name}.txt"
        problems = template_problems(name, text)
        if not source.is_file():  # a turn-1 file standing in for a later one: say only what its own entry did not
            first = name.removesuffix("_from_summary")
            said = {p.split(" [")[0] for p in template_problems(first, text)}
            problems = [p for p in problems if p.split(" [")[0] not in said]
            source = folder / f"{first}.txt"
            name_shown = f"{source} (serving every turn, as there is no {name}.txt)"
        else:
            name_shown = str(source)
        if problems:
            found.setdefault(name_shown, []).extend(problems)
    _raise_if_bad(found, f"the RC prompts in {folder}")
    return RCPrompts(**texts)


def write_prompts(prompts: RCPrompts, directory: str | Path) -> Path:
    """Write all five templates as ``<template>.txt`` files (creating the folder); ``load_prompts`` reads them back equal."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for f in fields(prompts):
        (folder / f"{f.name}.txt").write_bytes(getattr(prompts, f.name).encode("utf-8"))
    return folder
