"""The GRPO engine end to end on a tiny LM built in the test (seconds on CPU, nothing downloaded).

- it learns: the reward of a verifiable task rises within a bounded number of steps;
- TRL's advantages are exactly ``group_advantages`` of the verifier's rewards;
- the curriculum drives the batches and its log matches the arms drawn;
- a run killed with SIGKILL resumes from its last checkpoint and ends with the
  same curriculum state, random state and per-step records as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trl  # noqa: F401 - the train extra is part of the test install; missing, it must fail, not skip

from killed_runs import kill_after_first_checkpoint, resume
from strop.errors import ConfigError
from strop.training.advantages import group_advantages
from strop.training.entry import build_trainer, train
from strop.training.recipe import recipe_from_dict
from strop.training.run_folder import last_checkpoint, load_metrics
from strop.training.sources import CURRICULUM_STATE
from tiny_lm import script_reward

pytestmark = pytest.mark.slow


def tiny_recipe(model: Path, data: Path, out: Path, **grpo) -> dict:
    return {
        "model": {"name": str(model)},
        "data": {"task": "jsonl", "data": str(data), "fields": {"question": "q", "answer": "a", "category": "cat"},
                 "verifier": "number", "seed": 0},
        "curriculum": {"kind": "sec", "tau": 0.4, "lr": 0.5, "seed": 3},
        "grpo": {"num_generations": 8, "per_device_train_batch_size": 32, "max_completion_length": 4,
                 "learning_rate": 3e-3, "beta": 0.0, "temperature": 1.0, "save_steps": 1000, "seed": 0,
                 "gradient_checkpointing": False, **grpo},
        "output": str(out),
    }


def test_grpo_learns_a_verifiable_task(tiny_model, say_seven, tmp_path):
    steps = 80
    res = train(recipe_from_dict(tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=steps)), quiet=True)
    assert res.steps == steps and (res.final_model / "config.json").is_file()
    metrics, curriculum = load_metrics(tmp_path / "run")
    rewards = [m["reward"] for m in metrics]
    assert len(rewards) == steps and len(curriculum) == steps
    first, last = np.mean(rewards[:5]), np.mean(rewards[-10:])
    # A random char-level LM says a lone "7" ~2-5% of the time; GRPO must make it the habit.
    # Seen (fixed seeds): CPU first 5 steps 0.04, last 10 0.89; an H200 GPU learned faster (first 5: 0.131).
    # So the check is the gain, not how low the start is: a wide margin on both sides of every run seen.
    assert last > 0.6 and last - first > 0.3, (first, last)
    for key in ("reward_std", "frac_reward_zero_std", "completions/mean_length", "entropy", "wall_per_step_s",
                "category/short/reward", "curriculum/share/long", "curriculum/q/short"):
        assert any(key in m for m in metrics), key


def test_trl_advantages_are_group_advantages_and_batches_follow_the_curriculum(tiny_model, say_seven, tmp_path):
    # beta > 0: TRL keeps a reference model and logs the KL to it.
    recipe = recipe_from_dict(tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=3, beta=0.04))
    trainer = build_trainer(recipe, quiet=True)
    seen = []
    original = trainer._after_generation

    def spy(out):
        seen.append((out["advantages"].detach().cpu().numpy().copy(), list(trainer.round_book), list(trainer.row_source.drawn_arms)))
        original(out)

    trainer._after_generation = spy
    trainer.train()
    assert len(seen) == 3
    for adv, book, arms in seen:
        rewards = np.array([s for _, s in book])
        np.testing.assert_allclose(adv, group_advantages(rewards, 8), atol=1e-5)
        # Each group of 8 is one problem of the arm the curriculum drew for it.
        assert [c for c, _ in book] == arms
    metrics, curriculum = load_metrics(tmp_path / "run")
    assert all(m["kl"] >= 0 for m in metrics) and len(metrics) == 3
    assert [sum(r["counts"].values()) for r in curriculum] == [4, 4, 4]
    assert [r["counts"] for r in curriculum] == [{a: arms.count(a) // 8 for a in ("long", "short")} for _, _, arms in seen]


def test_killed_run_resumes_with_the_same_curriculum_and_random_state(tiny_model, say_seven, tmp_path):
    import yaml

    # 12 steps, a checkpoint every 4: the kill lands after the first checkpoint
    # with most of the run still to go (a step takes ~0.06 s here).
    steps = 12
    whole = tiny_recipe(tiny_model, say_seven, tmp_path / "whole", max_steps=steps, save_steps=4)
    train(recipe_from_dict(whole), quiet=True)

    killed = tmp_path / "killed.yaml"
    killed.write_text(yaml.safe_dump(tiny_recipe(tiny_model, say_seven, tmp_path / "killed", max_steps=steps, save_steps=4)))
    ck = kill_after_first_checkpoint(killed, tmp_path / "killed", steps)
    resume(killed, ck)

    m_whole, c_whole = load_metrics(tmp_path / "whole")
    m_killed, c_killed = load_metrics(tmp_path / "killed")
    assert [r["step"] for r in c_killed] == list(range(1, steps + 1))
    assert c_killed == c_whole  # arms drawn, probabilities, signals, Q: step for step
    assert [m["reward"] for m in m_killed] == [m["reward"] for m in m_whole]
    s_whole = json.loads((tmp_path / "whole" / f"checkpoint-{steps}" / CURRICULUM_STATE).read_text())
    s_killed = json.loads((tmp_path / "killed" / f"checkpoint-{steps}" / CURRICULUM_STATE).read_text())
    assert s_killed == s_whole  # Q, step and the curriculum's RNG state

    # Running a finished recipe again trains nothing (transformers' loop would
    # take a step past max_steps) and leaves final/ equal to the last checkpoint.
    from safetensors.numpy import load_file

    again = train(recipe_from_dict(whole), quiet=True)
    assert again.steps == steps and len(load_metrics(tmp_path / "whole")[0]) == steps
    assert not (tmp_path / "whole" / f"checkpoint-{steps + 1}").exists()
    final, last = load_file(again.final_model / "model.safetensors"), load_file(tmp_path / "whole" / f"checkpoint-{steps}" / "model.safetensors")
    assert final.keys() == last.keys() and all(np.array_equal(final[k], last[k]) for k in final)


def test_resume_refuses_another_recipe(tiny_model, say_seven, tmp_path):
    from strop.errors import ConfigError

    train(recipe_from_dict(tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=1)), quiet=True)
    other = tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=1)
    other["curriculum"]["kind"] = "random"
    with pytest.raises(ConfigError, match="different recipe"):
        build_trainer(recipe_from_dict(other), quiet=True)


def test_progress_goes_to_the_strop_training_logger_and_not_to_stdout(tiny_model, say_seven, tmp_path, caplog, capsys):
    """A library that prints writes into whatever stdout the program embedding it has; strop's training logs instead.

    The CLI shows the same lines (test_strop_train_and_report_from_the_command_line).
    """
    import logging

    with caplog.at_level(logging.INFO, logger="strop.training"):
        train(recipe_from_dict(tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=2, save_steps=2)), quiet=False)
        train(recipe_from_dict(tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=3, save_steps=2)), quiet=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "strop.training"]
    assert [line.split("  ")[0] for line in lines if line.startswith("step ")] == ["step 1/2", "step 2/2", "step 3/3"]
    assert f"resuming from {tmp_path / 'run' / 'checkpoint-2'}" in lines
    assert "step " not in capsys.readouterr().out


def test_a_wall_clock_budget_stops_with_a_checkpoint_counts_earlier_runs_and_can_grow(tiny_model, say_seven, tmp_path):
    """max_wall_s: the first step past the budget is the last, with a checkpoint; a rerun counts the wall time that
    metrics.jsonl already holds (nothing to train), and a larger budget on the same folder goes on from there."""
    from strop.training.run_folder import wall_so_far

    val = {"every": 100, "data": str(say_seven), "limit": 4, "method": "greedy", "max_tokens": 4}

    def run(budget: float):
        return train(recipe_from_dict({**tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=50),
                                       "max_wall_s": budget, "eval": val}), quiet=True)

    first = run(1e-3)  # any step takes longer: exactly one step
    assert first.steps == 1 and (tmp_path / "run" / "checkpoint-1").is_dir() and first.final_model.is_dir()
    assert "eval/accuracy" in load_metrics(tmp_path / "run")[0][0]  # the step the budget stopped at is validated
    spent = wall_so_far(tmp_path / "run")
    assert spent > 1e-3
    again = run(spent * 0.5)  # already spent: no step trained, nothing written again
    assert again.steps == 1 and [r["step"] for r in load_metrics(tmp_path / "run")[0]] == [1]
    more = run(spent + 1e-3)  # the budget grew: one more step (this run's own clock) past it
    assert more.steps == 2 and [(r["step"], "eval/accuracy" in r) for r in load_metrics(tmp_path / "run")[0]] == [(1, True), (2, True)]
    with pytest.raises(ConfigError, match="max_wall_s must be"):
        recipe_from_dict({**tiny_recipe(tiny_model, say_seven, tmp_path / "x"), "max_wall_s": 0})


def test_strop_train_and_report_from_the_command_line(tiny_model, say_seven, tmp_path):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=3)))
    r = subprocess.run([sys.executable, "-m", "strop", "train", str(recipe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "step 3/3  reward" in r.stdout and "trained 3 steps" in r.stdout
    assert "step 3/3" not in r.stderr  # shown once: the CLI's handler, not the root handler as well
    r = subprocess.run([sys.executable, "-m", "strop", "report", str(tmp_path / "run"), "--plot", str(tmp_path / "c.png")],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "sec" in r.stdout and "reward first" in r.stdout and (tmp_path / "c.png").stat().st_size > 10_000


@pytest.mark.parametrize("body, needle", [
    ("data: {task: arithmetic}\noutput: OUT\ngrpo: {num_generation: 8}\n", "num_generation"),
    ("data: {task: nope}\noutput: OUT\n", "unknown task"),
    ("data: {task: arithmetic, categories: [d9o9]}\noutput: OUT\n", "d9o9"),
    ("data: {task: arithmetic}\noutput: OUT\ntensorboard: true\n", "tensorboard"),
    ("data: {task: arithmetic}\noutput: OUT\ngrpo: {per_device_train_batch_size: 12, num_generations: 8}\n", "GRPOConfig"),
    ("[1, 2]\n", "mapping"),
])
def test_bad_recipes_are_one_clear_line(body, needle, tmp_path):
    import importlib.util

    if needle == "tensorboard" and importlib.util.find_spec("tensorboard"):
        pytest.skip("tensorboard is installed here")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(body.replace("OUT", str(tmp_path / "out")))
    r = subprocess.run([sys.executable, "-m", "strop", "train", str(recipe)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_lora_run_saves_a_merged_model_any_backend_loads(tiny_model, say_seven, tmp_path):
    from strop.backends.hf import HFBackend

    recipe = tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=2)
    recipe["model"]["lora"] = {"r": 4, "alpha": 8}
    res = train(recipe_from_dict(recipe), quiet=True)
    assert not (res.final_model / "adapter_config.json").exists()
    merged = HFBackend(str(res.final_model), device="cpu")
    assert not any("lora" in name for name, _ in merged.model.named_parameters())


@pytest.mark.parametrize("kind", ["schedule", "none"])
def test_schedule_and_no_curriculum_through_the_trainer(kind, tiny_model, say_seven, tmp_path):
    recipe = tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=2)
    recipe["curriculum"] = {"kind": kind, "steps_per_arm": 1} if kind == "schedule" else {"kind": "none"}
    train(recipe_from_dict(recipe), quiet=True)
    metrics, curriculum = load_metrics(tmp_path / "run")
    assert len(metrics) == 2
    if kind == "schedule":  # arms in sorted order (no data.categories): long for step 1, short for step 2
        assert [r["counts"] for r in curriculum] == [{"long": 4, "short": 0}, {"long": 0, "short": 4}]
    else:
        assert curriculum == [] and any("category/long/reward" in m or "category/short/reward" in m for m in metrics)


def test_a_checkpoint_whose_state_file_is_empty_or_cut_is_not_resumed_from(tmp_path):
    # A kill can land while the Trainer writes trainer_state.json (seen in a test run).
    for step, text in ((1, '{"global_step": 1}'), (2, ""), (3, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    assert last_checkpoint(tmp_path).name == "checkpoint-1"


def test_fewer_problems_than_groups_per_step_still_trains(tiny_model, tmp_path):
    # One problem, 4 groups a step: TRL's sampler alone would yield no batch and train 0 steps.
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"q": "Say 7.", "a": "7", "cat": "only"}) + "\n")
    for kind in ("none", "sec"):
        recipe = tiny_recipe(tiny_model, data, tmp_path / kind, max_steps=2)
        recipe["curriculum"] = {"kind": kind}
        res = train(recipe_from_dict(recipe), quiet=True)
        assert res.steps == 2 and len(load_metrics(tmp_path / kind)[0]) == 2


def test_a_curriculum_registered_in_one_module_is_usable_from_a_recipe(tiny_model, say_seven, tmp_path, monkeypatch):
    """A plugin module (STROP_PLUGINS) registers a curriculum; a recipe names it; nothing else in strop changes."""
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "strop_test_last_arm.py").write_text(
        "import numpy as np\n"
        "from strop.training.curriculum import Curriculum, register_curriculum\n\n\n"
        "@register_curriculum\n"
        "class LastArm(Curriculum):\n"
        "    kind = 'last-arm'\n\n"
        "    def __init__(self, arms, rng, *, sampling='with_replacement', weight=1.0):\n"
        "        super().__init__(arms, rng, sampling=sampling)\n"
        "        self.weight = weight\n\n"
        "    def probabilities(self):\n"
        "        p = np.zeros(len(self.arms))\n"
        "        p[-1] = self.weight\n"
        "        return p\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    monkeypatch.setenv("STROP_PLUGINS", "strop_test_last_arm")
    recipe = tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=2)
    recipe["curriculum"] = {"kind": "last-arm", "options": {"weight": 1.0}, "sampling": "without_replacement"}
    train(recipe_from_dict(recipe), quiet=True)
    _, curriculum = load_metrics(tmp_path / "run")
    assert [r["counts"] for r in curriculum] == [{"long": 0, "short": 4}, {"long": 0, "short": 4}]  # sorted arms: short is last


def test_validation_and_dynamic_sampling_log_per_step_and_survive_a_kill(tiny_model, say_seven, tmp_path):
    import yaml

    from strop.evaluation.metrics import wilson_interval

    steps = 8
    val = {"every": 3, "data": str(say_seven), "limit": 6, "method": "greedy", "max_tokens": 4}

    def recipe(name: str) -> dict:  # dynamic sampling on as well: its extra draws must resume exactly too
        return {**tiny_recipe(tiny_model, say_seven, tmp_path / name, max_steps=steps, save_steps=4), "eval": val,
                "dynamic_sampling": {"max_rounds": 2}}

    train(recipe_from_dict(recipe("whole")), quiet=True)
    metrics, _ = load_metrics(tmp_path / "whole")
    evaluated = [m["step"] for m in metrics if "eval/accuracy" in m]
    assert evaluated == [3, 6, 8]  # every 3 steps, and the last one
    for m in metrics:
        if "eval/accuracy" not in m:
            continue
        recs = [json.loads(x) for x in (tmp_path / "whole" / "validation" / f"step-{m['step']}" / "records.jsonl").read_text().splitlines()]
        c = sum(r["correct"] for r in recs)
        assert len(recs) == m["eval/attempts"] == 6 and m["eval/accuracy"] == pytest.approx(c / 6)
        assert [m["eval/ci95_lo"], m["eval/ci95_hi"]] == pytest.approx(list(wilson_interval(c, 6)))

    from strop.training.report import load_run, plot_training, validation_curve

    curve = validation_curve(metrics)
    assert [p["step"] for p in curve] == evaluated and all(a["wall_s"] < b["wall_s"] for a, b in zip(curve, curve[1:]))
    plot_training([load_run(tmp_path / "whole")], tmp_path / "curves.png")  # the held-out columns are drawn
    assert (tmp_path / "curves.png").stat().st_size > 0

    killed = tmp_path / "killed.yaml"
    killed.write_text(yaml.safe_dump(recipe("killed")))
    resume(killed, kill_after_first_checkpoint(killed, tmp_path / "killed", steps))
    again, _ = load_metrics(tmp_path / "killed")
    assert all(m["dynamic/groups_drawn"] >= 4 for m in metrics)
    keys = ("step", "reward", "eval/accuracy", "dynamic/groups_drawn", "dynamic/groups_with_signal")
    assert [{k: m.get(k) for k in keys} for m in again] == [{k: m.get(k) for k in keys} for m in metrics]
    for s in evaluated:  # the same held-out answers, step for step
        a = (tmp_path / "whole" / "validation" / f"step-{s}" / "records.jsonl").read_text().splitlines()
        b = (tmp_path / "killed" / "validation" / f"step-{s}" / "records.jsonl").read_text().splitlines()
        assert [json.loads(x)["output"] for x in a] == [json.loads(x)["output"] for x in b]


def test_dynamic_sampling_keeps_only_groups_with_signal_and_fills_the_batch(tiny_model, say_seven, tmp_path):
    """A scripted reward: every "long" problem scores 0 (no variance), every "short" one alternates 1, 0 (variance)."""
    recipe = tiny_recipe(tiny_model, say_seven, tmp_path / "run", max_steps=4)
    recipe["curriculum"] = {"kind": "random", "seed": 11}
    recipe["dynamic_sampling"] = {"max_rounds": 2}
    trainer = build_trainer(recipe_from_dict(recipe), quiet=True)

    script_reward(trainer, lambda i, c: 0.0 if c == "long" else i % 2)
    batches = []
    real = trainer._step_batch

    def spy(inputs):
        out = real(inputs)
        batches.append(([a for a in trainer.row_source.drawn_arms[::8]], out["advantages"].reshape(4, 8).abs().sum(1).gt(0).tolist(),
                        int(out["completion_ids"].shape[0]), int(out["num_items_in_batch"]), int(out["completion_mask"].sum())))
        return out

    trainer._step_batch = spy
    trainer.train()
    metrics, curriculum = load_metrics(tmp_path / "run")
    assert len(batches) == 4 and any(len(b[0]) > 4 for b in batches)  # the seed makes some steps draw again
    for (drawn, signal, rows, items, mask), m, c in zip(batches, metrics, curriculum):
        # rounds of 4 draws until 4 short groups are in hand, at most 2 extra rounds
        need = next((r for r in range(3) if drawn[: 4 * (r + 1)].count("short") >= 4), 2)
        assert len(drawn) == 4 * (need + 1) and m["dynamic/extra_rounds"] == need and m["dynamic/groups_drawn"] == len(drawn)
        short = drawn.count("short")
        assert m["dynamic/groups_with_signal"] == short
        assert signal == [True] * min(4, short) + [False] * (4 - min(4, short))  # signal first, then the fill
        assert rows == 32 and items == mask  # a full batch, TRL's token count of the batch trained on
        assert c["counts"] == {"long": drawn.count("long"), "short": short}  # the curriculum saw every draw


def test_the_report_names_sec_with_its_q_update_when_not_the_default():
    from strop.training.report import curriculum_label

    assert curriculum_label({"kind": "sec", "update": "all"}) == "sec/all"
    assert curriculum_label({"kind": "sec", "update": "drawn"}) == "sec"
    assert curriculum_label({"kind": "sec"}) == "sec"
    assert curriculum_label({"kind": "random", "update": "all"}) == "random"
