"""Group-relative advantages and the per-arm signal SEC learns from.

Pure numpy, so the numbers can be checked by hand. The GRPO loss itself runs
in TRL; ``group_advantages`` is the same formula TRL applies (a test holds
the two together), kept here because the curriculum and the RC trainer reason
about advantages without a trainer at hand.

>>> group_advantages([1, 0, 0, 0], group_size=4).round(3).tolist()
[1.5, -0.5, -0.5, -0.5]
>>> arm_signal([1.0, -1.0, 0.5, 0.5], ["a", "a", "b", "b"])
{'a': 1.0, 'b': 0.5}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strop.errors import ConfigError

SCALES = ("group", "batch", "none")


def group_advantages(rewards: Sequence[float], group_size: int, *, scale: str = "group", eps: float = 1e-4) -> np.ndarray:
    """A_i = (r_i - mean of i's group) / (std + eps), groups of ``group_size`` consecutive rewards.

    ``std`` is the unbiased (n-1) standard deviation of the group (``scale="group"``),
    of the whole batch (``"batch"``), or 1 with no ``eps`` (``"none"``: Dr. GRPO's
    unscaled form). A group whose rewards are all equal gets advantage 0.
    """
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {SCALES}, got {scale!r}")
    r = np.asarray(rewards, dtype=np.float64)
    if group_size < 1 or r.size % group_size:
        raise ConfigError(f"{r.size} rewards do not split into groups of {group_size}")
    g = r.reshape(-1, group_size)
    centred = (g - g.mean(axis=1, keepdims=True)).reshape(-1)
    if scale == "none":
        return centred
    ddof = 1 if group_size > 1 else 0
    if scale == "group":
        std = np.repeat(g.std(axis=1, ddof=ddof), group_size)
    else:
        std = np.full(r.size, r.std(ddof=1) if r.size > 1 else 0.0)
    return centred / (std + eps)


def arm_signal(advantages: Sequence[float], arms: Sequence[str]) -> dict[str, float]:
    """Mean |advantage| of each arm's rollouts: SEC's estimate of how much a step on that arm teaches.

    With 0/1 rewards and std-scaled advantages its expectation is 2*sqrt(p(1-p))
    for a solve rate p, highest at p = 1/2 (methods.md section 4).
    """
    if len(advantages) != len(arms):
        raise ConfigError(f"{len(advantages)} advantages for {len(arms)} arm labels")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for a, arm in zip(advantages, arms):
        sums[arm] = sums.get(arm, 0.0) + abs(float(a))
        counts[arm] = counts.get(arm, 0) + 1
    return {arm: sums[arm] / counts[arm] for arm in sums}
