"""Entry points: a recipe becomes a configured trainer (``build_trainer``), and a run of it (``train``).

``make_trainer`` builds the trainer for a model already loaded (test-time
variant RL uses it); ``grpo_args`` and ``lora_config`` turn strop's settings
into TRL's and peft's. The trainer itself is ``training.grpo``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strop.errors import ConfigError
from strop.tasks import Problem, Task
from strop.training.callbacks import bar_only, jsonl_callback, validation_callback, wall_budget_callback
from strop.training.curriculum import Curriculum, curriculum_class
from strop.training.data import arms_of, prompt_rows, training_problems
from strop.training.grpo import _trainer_class
from strop.training.rc import RC_LOG, RC_PROMPTS, RCRows, keep_prompts
from strop.training.recipe import TrainRecipe
from strop.training.rewards import RewardBook
from strop.training.run_folder import _check_same_recipe, _truncate_jsonl, checkpoint_step, last_checkpoint, wall_so_far
from strop.training.sources import CurriculumRows, RowSource

log = logging.getLogger("strop.training")

VALIDATION = "validation"  # the run folder's evaluations during training, one harness folder per step
CURRICULUM_LOG = "curriculum.jsonl"
@dataclass(frozen=True)
class TrainResult:
    output: Path
    final_model: Path
    steps: int
    resumed_from: Path | None
    wall_s: float
    main_process: bool = True  # False on the other ranks of a several-process run (they write nothing)


def _curriculum(recipe: TrainRecipe, arms: list[str], max_steps: int) -> Curriculum | None:
    c = recipe.curriculum
    if c.kind == "none":
        return None
    return curriculum_class(c.kind).from_spec(arms, np.random.default_rng(c.seed), dataclasses.asdict(c), max_steps)


@contextlib.contextmanager
def trl_deprecations_hidden() -> Iterator[None]:
    """Within the block, transformers' warnings that its gradient-checkpointing names were renamed are not shown.

    TRL 1.16 and peft still use the old names (GRPOConfig, wrapping a model in an adapter, generating while
    training); the warning is for their authors, not for whoever runs a recipe. Scoped to strop's calls into
    them: the process's own warning filters are untouched.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*checkpointing.* is deprecated", category=FutureWarning)
        yield


def grpo_args(output: Path, grpo: dict[str, Any], reward_weights: list[float]):
    """TRL's GRPOConfig from strop's settings (CPU/GPU defaults filled), with TRL's complaints as ConfigError."""
    import torch
    from trl import GRPOConfig

    grpo = dict(grpo)
    grpo.setdefault("bf16", bool(torch.cuda.is_available()))
    grpo.setdefault("dataloader_pin_memory", bool(torch.cuda.is_available()))
    try:
        with trl_deprecations_hidden():
            return GRPOConfig(output_dir=str(output), reward_weights=reward_weights, **grpo)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"grpo section rejected by TRL's GRPOConfig: {e}") from e


def make_trainer(args: Any, model: Any, tokenizer: Any, task: Task, problems: list[Problem], arms: list[str], *,
                 curriculum: Curriculum | None, book: RewardBook, system: str | None = None, peft_config: Any = None,
                 curriculum_log: Path | None = None, quiet: bool = True, source: RowSource | None = None,
                 rollout_backend: Any = None, template_kwargs: dict[str, Any] | None = None, dynamic_rounds: int = 0):
    """A StropGRPOTrainer over ``problems`` (rows rendered as ``strop eval`` renders them) for an already loaded model.

    Its rows come from ``curriculum`` (drawn over ``problems`` by arm, logged
    to ``curriculum_log``), or from ``source``, a row source of one's own
    (RC training's), or, with neither, from TRL's shuffled dataset.
    """
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if curriculum is not None and source is not None:
        raise ConfigError("a trainer takes its rows from a curriculum or from a row source, not both")
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
    if curriculum is not None:
        source = CurriculumRows(curriculum, pool, args.num_generations, curriculum_log)
    if dynamic_rounds and source is None:
        raise ConfigError("dynamic sampling draws replacement groups from a curriculum or RC: it needs one")
    model.train()
    with trl_deprecations_hidden():  # peft reads the old name while wrapping the model in an adapter
        trainer = _trainer_class()(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
            reward_funcs=book.functions(), peft_config=peft_config, row_source=source, rewards=book,
            rollout_backend=rollout_backend, system=system, template_kwargs=template_kwargs, dynamic_rounds=dynamic_rounds,
        )
    if trainer.accelerator.num_processes > 1:
        if dynamic_rounds:
            raise ConfigError("dynamic sampling runs in one process for now: which groups to keep would have to be chosen "
                              "across ranks (each rank holds only its slice of every round), which is not built; launch "
                              "without several processes or drop dynamic_sampling")
        if isinstance(source, RCRows):
            raise ConfigError("RC training runs in one process for now: every rank would have to roll out the same states "
                              "with its own copy of the policy, or share rollouts and the replay buffer across ranks, which "
                              "is not built; launch it without several processes")
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
    source = None
    if recipe.rc is not None:
        source = RCRows(recipe.rc, task, problems, backend.tokenizer, reasoning_tokens=args.max_completion_length,
                         temperature=args.temperature, num_generations=args.num_generations, seed=args.seed,
                         system=recipe.data.system, log=output / RC_LOG, template_kwargs=recipe.model.chat_template_kwargs)
        keep_prompts(output / RC_PROMPTS, source.config.prompts)
    trainer = make_trainer(
        args, backend.model, backend.tokenizer, task, problems, arms,
        curriculum=_curriculum(recipe, arms, args.max_steps), book=book, system=recipe.data.system,
        peft_config=lora_config(recipe.model.lora) if recipe.model.lora is not None else None,
        curriculum_log=output / CURRICULUM_LOG, quiet=quiet, source=source, rollout_backend=rollout_backend,
        template_kwargs=recipe.model.chat_template_kwargs,
        dynamic_rounds=recipe.dynamic_sampling.max_rounds if recipe.dynamic_sampling is not None else 0,
    )
    if recipe.max_wall_s is not None:  # before validation, so that the step it stops at is validated
        trainer.add_callback(wall_budget_callback(trainer, recipe.max_wall_s, lambda: wall_so_far(output)))
    if recipe.eval is not None:
        trainer.add_callback(validation_callback(trainer, recipe, task, output / VALIDATION))
    trainer.add_callback(jsonl_callback(output / "metrics.jsonl"))
    return trainer


def _budget_spent(recipe: TrainRecipe, prior_s: float) -> bool:
    return recipe.max_wall_s is not None and prior_s >= recipe.max_wall_s


def train(recipe: TrainRecipe, *, quiet: bool = False, rollout_backend: Any = None) -> TrainResult:
    """Run (or resume) a recipe; writes metrics.jsonl, curriculum.jsonl, checkpoints and final/ under ``recipe.output``.

    Progress (a line per step, resuming) goes to the ``strop.training``
    logger at INFO, which ``strop train`` shows; ``quiet`` drops the progress
    bar. A run whose last checkpoint already reached ``max_steps`` is not trained
    again (transformers' loop would take one more step); its final model is
    written from that checkpoint if the kill came before ``final/`` was.
    """
    output = Path(recipe.output)
    trainer = build_trainer(recipe, quiet=quiet, rollout_backend=rollout_backend)
    resume = last_checkpoint(output)
    step0 = checkpoint_step(resume) if resume else 0
    if trainer.accelerator.is_main_process:  # the process that writes them
        for name in ("metrics.jsonl", CURRICULUM_LOG, RC_LOG):
            _truncate_jsonl(output / name, step0)
    prior_s = wall_so_far(output)  # after the truncation: what the checkpoint's steps took
    t0 = time.perf_counter()
    if resume is not None and (step0 >= trainer.args.max_steps or _budget_spent(recipe, prior_s)):
        if trainer.accelerator.is_main_process:
            why = (f"max_steps {trainer.args.max_steps}" if step0 >= trainer.args.max_steps
                   else f"{prior_s:.0f}s of the {recipe.max_wall_s:.0f}s wall-clock budget spent")
            log.info("%s already holds %d steps (%s): nothing to train", output, step0, why)
        trainer._load_from_checkpoint(str(resume))
        trainer.state.global_step = step0
    else:
        if resume and trainer.accelerator.is_main_process:
            log.info("resuming from %s", resume)
        with trl_deprecations_hidden():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    wall = time.perf_counter() - t0

    final = output / "final"
    if trainer.accelerator.is_main_process:
        trained = trainer.model
        if hasattr(trained, "merge_and_unload"):
            trained = trained.merge_and_unload()  # LoRA: save a plain model that any backend loads
        trained.save_pretrained(final)
        trainer.processing_class.save_pretrained(final)
    return TrainResult(output, final, trainer.state.global_step, resume, wall, trainer.accelerator.is_main_process)
