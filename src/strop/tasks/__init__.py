"""Tasks: problems, prompts, answer extraction and the check of an answer."""

from strop.tasks.arithmetic import ArithmeticProblem, arithmetic_problems

__all__ = ["ArithmeticProblem", "arithmetic_problems"]
