"""Ready-made toy models for studying samplers.

``stylized_reasoning`` is the stylized model of reasoning from the entropy-cut
paper (Zhou, Mehrotra & Liu, arXiv 2605.30327): a few consequential decisions
among plausible branches, separated by text the model is sure of.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strop.backends.toy import ToyBackend
from strop.errors import ConfigError

# Branch probabilities at a decision, given the branch taken at the previous
# decision (None: the first decision). Taking the less likely first branch (1)
# leads to confident later decisions (1 again, 0.95 each), so the likeliest
# whole sequence, <1><1><1> (0.4 * 0.95^2 = 0.36 for k=3), starts with the
# token that greedy and low-temperature decoding avoid (0.6 vs 0.4): what
# p^alpha finds and token-level sharpening misses.
DEFAULT_BRANCHES: dict[int | None, tuple[float, ...]] = {
    None: (0.6, 0.4),
    0: (0.5, 0.5),
    1: (0.05, 0.95),
}


def stylized_reasoning(
    k: int,
    T: int,
    *,
    gap: int = 2,
    branches: dict[int | None, Sequence[float]] | None = None,
) -> ToyBackend:
    """k decision points, deterministic filler between and after them, EOS at position T-1.

    Completion positions 0, gap, 2*gap, ... (k-1)*gap are decisions with
    ``branches[previous choice]`` probabilities; every other position emits
    the filler token "." with probability 1 (entropy 0), and position T-1 is
    EOS. The prompt is the single token "Q". There are b^k completions, all of
    length T, so the exact distribution and p^alpha are enumerable.
    """
    table = {key: tuple(v) for key, v in (branches or DEFAULT_BRANCHES).items()}
    widths = {len(v) for v in table.values()}
    if len(widths) != 1 or any(abs(sum(v) - 1) > 1e-9 or min(v) <= 0 for v in table.values()):
        raise ConfigError("branches must map each previous choice to positive probabilities summing to 1, all of one width")
    b = widths.pop()
    if None not in table or any(i not in table for i in range(b)):
        raise ConfigError(f"branches needs rows for None and for every branch 0..{b - 1}")
    if k < 1 or gap < 1 or (k - 1) * gap >= T - 1:
        raise ConfigError(f"need k >= 1 decisions at spacing gap={gap} before EOS at position T-1={T - 1}; got k={k}")
    vocab = ["Q", ".", "$"] + [f"<{i}>" for i in range(b)]
    filler, eos, first_branch = 1, 2, 3
    decisions = {j * gap: j for j in range(k)}
    logs = {key: np.log(np.asarray(v, dtype=np.float64)) for key, v in table.items()}

    def next_logits(context: tuple[int, ...]) -> np.ndarray:
        pos = len(context) - 1  # completion position (context[0] is the prompt)
        row = np.full(len(vocab), -np.inf)
        if pos >= T - 1:
            row[eos] = 0.0
        elif pos in decisions:
            j = decisions[pos]
            prev = None if j == 0 else context[1 + (j - 1) * gap] - first_branch
            row[first_branch:] = logs[prev]
        else:
            row[filler] = 0.0
        return row

    return ToyBackend(vocab, next_logits, eos="$", context_length=T + 8, model_id=f"stylized-reasoning(k={k},T={T},gap={gap})")
