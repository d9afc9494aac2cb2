"""GRPO on strop tasks, run by TRL's ``GRPOTrainer``.

TRL does generation, the loss, the optimiser, accelerate/DeepSpeed, vLLM and
checkpoints. strop adds what TRL has no notion of:

- tasks as datasets and verifiers as rewards (``training.data``, ``training.rewards``);
- the curriculum: the rows TRL's dataloader delivers are replaced, at the
  moment a step generates, by the groups the curriculum draws, and after
  scoring each arm's mean |advantage| updates the curriculum;
- the curriculum's state (Q, step, RNG) saved in every checkpoint and restored
  on resume;
- metrics as JSON lines: TRL's (reward, reward_std, frac_reward_zero_std, kl,
  entropy, completions/mean_length, ...) plus per-category reward and the arm
  mix and Q of every step.

The run folder (checkpoints, logs, the recipe it holds) is
``training.run_folder``; the callbacks (metrics lines, validation during
training) are ``training.callbacks``; this module holds the trainer and the
entry points (``build_trainer``, ``train``).

Why replace rows rather than write a torch Sampler: the dataloader prefetches,
so a sampler would choose step t+1's problems before step t's advantages
exist. Drawing inside ``_generate_and_score_completions`` keeps SEC's
update-then-choose order. On several processes every rank draws the same
global batch (same seed, same Q, since every rank sees the gathered
advantages) and keeps its own slice, the layout TRL's RepeatSampler produces.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strop.errors import ConfigError, StropError
from strop.tasks import Problem, Task
from strop.training.advantages import arm_signal
from strop.training.callbacks import bar_only, jsonl_callback, validation_callback
from strop.training.curriculum import Curriculum, curriculum_class
from strop.training.data import arms_of, prompt_rows, prompt_token_ids, training_problems
from strop.training.rc import RC_PROMPTS, RC_STATE, RCRows, keep_prompts
from strop.training.recipe import TrainRecipe
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

CURRICULUM_STATE = "strop_curriculum.json"
VALIDATION = "validation"  # the run folder's evaluations during training, one harness folder per step
RC_LOG = "rc_states.jsonl"


# ----------------------------------------------------------------- trainer
def _trainer_class():
    from trl import GRPOTrainer

    class StropGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer with a curriculum choosing each step's problems (see module docstring)."""

        def __init__(self, *args: Any, curriculum: Curriculum | None = None, pool: dict[str, list[dict]] | None = None,
                     rewards: RewardBook | None = None, curriculum_log: Path | None = None, rc_rows: RCRows | None = None,
                     rollout_backend: Any = None, system: str | None = None, template_kwargs: dict[str, Any] | None = None,
                     dynamic_rounds: int = 0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.dynamic_rounds = dynamic_rounds  # dynamic sampling: extra generation rounds per step (0: off)
            self.strop_system = system  # the recipe's system prompt, to find the user text in a rendered prompt
            self.strop_template_kwargs = template_kwargs  # the recipe's chat-template variables, likewise
            self.curriculum = curriculum
            self.rc_rows = rc_rows
            self.rollout_backend = rollout_backend
            self.pool = pool or {}
            self.rewards = rewards
            self.curriculum_log = curriculum_log
            self._arms_this_step: list[str] = []
            self._probs_this_step = np.zeros(0)

        def _curriculum_rows(self, n_local: int) -> list[dict]:
            """This process's slice of the step's groups: one arm per group, one problem per arm draw."""
            assert self.curriculum is not None
            k = self.num_generations
            groups = self.args.generation_batch_size // k
            self._probs_this_step = self.curriculum.probabilities()
            arms = self.curriculum.choose(groups)
            rows = []
            for arm in arms:
                choices = self.pool[arm]
                rows.extend([choices[self.curriculum.draw(arm, len(choices))]] * k)
            self._arms_this_step = [a for a in arms for _ in range(k)]
            start = self.accelerator.process_index * n_local
            return rows[start:start + n_local]

        def _rc_step_rows(self, n_local: int) -> list[dict]:
            """RC rollouts with the current policy (or the given rollout backend), then K rows per drawn state."""
            assert self.rc_rows is not None
            groups = self.args.generation_batch_size // self.num_generations
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
                states = self.rc_rows.step_states(backend, groups)
            finally:
                policy.train(was_training)
                backend.reset_cache()  # its prefix cache would outlive this step's weights
            return self.rc_rows.rows(states)[:n_local]

        def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict]:
            """Prompt ids with message text kept as text (``prompt_token_ids``); prompts strop did not render go to TRL."""
            if prompts and all(isinstance(p, str) for p in prompts):
                kwargs = getattr(self, "strop_template_kwargs", None)
                ids = [prompt_token_ids(self.processing_class, p, self.strop_system, kwargs) for p in prompts]
                if all(i is not None for i in ids):
                    return ids, None, {}  # type: ignore[return-value]
            return super()._tokenize_prompts(prompts)

        def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
            training = self.model.training
            if training and self.dynamic_rounds and self.curriculum is not None:
                return self._dynamic_batch(len(inputs))
            if training and self.rc_rows is not None:
                inputs = self._rc_step_rows(len(inputs))
            elif training and self.curriculum is not None:
                inputs = self._curriculum_rows(len(inputs))
            out = super()._generate_and_score_completions(inputs)
            if training:
                self._after_generation(out)
            return out

        def _dynamic_batch(self, n_local: int) -> dict:
            """Dynamic sampling: keep the groups whose rewards vary, draw fresh groups for the rest (recipe ``dynamic_sampling``).

            Rounds of ``groups`` curriculum draws are generated and scored until
            ``groups`` of them have a non-zero advantage somewhere or
            ``dynamic_rounds`` extra rounds are spent; the batch is the first
            such groups in draw order, filled up with zero-variance ones. The
            curriculum learns from every group drawn.
            """
            k = self.num_generations
            groups = n_local // k
            signal_parts: list[tuple[dict, int]] = []
            flat_parts: list[tuple[dict, int]] = []
            advs, arms, book = [], [], []
            rounds = 0
            while True:
                out = super()._generate_and_score_completions(self._curriculum_rows(n_local))
                adv = out["advantages"]
                advs.append(adv.detach().float().cpu().numpy())
                arms += self._arms_this_step
                book += list(self.rewards.last) if self.rewards is not None else []
                for g in range(groups):
                    (signal_parts if bool((adv[g * k:(g + 1) * k] != 0).any()) else flat_parts).append((out, g))
                if len(signal_parts) >= groups or rounds == self.dynamic_rounds:
                    break
                rounds += 1
            chosen = (signal_parts + flat_parts)[:groups]
            logged = self._metrics["train"]
            logged["dynamic/groups_drawn"].append(float(len(arms) // k))
            logged["dynamic/groups_with_signal"].append(float(len(signal_parts)))
            logged["dynamic/groups_kept_with_signal"].append(float(min(groups, len(signal_parts))))
            logged["dynamic/extra_rounds"].append(float(rounds))
            self._arms_this_step = arms
            self._learn_from_step(np.concatenate(advs), book)  # one process: nothing to gather
            return _merge_groups(chosen, k, self.processing_class.pad_token_id or 0)

        def _after_generation(self, out: dict) -> None:
            adv = self.accelerator.gather(out["advantages"]).float().cpu().numpy()
            self._learn_from_step(adv, self.rewards.last if self.rewards is not None else [])

        def _learn_from_step(self, adv: np.ndarray, book: list) -> None:
            """Per-category metrics, RC's step record and the curriculum update from the step's (gathered) advantages."""
            if self.accelerator.num_processes > 1:
                from accelerate.utils import gather_object

                book = gather_object(book)
            per_cat: dict[str, list[float]] = {}
            for cat, score in book:
                per_cat.setdefault(cat, []).append(score)
            train_metrics = self._metrics["train"]
            for cat, scores in per_cat.items():
                train_metrics[f"category/{cat}/reward"].append(float(np.mean(scores)))
                train_metrics[f"category/{cat}/count"].append(float(len(scores)))
            if self.rc_rows is not None and self.accelerator.is_main_process:
                rec = self.rc_rows.record(self.state.global_step + 1, [score for _, score in book])
                train_metrics["rc/buffer"].append(float(rec["buffer"]))
                train_metrics["rc/mean_turn"].append(float(np.mean([st["turn"] for st in rec["states"]])))
            if self.curriculum is None:
                return
            signal = arm_signal(adv, self._arms_this_step)
            self.curriculum.update(signal)
            k = self.num_generations
            record: dict[str, Any] = {
                "step": self.state.global_step + 1,
                "probs": dict(zip(self.curriculum.arms, [float(x) for x in self._probs_this_step])),
                "counts": {a: self._arms_this_step.count(a) // k for a in self.curriculum.arms},
                "signal": signal,
                "reward": {c: float(np.mean(s)) for c, s in per_cat.items()},
            }
            q = getattr(self.curriculum, "q", None)
            if q is not None:
                record["q"] = dict(q)
                for a, v in q.items():
                    train_metrics[f"curriculum/q/{a}"].append(v)
            for a, n in record["counts"].items():
                train_metrics[f"curriculum/share/{a}"].append(n * k / len(adv))
            if self.curriculum_log is not None and self.accelerator.is_main_process:
                with self.curriculum_log.open("a") as f:
                    f.write(json.dumps(record) + "\n")

        def _own_states(self) -> dict[str, Any]:
            """strop's resumable state, by checkpoint file name: the curriculum's, RC's (buffer, order, RNG)."""
            return {name: obj for name, obj in ((CURRICULUM_STATE, self.curriculum), (RC_STATE, self.rc_rows)) if obj is not None}

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            # strop's files go in first: the checkpoint only counts as
            # complete once the Trainer has written its state after them.
            if self._own_states() and self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
                folder.mkdir(parents=True, exist_ok=True)
                for name, obj in self._own_states().items():
                    (folder / name).write_text(json.dumps(obj.state_dict()))
            super()._save_checkpoint(model, trial)

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is None:
                return
            for name, obj in self._own_states().items():
                path = Path(checkpoint) / name
                if not path.is_file():
                    raise StropError(f"checkpoint {checkpoint} has no {name} (written by strop next to the weights)")
                obj.load_state_dict(json.loads(path.read_text()))

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


# ------------------------------------------------------------------ entry
@dataclass(frozen=True)
class TrainResult:
    output: Path
    final_model: Path
    steps: int
    resumed_from: Path | None
    wall_s: float


def _curriculum(recipe: TrainRecipe, arms: list[str], max_steps: int) -> Curriculum | None:
    c = recipe.curriculum
    if c.kind == "none":
        return None
    return curriculum_class(c.kind).from_spec(arms, np.random.default_rng(c.seed), dataclasses.asdict(c), max_steps)


def grpo_args(output: Path, grpo: dict[str, Any], reward_weights: list[float]):
    """TRL's GRPOConfig from strop's settings (CPU/GPU defaults filled), with TRL's complaints as ConfigError."""
    import torch
    from trl import GRPOConfig

    grpo = dict(grpo)
    grpo.setdefault("bf16", bool(torch.cuda.is_available()))
    grpo.setdefault("dataloader_pin_memory", bool(torch.cuda.is_available()))
    # TRL 1.16 itself still calls transformers' renamed gradient-checkpointing
    # API; the warning is for TRL's authors, not for whoever runs a recipe.
    warnings.filterwarnings("ignore", message=r".*checkpointing.* is deprecated", category=FutureWarning)
    try:
        return GRPOConfig(output_dir=str(output), reward_weights=reward_weights, **grpo)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"grpo section rejected by TRL's GRPOConfig: {e}") from e


def make_trainer(args: Any, model: Any, tokenizer: Any, task: Task, problems: list[Problem], arms: list[str], *,
                 curriculum: Curriculum | None, book: RewardBook, system: str | None = None, peft_config: Any = None,
                 curriculum_log: Path | None = None, quiet: bool = True, rc_rows: RCRows | None = None,
                 rollout_backend: Any = None, template_kwargs: dict[str, Any] | None = None, dynamic_rounds: int = 0):
    """A StropGRPOTrainer over ``problems`` (rows rendered as ``strop eval`` renders them) for an already loaded model."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows, pool = prompt_rows(tokenizer, task, problems, arms, system, template_kwargs)
    # TRL's RepeatSampler drops a generation batch it cannot fill with distinct
    # rows: fewer problems than prompt groups per step would train 0 steps
    # without a word (seen: a test-time tree with 1 variant). Repeat the rows.
    groups = args.generation_batch_size // args.num_generations
    if len(rows) < groups:
        rows = [rows[i % len(rows)] for i in range(groups)]
    model.train()
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        reward_funcs=book.functions(), peft_config=peft_config,
        curriculum=curriculum, pool=pool, rewards=book, curriculum_log=curriculum_log,
        rc_rows=rc_rows, rollout_backend=rollout_backend, system=system, template_kwargs=template_kwargs,
        dynamic_rounds=dynamic_rounds,
    )
    if dynamic_rounds and trainer.accelerator.num_processes > 1:
        raise ConfigError("dynamic sampling runs in one process for now (choosing groups across ranks is not built); "
                          "launch without several processes or drop dynamic_sampling")
    if rc_rows is not None and trainer.accelerator.num_processes > 1:
        raise ConfigError("RC training runs its rollouts in one process for now; launch it without several processes")
    trainer.remove_callback(PrinterCallback)
    trainer.pop_callback(ProgressCallback)
    if not quiet:
        trainer.add_callback(bar_only())
    return trainer


def lora_config(lo: Any):
    from peft import LoraConfig

    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules, task_type="CAUSAL_LM")


def build_trainer(recipe: TrainRecipe, *, quiet: bool = False, rollout_backend: Any = None):
    """The configured trainer for ``recipe`` (nothing trained yet). ``train`` runs it.

    ``rollout_backend`` (RC recipes only) decodes RC rollouts instead of the
    policy itself: tests pass a scripted backend to know every summary.
    """
    try:
        import torch
        import trl  # noqa: F401
    except ImportError as e:
        raise ConfigError("training needs torch and TRL: pip install 'strop[train]'") from e

    from strop.backends.hf import HFBackend
    from strop.models import embedded_model_path

    # Everything that can be wrong with the recipe is checked before the run
    # folder is touched, so a corrected recipe is not refused as "another run".
    task, problems = training_problems(recipe.data)
    arms = arms_of(recipe.data, problems)
    output = Path(recipe.output)
    grpo = dict(recipe.grpo)
    if recipe.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("recipe asks for tensorboard: true, but TensorBoard is not installed: pip install 'strop[tensorboard]'")
        grpo["report_to"] = "tensorboard"
        grpo.setdefault("logging_dir", str(output / "tensorboard"))
    book = RewardBook(task, problems, recipe.reward.format_weight)
    args = grpo_args(output, grpo, book.weights())

    output.mkdir(parents=True, exist_ok=True)
    _check_same_recipe(output, recipe)
    # Loaded on the CPU in float32 (unless the recipe names a dtype): the Trainer
    # moves it to each process's own device, and bf16 runs as autocast over
    # float32 master weights. Loading straight to "cuda" would put every
    # rank's copy on GPU 0 first.
    backend = HFBackend(recipe.model.name or str(embedded_model_path()), device="cpu", dtype=recipe.model.dtype)
    torch.manual_seed(args.seed)
    rc_rows = None
    if recipe.rc is not None:
        rc_rows = RCRows(recipe.rc, task, problems, backend.tokenizer, reasoning_tokens=args.max_completion_length,
                         temperature=args.temperature, num_generations=args.num_generations, seed=args.seed,
                         system=recipe.data.system, log=output / RC_LOG, template_kwargs=recipe.model.chat_template_kwargs)
        keep_prompts(output / RC_PROMPTS, rc_rows.config.prompts)
    trainer = make_trainer(
        args, backend.model, backend.tokenizer, task, problems, arms,
        curriculum=_curriculum(recipe, arms, args.max_steps), book=book, system=recipe.data.system,
        peft_config=lora_config(recipe.model.lora) if recipe.model.lora is not None else None,
        curriculum_log=output / "curriculum.jsonl", quiet=quiet, rc_rows=rc_rows, rollout_backend=rollout_backend,
        template_kwargs=recipe.model.chat_template_kwargs,
        dynamic_rounds=recipe.dynamic_sampling.max_rounds if recipe.dynamic_sampling is not None else 0,
    )
    if recipe.eval is not None:
        trainer.add_callback(validation_callback(trainer, recipe, task, output / VALIDATION))
    trainer.add_callback(jsonl_callback(output / "metrics.jsonl", quiet))
    return trainer


def train(recipe: TrainRecipe, *, quiet: bool = False, rollout_backend: Any = None) -> TrainResult:
    """Run (or resume) a recipe; writes metrics.jsonl, curriculum.jsonl, checkpoints and final/ under ``recipe.output``.

    A run whose last checkpoint already reached ``max_steps`` is not trained
    again (transformers' loop would take one more step); its final model is
    written from that checkpoint if the kill came before ``final/`` was.
    """
    output = Path(recipe.output)
    trainer = build_trainer(recipe, quiet=quiet, rollout_backend=rollout_backend)
    resume = last_checkpoint(output)
    step0 = checkpoint_step(resume) if resume else 0
    for name in ("metrics.jsonl", "curriculum.jsonl", RC_LOG):
        _truncate_jsonl(output / name, step0)
    t0 = time.perf_counter()
    if resume is not None and step0 >= trainer.args.max_steps:
        if not quiet:
            print(f"{output} already holds {step0} steps (max_steps {trainer.args.max_steps}): nothing to train", flush=True)
        trainer._load_from_checkpoint(str(resume))
        trainer.state.global_step = step0
    else:
        if resume and not quiet:
            print(f"resuming from {resume}", flush=True)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    wall = time.perf_counter() - t0

    final = output / "final"
    if trainer.accelerator.is_main_process:
        trained = trainer.model
        if hasattr(trained, "merge_and_unload"):
            trained = trained.merge_and_unload()  # LoRA: save a plain model that any backend loads
        trained.save_pretrained(final)
        trainer.processing_class.save_pretrained(final)
    return TrainResult(output, final, trainer.state.global_step, resume, wall)
