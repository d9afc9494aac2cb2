"""The trainer: TRL's ``GRPOTrainer`` with strop's rows, rewards and checkpointed state.

TRL does generation, the loss, the optimiser, accelerate/DeepSpeed, vLLM and
checkpoints. The trainer adds:

- a source of training rows (``training.sources.RowSource``: the
  curriculum's draws, or RC's states): the rows TRL's dataloader delivers are
  replaced, at the moment a step generates, by the rows the source draws, and
  after scoring the source learns from the step's advantages and rewards;
- dynamic sampling (recipe ``dynamic_sampling``): prompt groups with zero
  reward variance are replaced by fresh draws from the same source;
- the source's state saved in every checkpoint and restored on resume;
- per-category reward metrics, and prompt token ids as ``strop eval`` makes them.

Building a trainer from a recipe and running it is ``training.entry``; the run
folder is ``training.run_folder``; the callbacks are ``training.callbacks``.

Why replace rows rather than write a torch Sampler: the dataloader prefetches,
so a sampler would choose step t+1's problems before step t's advantages
exist. Drawing inside ``_generate_and_score_completions`` keeps SEC's
update-then-choose order. On several processes every rank draws the same
global batch (same seed, same Q, since every rank sees the gathered
advantages) and keeps its own slice, the layout TRL's RepeatSampler produces.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from strop.errors import StropError
from strop.training.data import prompt_token_ids
from strop.training.rewards import RewardBook
from strop.training.run_folder import (  # noqa: F401  (re-exported: the run folder's API as it was)
    TRAINER_STATE,
    _check_same_recipe,
    _complete,
    _truncate_jsonl,
    checkpoint_step,
    last_checkpoint,
    load_metrics,
)
from strop.training.sources import CURRICULUM_STATE, RowSource, per_category  # noqa: F401  (CURRICULUM_STATE re-exported)


def _trainer_class():
    """The ``StropGRPOTrainer`` class, defined when first asked for so that importing strop never imports TRL.

    Long because it is a class body (the overridden hooks of TRL's trainer), not one procedure.
    """
    from trl import GRPOTrainer

    class StropGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer whose training rows come from a ``RowSource`` (see module docstring).

        Args beyond TRL's:
            row_source: draws each step's rows and learns from them; None: TRL's own rows (shuffled dataset).
            rewards: the reward book whose ``last`` holds the batch's (category, reward).
            rollout_backend: decodes for a source that rolls out (RC) instead of the policy itself (tests: a scripted one).
            system, template_kwargs: the recipe's system prompt and chat-template variables (prompt token ids).
            dynamic_rounds: dynamic sampling's extra generation rounds per step (0: off).
        """

        def __init__(self, *args: Any, row_source: RowSource | None = None, rewards: RewardBook | None = None,
                     rollout_backend: Any = None, system: str | None = None, template_kwargs: dict[str, Any] | None = None,
                     dynamic_rounds: int = 0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.row_source = row_source
            self.rewards = rewards
            self.rollout_backend = rollout_backend
            self.strop_system = system  # to find the user text in a rendered prompt
            self.strop_template_kwargs = template_kwargs  # likewise
            self.dynamic_rounds = dynamic_rounds
            self._step_adv: list[np.ndarray] = []  # the step's gathered advantages, one array per generation round
            self._step_book: list[tuple[str, float]] = []  # the step's gathered (category, reward), in row order
            self.round_book: list[tuple[str, float]] = []  # the last generation round's (see _calculate_rewards)

        @contextlib.contextmanager
        def _policy_backend(self) -> Iterator[Any]:
            """A strop backend over the current policy in eval mode (or the given rollout backend), for rollouts."""
            policy = self.accelerator.unwrap_model(self.model)
            backend = self.rollout_backend
            if backend is None:
                from strop.backends.hf import HFBackend

                backend = HFBackend.wrap(policy, self.processing_class)
                if self.strop_template_kwargs:
                    backend.chat_template_kwargs = dict(self.strop_template_kwargs)
            was_training = policy.training
            policy.eval()
            try:
                yield backend
            finally:
                policy.train(was_training)
                backend.reset_cache()  # its prefix cache would outlive this step's weights

        def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict]:
            """Prompt ids with message text kept as text (``prompt_token_ids``); prompts strop did not render go to TRL."""
            if prompts and all(isinstance(p, str) for p in prompts):
                kwargs = getattr(self, "strop_template_kwargs", None)
                ids = [prompt_token_ids(self.processing_class, p, self.strop_system, kwargs) for p in prompts]
                if all(i is not None for i in ids):
                    return ids, None, {}  # type: ignore[return-value]
            return super()._tokenize_prompts(prompts)

        def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)  # evaluation: the rows TRL was given
            return self._step_batch(inputs)

        def _step_batch(self, inputs: list[dict]) -> dict:
            """A training step's generation output: the source's rows (or TRL's), with dynamic sampling when on.

            Without dynamic sampling: one round, this process's slice of the
            source's global draw. With it (recipe ``dynamic_sampling``): rounds
            of draws are generated and scored until this step's groups all
            have a non-zero advantage somewhere or ``dynamic_rounds`` extra
            rounds are spent; the batch is the first such groups in draw
            order, filled up with zero-variance ones. The source learns from
            every group drawn.
            """
            k = self.num_generations
            n_local = len(inputs)
            groups, local_groups = self.args.generation_batch_size // k, n_local // k
            start = self.accelerator.process_index * n_local
            self._step_adv, self._step_book = [], []
            with_signal: list[tuple[dict, int]] = []
            flat: list[tuple[dict, int]] = []
            rounds = 0
            while True:
                rows = inputs if self.row_source is None else self.row_source.draw(groups, self._policy_backend)[start:start + n_local]
                out = super()._generate_and_score_completions(rows)
                self._after_generation(out)
                if not self.dynamic_rounds:
                    break
                adv = out["advantages"]
                for g in range(local_groups):
                    (with_signal if bool((adv[g * k:(g + 1) * k] != 0).any()) else flat).append((out, g))
                if len(with_signal) >= local_groups or rounds == self.dynamic_rounds:
                    break
                rounds += 1
            self._learn_from_step(np.concatenate(self._step_adv), self._step_book)
            if not self.dynamic_rounds:
                return out
            logged = self._metrics["train"]
            logged["dynamic/groups_drawn"].append(float(sum(len(a) for a in self._step_adv) // k))
            logged["dynamic/groups_with_signal"].append(float(len(with_signal)))
            logged["dynamic/groups_kept_with_signal"].append(float(min(local_groups, len(with_signal))))
            logged["dynamic/extra_rounds"].append(float(rounds))
            return _merge_groups((with_signal + flat)[:local_groups], k, self.processing_class.pad_token_id or 0)

        def _calculate_rewards(self, inputs: list[dict], prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            """TRL's rewards (every rank's rows, rank-major), and ``round_book``: (category, correctness) per row of
            this generation round, all ranks, read from those returned rewards (the correctness reward is the first)."""
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            categories = [row["category"] for row in inputs]
            if self.accelerator.num_processes > 1:
                from accelerate.utils import gather_object

                categories = gather_object(categories)  # rank-major, as TRL gathers the rewards
            self.round_book = list(zip(categories, rewards[:, 0].tolist()))
            return rewards

        def _after_generation(self, out: dict) -> None:
            """Keep one round's advantages and rewards, gathered over ranks, for the step's learning."""
            self._step_adv.append(self.accelerator.gather(out["advantages"]).float().cpu().numpy())
            self._step_book += self.round_book

        def _learn_from_step(self, adv: np.ndarray, book: list) -> None:
            """Per-category metrics, and the source's update and metrics, from the step's gathered advantages and rewards."""
            train_metrics = self._metrics["train"]
            for cat, scores in per_category(book).items():
                train_metrics[f"category/{cat}/reward"].append(float(np.mean(scores)))
                train_metrics[f"category/{cat}/count"].append(float(len(scores)))
            if self.row_source is None:
                return
            learnt = self.row_source.learn(self.state.global_step + 1, adv, book, self.accelerator.is_main_process)
            for key, value in learnt.items():
                train_metrics[key].append(value)

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            # strop's file goes in first: the checkpoint only counts as
            # complete once the Trainer has written its state after it.
            if self.row_source is not None and self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / self.row_source.checkpoint_name).write_text(json.dumps(self.row_source.state_dict()))
            super()._save_checkpoint(model, trial)

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is None or self.row_source is None:
                return
            path = Path(checkpoint) / self.row_source.checkpoint_name
            if not path.is_file():
                raise StropError(f"checkpoint {checkpoint} has no {path.name} (written by strop next to the weights)")
            self.row_source.load_state_dict(json.loads(path.read_text()))

    return StropGRPOTrainer


# Tensors of TRL's generation output, by which side their padding is on (prompts are left-padded, completions right).
_LEFT = ("prompt_ids", "prompt_mask")
_RIGHT = ("completion_ids", "completion_mask", "old_per_token_logps", "sampling_per_token_logps", "ref_per_token_logps", "tool_mask")


def _merge_groups(parts: list[tuple[dict, int]], k: int, pad_id: int) -> dict:
    """One generation output from prompt groups of several (group ``g`` of output ``out``), re-padded to common lengths."""
    import torch

    first = parts[0][0]
    unknown = set(first) - set(_LEFT) - set(_RIGHT) - {"advantages", "num_items_in_batch"}
    if unknown:
        raise StropError(f"dynamic sampling cannot merge TRL's {sorted(unknown)} (multimodal or vLLM outputs): turn it off")
    merged: dict[str, Any] = {}
    for key in first:
        if key == "num_items_in_batch":
            continue
        rows = [out[key][g * k:(g + 1) * k] for out, g in parts]
        if key in _LEFT or key in _RIGHT:
            width = max(r.shape[1] for r in rows)
            fill = pad_id if key == "prompt_ids" else 0
            rows = [torch.nn.functional.pad(r, (width - r.shape[1], 0) if key in _LEFT else (0, width - r.shape[1]), value=fill)
                    for r in rows]
        merged[key] = torch.cat(rows)
    mask = merged["completion_mask"] * merged["tool_mask"] if "tool_mask" in merged else merged["completion_mask"]
    merged["num_items_in_batch"] = mask.sum()  # what TRL computes from the batch it trains on (one process)
    return merged
