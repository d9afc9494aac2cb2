"""Tasks: problems, prompt templates and the check of an answer, by name.

Built in: gsm8k, math500, aime2024, mit-integration-bee-2025, countdown,
humaneval, arithmetic. A custom task comes from any JSONL file with
``jsonl_task`` (``strop eval --task jsonl --field question=... --field answer=...``).
"""

from strop.tasks import builtin  # noqa: F401  (registers the built-in tasks)
from strop.tasks.arithmetic import ArithmeticProblem, arithmetic_problems
from strop.tasks.base import Problem, Task, get_task, jsonl_task, load_records, register_task, resolve_task, task_names

__all__ = ["ArithmeticProblem", "Problem", "Task", "arithmetic_problems", "get_task", "jsonl_task", "load_records", "register_task",
           "resolve_task", "task_names"]
