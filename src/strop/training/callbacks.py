"""Trainer callbacks: metrics as JSON lines with a progress line, validation during training, a bare progress bar."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strop.errors import ConfigError
from strop.tasks import Task
from strop.training.recipe import TrainRecipe

log = logging.getLogger("strop.training")


def validation_callback(trainer: Any, recipe: TrainRecipe, train_task: Task, folder: Path):
    """Evaluate the current policy on held-out problems every ``recipe.eval.every`` steps (see ``ValidationSpec``).

    The result goes into the step's logged metrics, so metrics.jsonl holds it
    beside the step's reward; the records go to ``folder/step-N``, which the
    harness resumes, so a killed run re-evaluates a step to the same records.
    """
    from transformers import TrainerCallback

    from strop.evaluation.harness import EvalSpec, evaluate
    from strop.methods import settings_record
    from strop.tasks import resolve_task

    v = recipe.eval
    assert v is not None
    task = train_task if v.task is None else resolve_task(v.task, None, None, v.data)
    problems = task.load(v.data, limit=v.limit, seed=v.seed, categories=v.categories)
    if not problems:
        raise ConfigError(f"eval: no held-out problems in {v.data or f'task {task.name} (seed {v.seed})'}")
    kwargs = v.method_kwargs()
    spec = EvalSpec(task=task.name, method=v.method, backend="hf", model="policy", samples=v.samples, limit=v.limit,
                    seed=v.seed, data=v.data, system=recipe.data.system, method_config=settings_record(kwargs),
                    categories=v.categories)

    class Validation(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            if step % v.every and step != state.max_steps and not control.should_training_stop:
                return  # not a validation step, nor the last one (max_steps, or a wall-clock budget's stop)
            if not trainer.accelerator.is_main_process:
                return  # rank 0 evaluates; the others wait for it at the next collective
            from strop.backends.hf import HFBackend

            t0 = time.perf_counter()
            policy = trainer.accelerator.unwrap_model(trainer.model)
            backend = HFBackend.wrap(policy, trainer.processing_class)
            if recipe.model.chat_template_kwargs:
                backend.chat_template_kwargs = dict(recipe.model.chat_template_kwargs)
            was_training = policy.training
            policy.eval()
            try:
                m = evaluate(spec, task, problems, backend, folder / f"step-{step}", method_kwargs=kwargs)
            finally:
                policy.train(was_training)
                backend.reset_cache()
            o = m["overall"]
            logged = trainer._metrics["train"]
            logged["eval/accuracy"].append(float(o["accuracy"]))
            logged["eval/ci95_lo"].append(float(o["ci95"][0]))
            logged["eval/ci95_hi"].append(float(o["ci95"][1]))
            logged["eval/attempts"].append(float(o["attempts"]))
            logged["eval/wall_s"].append(time.perf_counter() - t0)
            for c, cm in m.get("per_category", {}).items():
                logged[f"eval/category/{c}/accuracy"].append(float(cm["accuracy"]))

    return Validation()


def jsonl_callback(path: Path):
    """Metrics as JSON lines, and a progress line per step to the ``strop.training`` logger at INFO.

    Whether that line is shown is the logging configuration's business: ``strop train`` shows it unless ``--quiet``.
    """
    from transformers import TrainerCallback

    class JsonlMetrics(TrainerCallback):
        """One JSON line per logging step, with wall time per step, and a compact progress line logged."""

        def __init__(self) -> None:
            self.t0 = time.perf_counter()
            self.last_step, self.last_t = -1, self.t0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.last_step, self.last_t = state.global_step, time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return  # the end-of-training summary has no reward: not a step record
            now = time.perf_counter()
            steps = max(1, state.global_step - self.last_step)
            rec = {"step": state.global_step, "time_s": round(now - self.t0, 3),
                   "wall_per_step_s": round((now - self.last_t) / steps, 3), **logs}
            self.last_step, self.last_t = state.global_step, now
            with path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if log.isEnabledFor(logging.INFO):
                mix = " ".join(f"{k.split('/')[-1]}:{v:.2f}" for k, v in logs.items() if k.startswith("curriculum/share/"))
                log.info(f"step {state.global_step}/{state.max_steps}  reward {logs['reward']:.3f}  "
                         f"zero-std {logs.get('frac_reward_zero_std', float('nan')):.2f}  "
                         f"len {logs.get('completions/mean_length', float('nan')):.1f}  "
                         f"{rec['wall_per_step_s']:.1f}s/step" + (f"  mix {mix}" if mix else "")
                         + (f"  held-out {logs['eval/accuracy']:.3f}" if "eval/accuracy" in logs else ""))

    return JsonlMetrics()


def wall_budget_callback(trainer: Any, budget_s: float, prior_s: Callable[[], float]):
    """Stop training (with a checkpoint) at the end of the first step whose wall time, ``prior_s()`` (earlier runs of
    this folder, read when training begins) plus this run's, reaches ``budget_s``. Registered before the validation
    callback, which then validates the stopping step. Rank 0's clock decides for every rank: ranks that disagreed
    at the boundary would wait for each other forever."""
    from transformers import TrainerCallback

    class WallBudget(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0, self.prior = time.perf_counter(), prior_s()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            spent = self.prior + time.perf_counter() - self.t0
            stop = [spent >= budget_s]
            if trainer.accelerator.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                broadcast_object_list(stop, from_process=0)
            if stop[0]:
                if state.is_world_process_zero:
                    log.info(f"wall-clock budget reached ({spent:.0f}s of {budget_s:.0f}s): stopping after step {state.global_step}")
                control.should_training_stop = True
                control.should_save = True  # the stopped run resumes (or is extended) from here

    return WallBudget()


def bar_only():
    """HF's progress bar without its dump of every metric on each log step."""
    from transformers.trainer_callback import ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, *args: Any, **kwargs: Any) -> None:
            return None

    return BarOnly()
