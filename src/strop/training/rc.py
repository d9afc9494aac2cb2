"""RC training: teach the policy to reason from its own summaries (Wu et al., arXiv 2602.03773, "RC-RL").

Each training step, for each problem drawn:

1. RC runs for T_train turns with the current policy (reason, then summarise),
   starting from the problem's state in the replay buffer, or from the empty
   summary the first time. The summariser is the same model; its outputs are
   never trained on.
2. N_summ states are drawn without replacement from the candidates: the empty
   start summary, the buffered starting state (when there was one) and every
   summary the rollout produced. The empty summary stays a candidate after the
   buffer fills so the first turn keeps being trained.
3. From each drawn state, K reasoning traces are sampled by TRL with the prompt
   RC decoding uses at that state (``methods.rc.reason_prompt``), rewarded by
   the task's verifier; TRL's GRPO advantages are computed within each group of
   K consecutive rows, i.e. per state.
4. The rollout's last state replaces the problem's entry in the buffer (newest
   wins), so a later epoch continues RC from where this one stopped.

Problems are visited in epochs (a fresh permutation each pass). The buffer,
the epoch order and the random state are saved in every checkpoint and
restored on resume; ``rc_states.jsonl`` records every step's drawn states and
their mean rewards.

Rollouts decode with strop's backend over the policy in memory (one
process); on GPUs they are the slow part, since TRL's vLLM path only serves
the trained traces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strop.backends.base import Backend
from strop.errors import ConfigError
from strop.methods.rc import RCConfig, rc_batch, reason_prompt
from strop.methods.rc_prompts import RCPrompts, load_prompts, write_prompts
from strop.tasks import Problem, Task
from strop.training.data import render_chat_text
from strop.training.recipe import RCSpec
from strop.training.sources import PolicyBackend

RC_STATE = "strop_rc_state.json"
RC_LOG = "rc_states.jsonl"  # the run folder's per-step record of the states drawn
# The run folder's copy of the RC templates trained on: ``strop eval --rc-prompts <run>/rc_prompts`` asks the same way.
RC_PROMPTS = "rc_prompts"
EMPTY, SUMMARY = "empty summary", "from summary"


@dataclass(frozen=True)
class RCState:
    """Where RC stands on a problem: the latest summary and how many turns it summarises (0: the empty start)."""

    problem_id: str
    summary: str
    turn: int


class ReplayBuffer:
    """RC states per problem: a rollout's states replace whatever the buffer held for its problem.

    ``put`` keeps one state (strop's default: the newest); ``put_all`` keeps
    several (the RC reference keeps every summary of the latest rollout), and
    ``get`` then draws one of them uniformly with the caller's RNG.

    >>> b = ReplayBuffer()
    >>> b.put(RCState("p", "old", 3)); b.put(RCState("p", "new", 2)); b.put(RCState("q", "x", 1))
    >>> b.get("p"), len(b)
    (RCState(problem_id='p', summary='new', turn=2), 2)
    """

    def __init__(self) -> None:
        self._states: dict[str, list[RCState]] = {}

    def put(self, state: RCState) -> None:
        self.put_all([state])

    def put_all(self, states: Sequence[RCState]) -> None:
        if not states:
            return
        pid = states[0].problem_id
        if any(s.problem_id != pid for s in states):
            raise ConfigError("put_all takes the states of one problem")
        self._states.pop(pid, None)  # newest last, so state_dict lists in order of writing
        self._states[pid] = list(states)

    def get(self, problem_id: str, rng: np.random.Generator | None = None) -> RCState | None:
        """The problem's state; with several kept, one drawn uniformly from ``rng`` (which a single state never consumes)."""
        held = self._states.get(problem_id)
        if not held:
            return None
        if len(held) == 1:
            return held[0]
        if rng is None:
            raise ConfigError("the buffer holds several states for this problem: draw with an rng")
        return held[int(rng.integers(len(held)))]

    def __len__(self) -> int:
        return len(self._states)

    def state_dict(self) -> list[dict[str, Any]]:
        return [asdict(s) for held in self._states.values() for s in held]

    def load_state_dict(self, states: Sequence[dict[str, Any]]) -> None:
        self._states = {}
        grouped: dict[str, list[RCState]] = {}
        for s in states:
            grouped.setdefault(str(s["problem_id"]), []).append(RCState(str(s["problem_id"]), str(s["summary"]), int(s["turn"])))
        for held in grouped.values():
            self.put_all(held)


def keep_prompts(folder: Path, prompts: RCPrompts) -> None:
    """Save the templates a run trains on in ``folder``; a resumed run must train on the same ones."""
    if folder.is_dir() and load_prompts(folder) != prompts:
        raise ConfigError(f"the RC prompts differ from the ones this run started with ({folder}); "
                          "use another output folder, or put those templates back")
    write_prompts(prompts, folder)


def candidate_states(problem_id: str, start: RCState, produced: Sequence[RCState], rule: str = "strop") -> list[RCState]:
    """What a draw chooses among.

    ``strop``: the empty start, a buffered start (turn > 0), and every produced
    summary. ``reference`` (the RC reference code): the empty start and the
    produced summaries but the last, s_1 .. s_{T-1}; s_T conditioned no
    reasoning turn of the rollout.
    """
    empty = RCState(problem_id, "", 0)
    if rule == "reference":
        return [empty] + list(produced[:-1])
    return [empty] + ([start] if start.turn > 0 else []) + list(produced)


def draw_states(candidates: Sequence[RCState], n: int, rng: np.random.Generator) -> list[RCState]:
    """``n`` distinct candidates, uniformly without replacement (all of them when there are fewer)."""
    picks = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    return [candidates[int(i)] for i in picks]


def rc_rollouts(backend: Backend, questions: Sequence[str], starts: Sequence[RCState], config: RCConfig,
                rngs: Sequence[np.random.Generator], system: str | None = None) -> list[list[RCState]]:
    """``config.turns`` RC turns for every problem (RC decoding itself, batched); the states each produced, in order.

    Row i continues from ``starts[i]`` and draws from ``rngs[i]`` only.
    """
    results = rc_batch(backend, questions, rngs, config=config, system=system, summaries=[s.summary for s in starts])
    return [[RCState(start.problem_id, t["summary"], start.turn + t["turn"]) for t in res.stats["turns"]]
            for start, res in zip(starts, results)]


class RCRows:
    """The rows of each RC training step: K copies of each drawn state's prompt, groups of K consecutive.

    A ``training.sources.RowSource``: ``draw`` rolls RC out with the current
    policy and returns the drawn states' rows; ``learn`` writes the step's
    record (every state drawn since the last ``learn``, with its group's mean
    reward).

    Args:
        spec: the recipe's ``rc`` section.
        task, problems: what is trained on (the reward looks problems up by id).
        tokenizer: renders prompts exactly as ``strop eval`` does.
        reasoning_tokens, temperature: H_R and the sampling temperature of rollouts (the recipe's GRPO settings).
        num_generations: K.
        seed: the random state of problem order, rollouts and draws.
        system: the recipe's system prompt.
        log: where each step's states and rewards go (JSON lines), or None.
        template_kwargs: the recipe's chat-template variables (``model.chat_template_kwargs``).

    The RC templates are the recipe's (``rc.prompts``), for rollouts and traces alike.
    """

    checkpoint_name = RC_STATE

    def __init__(self, spec: RCSpec, task: Task, problems: Sequence[Problem], tokenizer: Any, *, reasoning_tokens: int,
                 temperature: float, num_generations: int, seed: int, system: str | None = None, log: Path | None = None,
                 template_kwargs: Mapping[str, Any] | None = None) -> None:
        self.spec, self.task, self.tokenizer, self.system, self.log = spec, task, tokenizer, system, log
        self.template_kwargs = template_kwargs
        self.problems = {p.id: p for p in problems}
        if len(self.problems) != len(problems):
            raise ConfigError("RC training needs unique problem ids")
        self.ids = list(self.problems)
        self.k = num_generations
        self.config = RCConfig(turns=spec.turns, reasoning_tokens=reasoning_tokens, summary_tokens=spec.summary_tokens,
                               temperature=temperature, prompts=spec.templates())
        self.rng = np.random.default_rng(seed)
        self.buffer = ReplayBuffer()
        if spec.seed_buffer is not None:
            self._seed_buffer(Path(spec.seed_buffer))
        self.order: list[int] = []
        self.pos = 0
        self.epoch = 0
        self.last_states: list[RCState] = []  # the latest draw's states
        self.step_drawn: list[RCState] = []  # every state drawn in the current (or last learnt) step, in order
        self._learnt = True  # the next draw starts a step

    def _seed_buffer(self, path: Path) -> None:
        """Start the buffer from a JSONL file of {problem_id, summary, turn (default 1)}: RC continues from those states."""
        from strop.records import read_records

        if not path.is_file():
            raise ConfigError(f"rc.seed_buffer: no such file {path}")
        grouped: dict[str, list[RCState]] = {}
        for i, r in enumerate(read_records(path), 1):
            pid, summary = str(r.get("problem_id", "")), r.get("summary")
            if pid not in self.problems or not isinstance(summary, str) or not summary:
                raise ConfigError(f"rc.seed_buffer {path} line {i}: needs a problem_id of this run's problems and a non-empty "
                                  f"summary, got problem_id={pid!r}")
            grouped.setdefault(pid, []).append(RCState(pid, summary, int(r.get("turn", 1))))
        for held in grouped.values():
            self.buffer.put_all(held if self.spec.keep == "all" else held[-1:])

    # ------------------------------------------------------------ drawing
    def next_problems(self, n: int) -> list[Problem]:
        """The next ``n`` problems of the epoch order; a new epoch starts with a fresh permutation."""
        out = []
        for _ in range(n):
            if self.pos >= len(self.order):
                self.order = [int(i) for i in self.rng.permutation(len(self.ids))]
                self.pos = 0
                self.epoch += 1
            out.append(self.problems[self.ids[self.order[self.pos]]])
            self.pos += 1
        return out

    def step_states(self, backend: Backend, groups: int) -> list[RCState]:
        """Roll out RC for ``groups / N_summ`` problems, update the buffer, and return the ``groups`` drawn states."""
        n_summ = self.spec.states
        if groups % n_summ:
            raise ConfigError(f"a step's {groups} groups of K = {self.k} do not split into {n_summ} states per problem: "
                              f"make per_device_train_batch_size x steps_per_generation a multiple of {self.k * n_summ}")
        problems = self.next_problems(groups // n_summ)
        starts = [(self.buffer.get(p.id, self.rng) if self.spec.buffer else None) or RCState(p.id, "", 0) for p in problems]
        rngs = [np.random.default_rng(int(x)) for x in self.rng.integers(2**63, size=len(problems))]
        produced = rc_rollouts(backend, [p.question for p in problems], starts, self.config, rngs, self.system)
        drawn: list[RCState] = []
        for p, start, states in zip(problems, starts, produced):
            drawn.extend(draw_states(candidate_states(p.id, start, states, self.spec.candidates), n_summ, self.rng))
            if self.spec.buffer:
                self.buffer.put_all(states if self.spec.keep == "all" else states[-1:])
        if self._learnt:  # the first draw of a step
            self.step_drawn, self._learnt = [], False
        self.last_states = drawn
        self.step_drawn += drawn
        return drawn

    def rows(self, states: Sequence[RCState]) -> list[dict]:
        """K rows per state. ``category`` says whether the trace starts from the empty summary or from one."""
        rows = []
        for s in states:
            text = reason_prompt(self.config, self.problems[s.problem_id].question, s.summary)
            row = {"prompt": render_chat_text(self.tokenizer, text, self.system, self.template_kwargs), "problem_id": s.problem_id,
                   "category": SUMMARY if s.summary else EMPTY}
            rows.extend([row] * self.k)
        return rows

    # ------------------------------------------------------------ a RowSource
    def draw(self, groups: int, policy: PolicyBackend) -> list[dict]:
        """RC rollouts with the policy (``policy()`` gives its backend), then K rows per drawn state."""
        with policy() as backend:
            states = self.step_states(backend, groups)
        return self.rows(states)

    def learn(self, step: int, advantages: np.ndarray, book: Sequence[tuple[str, float]], write: bool) -> dict[str, float]:
        self._learnt = True
        rec = self.record(step, [score for _, score in book], write=write)
        return {"rc/buffer": float(rec["buffer"]), "rc/mean_turn": float(np.mean([st["turn"] for st in rec["states"]]))}

    def record(self, step: int, rewards: Sequence[float], *, write: bool = True) -> dict[str, Any]:
        """The step's log line: every state drawn this step with its group's mean reward, the epoch and the buffer size."""
        k = self.k
        states = [{**asdict(s), "reward": float(np.mean(rewards[i * k:(i + 1) * k]))} for i, s in enumerate(self.step_drawn)]
        rec = {"step": step, "epoch": self.epoch, "buffer": len(self.buffer), "states": states}
        if self.log is not None and write:
            with self.log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    # ---------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "order": self.order, "pos": self.pos, "epoch": self.epoch,
                "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order, self.pos, self.epoch = list(state["order"]), int(state["pos"]), int(state["epoch"])
        self.buffer.load_state_dict(state["buffer"])
