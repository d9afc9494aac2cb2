"""Where a training step's rows come from: one protocol, and the curriculum's draws as one source of it.

The trainer (``training.grpo``) knows sources only through ``RowSource``:

1. ``draw(groups, policy)``: the rows of ``groups`` prompt groups, K
   consecutive identical rows per group, for the whole (global) batch. Every
   rank draws the same rows and keeps its own slice, the layout TRL's
   RepeatSampler produces. Dynamic sampling calls ``draw`` again within a
   step for fresh groups; a source keeps everything drawn since its last
   ``learn``.
2. ``learn(step, advantages, book, write)``: what the step's generated
   groups scored, for every row drawn since the last ``learn`` in draw order
   (gathered over ranks); the source updates itself (SEC's Q, RC's records),
   writes its log line when ``write`` (the main process) and returns the
   step's metrics.
3. ``state_dict()`` / ``load_state_dict()``: its whole state, RNG included,
   saved as ``checkpoint_name`` in every checkpoint, so a resumed run draws
   what the uninterrupted one would.

Two sources implement it: ``CurriculumRows`` (a curriculum chooses arms,
then problems of each arm) and ``training.rc.RCRows`` (RC rollouts with the
current policy, then the drawn states' reasoning prompts).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from strop.backends.base import Backend
from strop.training.advantages import arm_signal
from strop.training.curriculum import Curriculum

CURRICULUM_STATE = "strop_curriculum.json"

# A zero-argument factory of a context in which a backend decodes with the current policy (set to eval mode, its
# prefix cache dropped afterwards): what a source that rolls out (RC) decodes with. Others ignore it.
PolicyBackend = Callable[[], contextlib.AbstractContextManager[Backend]]


@runtime_checkable
class RowSource(Protocol):
    """A source of training rows: draws a step's prompt groups, learns from their scores, survives a checkpoint."""

    checkpoint_name: str  # the file its state_dict() goes to in a checkpoint folder

    def draw(self, groups: int, policy: PolicyBackend) -> list[dict]:
        """Rows of ``groups`` prompt groups (K consecutive per group): the global batch, alike on every rank."""
        ...

    def learn(self, step: int, advantages: np.ndarray, book: Sequence[tuple[str, float]], write: bool) -> dict[str, float]:
        """Learn from the rows drawn since the last call: their advantages, (category, reward) and this step's number.

        ``write``: whether this process writes the source's log. Returns metrics for the step.
        """
        ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


def per_category(book: Sequence[tuple[str, float]]) -> dict[str, list[float]]:
    """Rewards grouped by category, in order of first appearance."""
    out: dict[str, list[float]] = {}
    for cat, score in book:
        out.setdefault(cat, []).append(score)
    return out


class CurriculumRows:
    """Rows chosen by a curriculum: one arm per prompt group, one problem of that arm per group.

    Args:
        curriculum: chooses arms and problems, and learns from each arm's mean |advantage|.
        pool: each arm's rows (as ``data.prompt_rows`` renders them).
        num_generations: K, rows per group.
        log: ``curriculum.jsonl``: one record per step (probabilities, groups per arm, signal, reward, Q), or None.
    """

    checkpoint_name = CURRICULUM_STATE

    def __init__(self, curriculum: Curriculum, pool: dict[str, list[dict]], num_generations: int, log: Path | None = None) -> None:
        self.curriculum, self.pool, self.k, self.log = curriculum, pool, num_generations, log
        self.drawn_arms: list[str] = []  # one per row, everything drawn in the current (or last learnt) step
        self.probs = np.zeros(0)  # the distribution the step's arms were drawn from
        self._learnt = True  # the next draw starts a step

    def draw(self, groups: int, policy: PolicyBackend) -> list[dict]:
        if self._learnt:
            self.drawn_arms, self._learnt = [], False
        self.probs = self.curriculum.probabilities()
        arms = self.curriculum.choose(groups)
        rows = []
        for arm in arms:
            choices = self.pool[arm]
            rows.extend([choices[self.curriculum.draw(arm, len(choices))]] * self.k)
        self.drawn_arms += [a for a in arms for _ in range(self.k)]
        return rows

    def learn(self, step: int, advantages: np.ndarray, book: Sequence[tuple[str, float]], write: bool) -> dict[str, float]:
        self._learnt = True
        signal = arm_signal(advantages, self.drawn_arms)
        self.curriculum.update(signal)
        k = self.k
        record: dict[str, Any] = {
            "step": step,
            "probs": dict(zip(self.curriculum.arms, [float(x) for x in self.probs])),
            "counts": {a: self.drawn_arms.count(a) // k for a in self.curriculum.arms},
            "signal": signal,
            "reward": {c: float(np.mean(s)) for c, s in per_category(book).items()},
        }
        metrics: dict[str, float] = {}
        q = getattr(self.curriculum, "q", None)
        if q is not None:
            record["q"] = dict(q)
            metrics.update({f"curriculum/q/{a}": v for a, v in q.items()})
        metrics.update({f"curriculum/share/{a}": n * k / len(advantages) for a, n in record["counts"].items()})
        if self.log is not None and write:
            with self.log.open("a") as f:
                f.write(json.dumps(record) + "\n")
        return metrics

    def state_dict(self) -> dict[str, Any]:
        # The curriculum's own state, as checkpoints held it before sources existed.
        return self.curriculum.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state)
