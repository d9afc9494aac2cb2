"""Which problems each RL step trains on: SEC and its baselines.

A curriculum picks one arm (a problem category) per prompt group of a step
and learns from what the step's rollouts taught. Every curriculum owns a numpy
Generator passed in by the caller and can dump and restore its whole state,
RNG included, so a resumed run draws exactly what the uninterrupted run would.

SEC (Chen et al., arXiv 2505.14970; methods.md section 4): arms are drawn from
softmax(Q / tau); after the step, each drawn arm's reward is the mean absolute
advantage of its rollouts and Q(c) <- lr * r(c) + (1 - lr) * Q(c). Arms not
drawn keep their Q.

>>> boltzmann([0.0, 0.0], tau=1.0).tolist()
[0.5, 0.5]
>>> sec_update({"a": 0.0, "b": 1.0}, {"a": 1.0}, lr=0.5)
{'a': 0.5, 'b': 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from strop.errors import ConfigError


def boltzmann(q: Sequence[float], tau: float) -> np.ndarray:
    """softmax(q / tau), computed stably (max subtracted)."""
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")
    z = np.asarray(q, dtype=np.float64) / tau
    w = np.exp(z - z.max())
    return w / w.sum()


def sec_update(q: Mapping[str, float], rewards: Mapping[str, float], lr: float) -> dict[str, float]:
    """TD(0) with a constant step: Q(c) <- lr * r(c) + (1 - lr) * Q(c) for each arm with a reward."""
    if not 0 < lr <= 1:
        raise ConfigError(f"lr must be in (0, 1], got {lr}")
    unknown = set(rewards) - set(q)
    if unknown:
        raise ConfigError(f"rewards for unknown arms: {sorted(unknown)}")
    return {c: (lr * rewards[c] + (1 - lr) * v) if c in rewards else v for c, v in q.items()}


class Curriculum:
    """Base: arms, an explicit RNG, and state that survives a checkpoint."""

    kind = "base"

    def __init__(self, arms: Sequence[str], rng: np.random.Generator) -> None:
        if not arms:
            raise ConfigError("a curriculum needs at least one arm (problem category)")
        if len(set(arms)) != len(arms):
            raise ConfigError(f"arms must be distinct, got {list(arms)}")
        self.arms = list(arms)
        self.rng = rng
        self.step = 0

    def probabilities(self) -> np.ndarray:
        """The distribution the next step's arms are drawn from."""
        raise NotImplementedError

    def choose(self, n: int) -> list[str]:
        """Arms for the ``n`` prompt groups of the next step."""
        idx = self.rng.choice(len(self.arms), size=n, p=self.probabilities())
        return [self.arms[i] for i in idx]

    def update(self, rewards: Mapping[str, float]) -> None:
        """Learn from one finished step (``rewards``: arm -> mean |advantage|)."""
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "arms": self.arms, "step": self.step, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind or list(state.get("arms", [])) != self.arms:
            raise ConfigError(
                f"checkpoint holds a {state.get('kind')!r} curriculum over {state.get('arms')}, "
                f"this run has {self.kind!r} over {self.arms}"
            )
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]


class RandomCurriculum(Curriculum):
    """Every arm equally likely at every step (the usual baseline)."""

    kind = "random"

    def probabilities(self) -> np.ndarray:
        return np.full(len(self.arms), 1.0 / len(self.arms))


class ScheduleCurriculum(Curriculum):
    """A fixed order (easy to hard as listed): arm i for steps [i*L, (i+1)*L), L = steps_per_arm."""

    kind = "schedule"

    def __init__(self, arms: Sequence[str], rng: np.random.Generator, *, steps_per_arm: int) -> None:
        super().__init__(arms, rng)
        if steps_per_arm < 1:
            raise ConfigError(f"steps_per_arm must be >= 1, got {steps_per_arm}")
        self.steps_per_arm = steps_per_arm

    def probabilities(self) -> np.ndarray:
        p = np.zeros(len(self.arms))
        p[min(self.step // self.steps_per_arm, len(self.arms) - 1)] = 1.0
        return p


class SECCurriculum(Curriculum):
    """Boltzmann bandit over arms with Q learnt from mean |advantage| (paper: lr 0.5, tau 0.4 math, 1.0 Countdown)."""

    kind = "sec"

    def __init__(self, arms: Sequence[str], rng: np.random.Generator, *, tau: float = 0.4, lr: float = 0.5, q0: float = 0.0) -> None:
        super().__init__(arms, rng)
        boltzmann([0.0], tau)  # validates tau
        sec_update({}, {}, lr)  # validates lr
        self.tau, self.lr = tau, lr
        self.q = {a: float(q0) for a in self.arms}

    def probabilities(self) -> np.ndarray:
        return boltzmann([self.q[a] for a in self.arms], self.tau)

    def update(self, rewards: Mapping[str, float]) -> None:
        self.q = sec_update(self.q, rewards, self.lr)
        super().update(rewards)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "q": dict(self.q)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.q = {a: float(state["q"][a]) for a in self.arms}


def make_curriculum(kind: str, arms: Sequence[str], rng: np.random.Generator, **options: Any) -> Curriculum:
    """Build a curriculum by name: ``sec`` (tau, lr), ``random``, or ``schedule`` (steps_per_arm)."""
    if kind == "sec":
        return SECCurriculum(arms, rng, **options)
    if kind == "random":
        return RandomCurriculum(arms, rng)
    if kind == "schedule":
        return ScheduleCurriculum(arms, rng, **options)
    raise ConfigError(f"unknown curriculum {kind!r}; choose sec, random, schedule (or none for TRL's own shuffling)")
