"""A task = problems + prompt template + the check of an answer.

Problems come from a local JSON / JSONL / parquet file the user names, from
the Hugging Face hub through ``datasets`` when online, from a package that
carries its data (HumanEval), or from a seeded generator (arithmetic).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strop.errors import ConfigError, StropError, UnknownNameError
from strop.registry import add
from strop.verifiers.base import Verification


@dataclass(frozen=True)
class Problem:
    """One problem. ``data`` holds whatever the verifier needs beyond ``gold`` (numbers, tests, ...)."""

    id: str
    question: str
    gold: Any
    category: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """How to pose and check the problems of one benchmark.

    Attributes:
        name: registry name.
        template: the user message, with ``{question}``; tells the model how to give its answer.
        parse: a data record -> Problem.
        check: (problem, completion) -> Verification.
        hub: (dataset id, config or None, split) for loading from the Hugging Face hub.
        builtin: loads the problems without a file (a package's data or a generator), given a seed.
        verifier: the name of the check in use, for a task that offers several (``strop eval --verifier``):
            recorded in every eval record. None: the task has one check.
        verifiers: this task with the check called NAME instead (ConfigError for an unknown one).
        vote: which of its answers are one vote in an eval's majority@k when the task must decide (``strop.verifiers.voting``);
            None: the run's ``--vote``. HumanEval's answers are programs, one vote when identical ("string"):
            maths equivalence would compare the numbers in their code.
    """

    name: str
    template: str
    parse: Callable[[Mapping[str, Any], int], Problem]
    check: Callable[[Problem, str], Verification]
    hub: tuple[str, str | None, str] | None = None
    builtin: Callable[[int], list[Problem]] | None = None
    description: str = ""
    verifier: str | None = None
    verifiers: Callable[[str], Task] | None = None
    vote: str | None = None

    def prompt(self, problem: Problem) -> str:
        return self.template.replace("{question}", problem.question)

    def load(self, data: str | None = None, *, limit: int | None = None, seed: int = 0,
             categories: Sequence[str] | None = None) -> list[Problem]:
        """Problems from ``data`` (a path, or ``hub:ID[:SPLIT]``), else the task's own source.

        ``categories`` keeps only problems of those categories (before ``limit``).
        """
        if data:
            records = load_records(data, default_hub=self.hub)
            problems = [self.parse(r, i) for i, r in enumerate(records)]
        elif self.builtin is not None:
            problems = self.builtin(seed)
        elif self.hub is not None:
            problems = [self.parse(r, i) for i, r in enumerate(load_records(f"hub:{self.hub[0]}", default_hub=self.hub))]
        else:
            raise ConfigError(f"task '{self.name}' needs --data PATH (a JSON, JSONL or parquet file)")
        ids = [p.id for p in problems]
        if len(set(ids)) != len(ids):
            raise StropError(f"task '{self.name}': problem ids are not unique in the data")
        if categories:
            have = sorted({str(p.category) for p in problems})
            unknown = sorted(set(categories) - set(have))
            if unknown:
                raise ConfigError(f"task '{self.name}' has no problems of categor{'y' if len(unknown) == 1 else 'ies'} "
                                  f"{', '.join(unknown)}; its categories: {', '.join(have) or 'none'}")
            problems = [p for p in problems if str(p.category) in set(categories)]
        return problems[:limit] if limit is not None else problems


def load_records(data: str, default_hub: tuple[str, str | None, str] | None = None) -> list[dict[str, Any]]:
    """Rows of a .json (list of objects), .jsonl or .parquet file, or of ``hub:ID[:SPLIT]``."""
    if data.startswith("hub:"):
        return _from_hub(data[4:], default_hub)
    path = Path(data)
    if not path.is_file():
        raise StropError(f"data file not found: {data}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise StropError("reading parquet needs pyarrow: pip install pyarrow") from e
        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise StropError(f"{data}: a .json file must hold a list of objects")
        return rows
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise StropError(f"{data}:{n}: not valid JSON ({e.msg})") from e
    return rows


def _from_hub(spec: str, default: tuple[str, str | None, str] | None) -> list[dict[str, Any]]:
    name, _, split = spec.partition(":")
    config = default[1] if default and default[0] == name else None
    split = split or (default[2] if default and default[0] == name else "test")
    try:
        import datasets
    except ImportError as e:
        raise StropError("loading from the Hugging Face hub needs the datasets package: pip install datasets") from e
    try:
        return list(datasets.load_dataset(name, config, split=split))
    except Exception as e:  # offline, unknown dataset, gated...
        raise StropError(f"could not load '{name}' ({split}) from the Hugging Face hub: {str(e).splitlines()[0][:200]}; "
                         "pass a local file with --data PATH") from e


def field_of(record: Mapping[str, Any], name: str, task: str) -> Any:
    if name not in record:
        raise StropError(f"task '{task}': a record has no field '{name}' (fields: {', '.join(sorted(record))})")
    return record[name]


_TASKS: dict[str, Task] = {}


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make a task usable by name (``strop eval --task``); a taken name is refused."""
    return add(_TASKS, "task", task.name, task, replace=replace)


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise UnknownNameError(f"unknown task '{name}'; choose one of: {', '.join(task_names())} (or define one with --field)")
    return _TASKS[name]


def jsonl_task(name: str, fields: Mapping[str, str], verifier: str, template: str = "{question}") -> Task:
    """A task from any JSONL file: ``fields`` maps question/answer/id/category to the file's field names.

    ``verifier``: "math" (strop's math check), "math-verify" (Math-Verify's default parse/verify on the whole
    output), "exact" (normalised string match) or "number".
    """
    from strop.verifiers import extract_answer, normalize_answer, verify_math
    from strop.verifiers.base import Verdict
    from strop.verifiers.math_answer import math_verify_default

    for key in ("question", "answer"):
        if key not in fields:
            raise ConfigError(f"a custom task needs a field mapping for '{key}', e.g. --field {key}=my_{key}_column")

    def parse(r: Mapping[str, Any], i: int) -> Problem:
        pid = str(r[fields["id"]]) if "id" in fields else str(i)
        cat = str(r[fields["category"]]) if "category" in fields and fields["category"] in r else None
        return Problem(pid, str(field_of(r, fields["question"], name)), str(field_of(r, fields["answer"], name)), cat)

    def check(p: Problem, completion: str) -> Verification:
        if verifier == "math":
            return verify_math(p.gold, completion)
        if verifier == "math-verify":
            return math_verify_default(p.gold, completion)
        got = extract_answer(completion)
        same = got is not None and normalize_answer(got) == normalize_answer(str(p.gold))
        if verifier == "number":
            try:
                same = got is not None and abs(float(got) - float(p.gold)) <= 1e-6 * max(1.0, abs(float(p.gold)))
            except ValueError:
                same = False
        return Verification(Verdict.CORRECT if same else Verdict.INCORRECT, "", got)

    if verifier not in ("math", "math-verify", "exact", "number"):
        raise ConfigError(f"verifier must be math, math-verify, exact or number, got {verifier!r}")
    return Task(name, template, parse, check, description=f"custom JSONL task ({verifier} check)", verifier=verifier,
                verifiers=lambda other: jsonl_task(name, fields, other, template))


def resolve_task(name: str, fields: Mapping[str, str] | None = None, verifier: str | None = None, data: str | None = None) -> Task:
    """A registered task by name, or ``jsonl``: a task built from ``data`` and a field mapping.

    ``verifier`` names the check of a task that offers several (jsonl: math, exact, number; the
    integrals tasks: strop, ladder, ttrl); None keeps the task's default.
    """
    if name == "jsonl":
        if not data:
            raise ConfigError("task jsonl needs a data file (--data FILE; data.data in a recipe) and a field mapping "
                              "(--field question=COL --field answer=COL; data.fields in a recipe)")
        return jsonl_task("jsonl", dict(fields or {}), verifier or "math")
    task = get_task(name)
    if verifier is None:
        return task
    if task.verifiers is None:
        offering = sorted(n for n in task_names() if _TASKS[n].verifiers is not None)
        raise ConfigError(f"task '{name}' has one check: a verifier choice applies to task jsonl and to {', '.join(offering)}")
    return task.verifiers(verifier)


__all__ = ["Problem", "Task", "get_task", "jsonl_task", "load_records", "register_task", "resolve_task", "task_names"]


