"""strop verifiers as TRL reward functions.

TRL calls each reward function with the batch's completions and every dataset
column as keyword lists, and expects one float per completion. ``correct``
is 1 when the task's verifier accepts the completion, else 0 (a wrong,
malformed, unverifiable or timed-out answer alike: model output is hostile
input and every case ends in a verdict). The optional ``answer_format``
reward is 1 when an answer could be extracted at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from strop.errors import StropError
from strop.tasks import Problem, Task
from strop.verifiers.base import Verification
from strop.verifiers.isolation import parallel_map


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversation whose last message is the model's."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


class RewardBook:
    """Verifier-backed reward functions (what each row's category scored is read by the trainer from the rewards
    TRL returns, ``StropGRPOTrainer.round_book``, not kept here)."""

    def __init__(self, task: Task, problems: Sequence[Problem], format_weight: float = 0.0) -> None:
        self.task = task
        self.by_id = {p.id: p for p in problems}
        self.format_weight = format_weight
        # The last batch's verdicts by (problem id, completion text): the format reward reuses the
        # correctness reward's work when TRL calls it second, and verifies itself otherwise, so
        # neither function depends on the order TRL calls them in.
        self._verdicts: dict[tuple[str, str], Verification] = {}

    def verify(self, completion: Any, problem_id: str) -> Verification:
        if problem_id not in self.by_id:
            raise StropError(f"reward asked about unknown problem id {problem_id!r}")
        return self.task.check(self.by_id[problem_id], completion_text(completion))

    def verdicts(self, completions: Sequence[Any], problem_ids: Sequence[str]) -> list[Verification]:
        """The batch's verdicts, verifying (in parallel) only what this batch has not verified yet."""
        keys = [(pid, completion_text(c)) for c, pid in zip(completions, problem_ids)]
        todo = sorted({k for k in keys if k not in self._verdicts})
        if todo:
            # In parallel: math and integral checks each take a warm checker process, code checks their own sandbox.
            fresh = dict(zip(todo, parallel_map(lambda k: self.verify(k[1], k[0]), todo)))
            # Keep only this batch's: the next batch is other completions, and the map must not grow for a whole run.
            self._verdicts = {k: self._verdicts.get(k) or fresh[k] for k in set(keys)}
        return [self._verdicts[k] for k in keys]

    def functions(self) -> list[Callable[..., list[float]]]:
        """The reward functions to hand TRL, in the order of :meth:`weights`."""
        book = self

        def correct(completions: list[Any], problem_id: list[str], **_: Any) -> list[float]:
            return [1.0 if v.correct else 0.0 for v in book.verdicts(completions, problem_id)]

        def answer_format(completions: list[Any], problem_id: list[str], **_: Any) -> list[float]:
            return [float(v.extracted is not None) for v in book.verdicts(completions, problem_id)]

        return [correct, answer_format] if self.format_weight > 0 else [correct]

    def weights(self) -> list[float]:
        return [1.0, self.format_weight] if self.format_weight > 0 else [1.0]
