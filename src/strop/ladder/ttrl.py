"""Test-time variant RL (LADDER's "TTRL"; not the unrelated test-time RL by majority-vote rewards).

For one test problem: build a tree of easier variants of it, run a few GRPO
steps on a fresh LoRA adapter over those variants, answer the problem with the
adapted model, then remove the adapter, so the next problem starts from the
original weights (bit-identical: only adapter weights are trained, and
``unload`` takes the adapter layers out again).

Two accuracies are kept apart, as the paper's 90% on the MIT qualifier
counts a problem solved if *any* verified attempt during the process was
correct: ``correct`` is the final answer's verdict; ``stats.solved_during``
says whether any verified attempt was correct: the greedy answer before
training, the ``pass_samples`` sampled attempts before and after training
(the same random streams both times, for paired pass@k), any probe (sampled
attempts at the test problem after each step) or the final answer.
The verifier for integrals needs no answer key, so that oracle is available
at test time; for tasks whose check needs the gold answer it is not.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strop.backends.base import Backend, Generation, SamplingParams
from strop.backends.chat import user_turn
from strop.errors import CapabilityError, ConfigError
from strop.methods.base import MethodResult, Progress
from strop.methods.options import Settings
from strop.tasks import Problem, Task


@dataclass(frozen=True)
class TTRLConfig:
    """Per-problem budget and GRPO settings. The paper runs up to 100 steps on ~800 variants; a CPU affords far fewer."""

    steps: int = 8
    depth: int = 2
    variants_per_node: int = 4
    model_requests: int = 0
    groups_per_step: int = 2
    num_generations: int = 8
    learning_rate: float = 1e-4
    beta: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 32
    temperature: float = 1.0
    max_tokens: int = 48
    format_weight: float = 0.1
    probe_samples: int = 4
    pass_samples: int = 8
    curriculum: str = "sec"
    validity: str = "sympy"  # integral variants: "numeric" keeps any integrand that integrates numerically (the TTRL reference's check)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.groups_per_step < 1 or self.num_generations < 2 or self.max_tokens < 1 or self.probe_samples < 0 \
                or self.pass_samples < 0:
            raise ConfigError("ttrl needs steps >= 0, groups_per_step >= 1, num_generations >= 2, max_tokens >= 1, "
                              f"probe_samples >= 0, pass_samples >= 0; got {self}")
        if self.learning_rate <= 0 or self.beta < 0 or self.format_weight < 0:
            raise ConfigError(f"ttrl needs learning_rate > 0, beta >= 0, format_weight >= 0; got {self}")
        if self.validity not in ("sympy", "numeric"):
            raise ConfigError(f"ttrl validity must be sympy or numeric, got {self.validity!r}")
        from strop.training.curriculum import curriculum_class

        curriculum_class(self.curriculum)  # any registered curriculum; an unknown name is one error naming them


def _answer(backend: Any, prompt: list[int], params: SamplingParams, rngs: list[np.random.Generator]) -> list[Generation]:
    backend.reset_cache()  # the prefix KV cache was computed with other weights
    was_training = backend.model.training
    backend.model.eval()
    try:
        return backend.generate_batch([prompt] * len(rngs), params, rngs)
    finally:
        backend.model.train(was_training)


def test_time_rl(backend: Backend, task: Task, problem: Problem, rng: np.random.Generator, *, config: TTRLConfig,
                 system: str | None = None, progress: Progress | None = None) -> MethodResult:
    """Variant tree -> GRPO on a LoRA adapter -> answer -> adapter removed. See the module docstring.

    One procedure read top to bottom (the reference's steps in order); the adapter must be removed on every
    way out, which a single ``try``/``finally`` here guarantees.
    """
    if getattr(backend, "name", "") != "hf":
        raise CapabilityError(getattr(backend, "name", "?"), "training", "test-time variant RL trains the model: use --backend hf")
    import torch

    from strop.ladder.tree import TreeSpec, build_tree
    from strop.ladder.variants import kind_for_task
    from strop.training.curriculum import curriculum_class
    from strop.training.entry import grpo_args, lora_config, make_trainer, trl_deprecations_hidden
    from strop.training.recipe import LoraSpec
    from strop.training.rewards import RewardBook

    started = time.perf_counter()
    kind = kind_for_task(task.name)
    tree = build_tree([problem], kind, TreeSpec(depth=config.depth, symbolic_per_node=config.variants_per_node,
                                                model_requests=config.model_requests, seed=int(rng.integers(2**31)),
                                                validity=config.validity),
                      backend=backend if config.model_requests else None)
    variants = [task.parse(n, i) for i, n in enumerate(tree.nodes) if n["depth"] > 0]
    prompt = backend.chat_prompt(user_turn(task.prompt(problem), system))
    greedy = SamplingParams(max_tokens=config.max_tokens, temperature=0.0)
    sampled = SamplingParams(max_tokens=config.max_tokens, temperature=config.temperature)
    attempts: list[dict[str, Any]] = []

    def verify(gen: Generation, when: str, step: int) -> None:
        v = task.check(problem, gen.text)
        attempts.append({"when": when, "step": step, "answer": v.extracted, "correct": v.correct, "tokens": gen.completion_tokens})

    # pass@k before and after from the same per-sample random streams, so the two are paired draws.
    pass_seeds = [int(rng.integers(2**31)) for _ in range(config.pass_samples)]

    def passes(when: str, step: int) -> None:
        if config.pass_samples:
            for g in _answer(backend, prompt, sampled, [np.random.default_rng(s) for s in pass_seeds]):
                verify(g, when, step)

    before = _answer(backend, prompt, greedy, [rng])[0]
    verify(before, "before", 0)
    passes("sample_before", 0)
    steps_done, rewards, train_correct, train_tokens = 0, [], [], 0
    if variants and config.steps > 0:
        arms = sorted({v.category for v in variants}, key=lambda c: -int(str(c).removeprefix("depth")))  # easiest first
        book = RewardBook(task, variants, config.format_weight)
        probe_rngs = [np.random.default_rng([int(rng.integers(2**31)), j]) for j in range(config.probe_samples)]
        from transformers import TrainerCallback

        class Probe(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                nonlocal steps_done
                steps_done = state.global_step
                if config.probe_samples:
                    for g in _answer(backend, prompt, sampled, probe_rngs):
                        verify(g, "probe", state.global_step)
                if progress:
                    progress(state.global_step, config.steps)

            def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
                nonlocal train_tokens
                if logs and "reward" in logs:
                    rewards.append(float(logs["reward"]))
                    train_correct.append(float(logs.get("rewards/correct/mean", float("nan"))))
                    train_tokens += int(round(logs.get("completions/mean_length", 0) * config.groups_per_step * config.num_generations))

        seed = int(rng.integers(2**31))
        torch.manual_seed(seed)
        with tempfile.TemporaryDirectory(prefix="strop-ttrl-") as tmp:
            args = grpo_args(Path(tmp), {
                "max_steps": config.steps, "num_generations": config.num_generations,
                "per_device_train_batch_size": config.groups_per_step * config.num_generations,
                "max_completion_length": config.max_tokens, "temperature": config.temperature,
                "learning_rate": config.learning_rate, "lr_scheduler_type": "constant", "beta": config.beta,
                "save_strategy": "no", "report_to": "none", "logging_steps": 1, "seed": seed,
                "gradient_checkpointing": False, "disable_tqdm": True,
            }, book.weights())
            curriculum = curriculum_class(config.curriculum).from_spec(arms, np.random.default_rng(seed), {}, config.steps)
            trainer = make_trainer(args, backend.model, backend.tokenizer, task, variants, arms, curriculum=curriculum,
                                   book=book, system=system, peft_config=lora_config(LoraSpec(r=config.lora_r, alpha=config.lora_alpha)))
            trainer.add_callback(Probe())
            try:
                with trl_deprecations_hidden():
                    trainer.train()
                after = _answer(backend, prompt, greedy, [rng])[0]
                passes("sample_after", steps_done)
            finally:
                # Take the adapter out whatever happened: the next problem must start from the original weights.
                restored = trainer.model.unload() if hasattr(trainer.model, "unload") else trainer.model
                backend.model = restored
                backend.model.eval()
                backend.reset_cache()
    else:
        after = before
        passes("sample_after", 0)
    verify(after, "after", steps_done)
    final = attempts[-1]
    first = next(a for a in attempts if a["when"] == "before")
    stats = {
        "steps": steps_done, "variants": len(variants), "tree": {d: sum(1 for n in tree.nodes if n["depth"] == d) for d in range(config.depth + 1)},
        "answer_before": first["answer"], "correct_before": first["correct"],
        "answer_after": final["answer"], "correct_after": final["correct"],
        "solved_during": any(a["correct"] for a in attempts), "probes": sum(a["when"] == "probe" for a in attempts),
        "probe_correct": sum(a["correct"] for a in attempts if a["when"] == "probe"), "train_reward": rewards,
        # fraction of the step's variant rollouts verified correct; > 0 at any step: a variant was solved during training
        "train_correct": train_correct, "variant_solved": any(c > 0 for c in train_correct),
        # temperature-`temperature` samples of the test problem before and after training (pass@1 = mean, pass@n = any)
        "pass_samples": config.pass_samples,
        "sample_correct_before": sum(a["correct"] for a in attempts if a["when"] == "sample_before"),
        "sample_correct_after": sum(a["correct"] for a in attempts if a["when"] == "sample_after"),
        "decoded_tokens": train_tokens + sum(a["tokens"] for a in attempts), "wall_s": time.perf_counter() - started,
    }
    return MethodResult("ttrl", asdict(config), (after,), 0, final["answer"], stats)


def settings(flat: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """``strop eval --method ttrl``'s settings: sampling from the flat options, the rest from ``--ttrl-*`` (``options``)."""
    return {"config": TTRLConfig(temperature=flat.temperature, max_tokens=flat.max_tokens, num_generations=max(2, flat.n), **options)}


def solve(backend: Backend, task: Task, problem: Problem, rng: np.random.Generator, *, system: str | None = None,
          progress: Progress | None = None, config: TTRLConfig | None = None) -> MethodResult:
    """The solver ``strop eval --method ttrl`` runs (registered in strop.evaluation.solvers)."""
    return test_time_rl(backend, task, problem, rng, config=config or TTRLConfig(), system=system, progress=progress)
