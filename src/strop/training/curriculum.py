"""Which problems each RL step trains on: SEC and its baselines.

A curriculum picks one arm (a problem category) per prompt group of a step
and learns from what the step's rollouts taught. Every curriculum owns a numpy
Generator passed in by the caller and can dump and restore its whole state,
RNG included, so a resumed run draws exactly what the uninterrupted run would.

SEC (Chen et al., arXiv 2505.14970; methods.md section 4): arms are drawn from
softmax(Q / tau); after the step, each drawn arm's reward is the mean absolute
advantage of its rollouts and Q(c) <- lr * r(c) + (1 - lr) * Q(c). Arms not
drawn keep their Q (``update="drawn"``, strop's default: an arm nobody tried
this step taught nothing about itself), or, as the SEC reference code does,
get reward 0 and decay (``update="all"``).

Within an arm, problems are drawn with replacement (strop's default) or
without (``sampling="without_replacement"``, the SEC reference: a per-arm
shuffled pass over its problems, refilled when used up).

Curricula are registered by name (``register_curriculum``): a recipe's
``curriculum.kind`` and test-time variant RL look them up here, so a new
curriculum is one class in one module (loaded like a method plugin, through
``STROP_PLUGINS`` or the ``strop.methods`` entry point).

>>> boltzmann([0.0, 0.0], tau=1.0).tolist()
[0.5, 0.5]
>>> sec_update({"a": 0.0, "b": 1.0}, {"a": 1.0}, lr=0.5)
{'a': 0.5, 'b': 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from strop.errors import ConfigError
from strop.registry import add


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


SAMPLING = ("with_replacement", "without_replacement")
SEC_UPDATES = ("drawn", "all")


class Curriculum:
    """Base: arms, an explicit RNG, and state that survives a checkpoint."""

    kind = "base"

    def __init__(self, arms: Sequence[str], rng: np.random.Generator, *, sampling: str = "with_replacement") -> None:
        if not arms:
            raise ConfigError("a curriculum needs at least one arm (problem category)")
        if len(set(arms)) != len(arms):
            raise ConfigError(f"arms must be distinct, got {list(arms)}")
        if sampling not in SAMPLING:
            raise ConfigError(f"curriculum sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
        self.arms = list(arms)
        self.rng = rng
        self.step = 0
        self.sampling = sampling
        self._left: dict[str, list[int]] = {}  # without replacement: each arm's problems not yet drawn this pass

    @classmethod
    def from_spec(cls: type[C], arms: Sequence[str], rng: np.random.Generator, spec: Mapping[str, Any], max_steps: int) -> C:
        """Build from a recipe's ``curriculum`` section (its fields as a mapping); subclasses read their own fields.

        ``spec["options"]`` passes keyword arguments to a curriculum of one's own.
        """
        return cls(arms, rng, sampling=spec.get("sampling", "with_replacement"), **dict(spec.get("options") or {}))

    def probabilities(self) -> np.ndarray:
        """The distribution the next step's arms are drawn from."""
        raise NotImplementedError

    def choose(self, n: int) -> list[str]:
        """Arms for the ``n`` prompt groups of the next step."""
        idx = self.rng.choice(len(self.arms), size=n, p=self.probabilities())
        return [self.arms[i] for i in idx]

    def draw(self, arm: str, n: int) -> int:
        """Index of the problem to pose next among ``arm``'s ``n`` problems."""
        if n < 1:
            raise ConfigError(f"arm {arm!r} has no problems to draw from")
        if self.sampling == "with_replacement":
            return int(self.rng.integers(n))
        left = self._left.get(arm)
        if not left or max(left) >= n:  # a pass used up (or the pool changed): a fresh shuffled pass
            left = [int(i) for i in self.rng.permutation(n)]
        self._left[arm] = left[1:]
        return left[0]

    def update(self, rewards: Mapping[str, float]) -> None:
        """Learn from one finished step (``rewards``: arm -> mean |advantage|)."""
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "arms": self.arms, "step": self.step, "rng": self.rng.bit_generator.state,
                "left": {a: list(v) for a, v in self._left.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind or list(state.get("arms", [])) != self.arms:
            raise ConfigError(
                f"checkpoint holds a {state.get('kind')!r} curriculum over {state.get('arms')}, "
                f"this run has {self.kind!r} over {self.arms}"
            )
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        self._left = {a: [int(i) for i in v] for a, v in state.get("left", {}).items()}  # absent before sampling existed


C = TypeVar("C", bound=Curriculum)
CURRICULA: dict[str, type[Curriculum]] = {}


def register_curriculum(cls: type[C]) -> type[C]:
    """Class decorator: make a Curriculum subclass available by its ``kind`` (recipes, test-time variant RL)."""
    if not isinstance(cls.kind, str) or not cls.kind or cls.kind in ("base", "none"):
        raise ConfigError(f"a curriculum needs its own kind name (not base or none), got {cls.kind!r}")
    return add(CURRICULA, "curriculum", cls.kind, cls)


@register_curriculum
class RandomCurriculum(Curriculum):
    """Every arm equally likely at every step (the usual baseline)."""

    kind = "random"

    def probabilities(self) -> np.ndarray:
        return np.full(len(self.arms), 1.0 / len(self.arms))


@register_curriculum
class ScheduleCurriculum(Curriculum):
    """A fixed order (easy to hard as listed): arm i for steps [i*L, (i+1)*L), L = steps_per_arm."""

    kind = "schedule"

    def __init__(self, arms: Sequence[str], rng: np.random.Generator, *, steps_per_arm: int, sampling: str = "with_replacement") -> None:
        super().__init__(arms, rng, sampling=sampling)
        if steps_per_arm < 1:
            raise ConfigError(f"steps_per_arm must be >= 1, got {steps_per_arm}")
        self.steps_per_arm = steps_per_arm

    def probabilities(self) -> np.ndarray:
        p = np.zeros(len(self.arms))
        p[min(self.step // self.steps_per_arm, len(self.arms) - 1)] = 1.0
        return p

    @classmethod
    def from_spec(cls, arms: Sequence[str], rng: np.random.Generator, spec: Mapping[str, Any], max_steps: int) -> ScheduleCurriculum:
        # Unset steps_per_arm: the run's steps split evenly over the arms.
        return cls(arms, rng, steps_per_arm=spec.get("steps_per_arm") or max(1, max_steps // len(arms)),
                   sampling=spec.get("sampling", "with_replacement"))


@register_curriculum
class SECCurriculum(Curriculum):
    """Boltzmann bandit over arms with Q learnt from mean |advantage| (paper: lr 0.5, tau 0.4 math, 1.0 Countdown).

    ``update``: "drawn" updates only the arms drawn this step; "all" also
    decays the others (reward 0), as the SEC reference code does. ``q0``: the
    initial Q of every arm.
    """

    kind = "sec"

    def __init__(self, arms: Sequence[str], rng: np.random.Generator, *, tau: float = 0.4, lr: float = 0.5, q0: float = 0.0,
                 update: str = "drawn", sampling: str = "with_replacement") -> None:
        super().__init__(arms, rng, sampling=sampling)
        boltzmann([0.0], tau)  # validates tau
        sec_update({}, {}, lr)  # validates lr
        if update not in SEC_UPDATES:
            raise ConfigError(f"SEC update must be one of {', '.join(SEC_UPDATES)}, got {update!r}")
        self.tau, self.lr, self.update_rule = tau, lr, update
        self.q = {a: float(q0) for a in self.arms}

    @classmethod
    def from_spec(cls, arms: Sequence[str], rng: np.random.Generator, spec: Mapping[str, Any], max_steps: int) -> SECCurriculum:
        return cls(arms, rng, tau=spec.get("tau", 0.4), lr=spec.get("lr", 0.5), q0=spec.get("q0", 0.0),
                   update=spec.get("update", "drawn"), sampling=spec.get("sampling", "with_replacement"))

    def probabilities(self) -> np.ndarray:
        return boltzmann([self.q[a] for a in self.arms], self.tau)

    def update(self, rewards: Mapping[str, float]) -> None:
        if self.update_rule == "all":
            rewards = {a: rewards.get(a, 0.0) for a in self.arms}
        self.q = sec_update(self.q, rewards, self.lr)
        super().update(rewards)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "q": dict(self.q)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.q = {a: float(state["q"][a]) for a in self.arms}


def curriculum_class(kind: str) -> type[Curriculum]:
    """The registered curriculum called ``kind`` (plugins loaded first if it is not a built-in one)."""
    if kind not in CURRICULA:
        from strop.methods.base import load_plugins  # a plugin module may register curricula as well as methods

        load_plugins()
    if kind not in CURRICULA:
        raise ConfigError(f"unknown curriculum {kind!r}; choose {', '.join(curriculum_names())} (or none for TRL's own shuffling)")
    return CURRICULA[kind]


def curriculum_names() -> list[str]:
    return sorted(CURRICULA)


def make_curriculum(kind: str, arms: Sequence[str], rng: np.random.Generator, **options: Any) -> Curriculum:
    """Build a registered curriculum by name with its keyword options (``sec``: tau, lr, q0, update; ``schedule``: steps_per_arm)."""
    return curriculum_class(kind)(arms, rng, **options)
