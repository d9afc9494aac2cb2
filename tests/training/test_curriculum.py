"""The RL engine's pure pieces: group advantages, SEC's update and policy, curricula, recipes.

Numbers are worked by hand in the comments, so a failure says which formula moved.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from locations import ROOT
from strop.errors import ConfigError
from strop.training.advantages import arm_signal, group_advantages
from strop.training.curriculum import (
    RandomCurriculum,
    ScheduleCurriculum,
    SECCurriculum,
    boltzmann,
    make_curriculum,
    sec_update,
)


# ------------------------------------------------------------ advantages
def test_group_advantages_hand_worked():
    # Group 1: [1, 0, 0, 0]: mean 0.25, unbiased std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5.
    # Group 2: [1, 1, 0, 0]: mean 0.5, std sqrt(4 * 0.25 / 3) = 0.57735.
    # Group 3: all equal -> 0 (std 0, so eps keeps it finite).
    a = group_advantages([1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1], group_size=4, eps=0.0 + 1e-4)
    np.testing.assert_allclose(a[:4], np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-4))
    np.testing.assert_allclose(a[4:8], np.array([0.5, 0.5, -0.5, -0.5]) / (np.sqrt(1 / 3) + 1e-4))
    np.testing.assert_array_equal(a[8:], 0.0)


def test_group_advantages_scales():
    r = [2.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(group_advantages(r, 2, scale="none"), [1.0, -1.0, 0.0, 0.0])
    # batch std (unbiased) of [2, 0, 1, 1] = sqrt(2 / 3)
    np.testing.assert_allclose(group_advantages(r, 2, scale="batch"), np.array([1.0, -1.0, 0.0, 0.0]) / (np.sqrt(2 / 3) + 1e-4))
    with pytest.raises(ConfigError, match="groups of 3"):
        group_advantages(r, 3)
    with pytest.raises(ConfigError, match="scale"):
        group_advantages(r, 2, scale="rank")


def test_arm_signal_is_mean_absolute_advantage_per_arm():
    assert arm_signal([1.5, -0.5, -0.5, -0.5, 0, 0], ["a"] * 4 + ["b"] * 2) == {"a": 0.75, "b": 0.0}
    with pytest.raises(ConfigError):
        arm_signal([1.0], ["a", "b"])


# -------------------------------------------------------------------- SEC
def test_sec_update_and_boltzmann_hand_worked():
    # Q = 0 everywhere; rewards a: 1.0, b: 0.2, c not drawn; lr 0.5 -> Q = (0.5, 0.1, 0).
    q = sec_update({"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 1.0, "b": 0.2}, lr=0.5)
    assert q == pytest.approx({"a": 0.5, "b": 0.1, "c": 0.0})
    # softmax(Q / 0.4) = exp(1.25, 0.25, 0) / 5.774368 = (0.604455, 0.222366, 0.173179)
    np.testing.assert_allclose(boltzmann([q["a"], q["b"], q["c"]], tau=0.4), [0.604455, 0.222366, 0.173179], atol=1e-6)
    # A second step: Q(a) <- 0.5 * 0.0 + 0.5 * 0.5 = 0.25; b, c keep theirs.
    assert sec_update(q, {"a": 0.0}, lr=0.5) == pytest.approx({"a": 0.25, "b": 0.1, "c": 0.0})
    # lr = 1 forgets the past entirely.
    assert sec_update(q, {"b": 0.7}, lr=1.0)["b"] == pytest.approx(0.7)


def test_boltzmann_is_stable_and_validated():
    p = boltzmann([1000.0, 0.0], tau=0.01)  # exp(1e5) would overflow without the max shift
    assert p.tolist() == [1.0, 0.0]
    with pytest.raises(ConfigError, match="tau"):
        boltzmann([0.0], tau=0.0)
    with pytest.raises(ConfigError, match="lr"):
        sec_update({"a": 0.0}, {"a": 1.0}, lr=0.0)
    with pytest.raises(ConfigError, match="unknown arms"):
        sec_update({"a": 0.0}, {"z": 1.0}, lr=0.5)


def _run_bandit(curriculum, solve_rates: dict[str, float], steps: int, rng: np.random.Generator, k: int = 8, groups: int = 8):
    """Simulated GRPO steps: each group's k rewards are Bernoulli(solve rate of its arm)."""
    shares = []
    for _ in range(steps):
        arms = curriculum.choose(groups)
        rewards = np.concatenate([rng.random(k) < solve_rates[a] for a in arms]).astype(float)
        adv = group_advantages(rewards, k)
        curriculum.update(arm_signal(adv, [a for a in arms for _ in range(k)]))
        shares.append({a: arms.count(a) / groups for a in solve_rates})
    return shares


def test_sec_concentrates_on_the_arm_at_the_edge_of_ability():
    # Expected |A| is highest where the solve rate is 1/2 (methods.md section 4):
    # 'edge' is the arm SEC should learn to prefer; 'solved' and 'hopeless' teach nothing.
    rates = {"hopeless": 0.02, "hard": 0.15, "edge": 0.5, "easy": 0.9, "solved": 1.0}
    sec = SECCurriculum(list(rates), np.random.default_rng(0), tau=0.4, lr=0.5)
    shares = _run_bandit(sec, rates, steps=150, rng=np.random.default_rng(1))
    late = {a: np.mean([s[a] for s in shares[50:]]) for a in rates}
    assert max(late, key=late.get) == "edge"
    assert late["edge"] > 0.4 and late["solved"] < 0.05 and late["hopeless"] < 0.1
    assert max(sec.q, key=sec.q.get) == "edge"
    # A random curriculum on the same instance stays near 1/5 per arm.
    rnd = RandomCurriculum(list(rates), np.random.default_rng(0))
    shares = _run_bandit(rnd, rates, steps=150, rng=np.random.default_rng(1))
    assert np.mean([s["edge"] for s in shares]) == pytest.approx(0.2, abs=0.05)


def test_schedule_walks_the_arms_in_order():
    c = ScheduleCurriculum(["easy", "mid", "hard"], np.random.default_rng(0), steps_per_arm=2)
    seen = []
    for _ in range(8):
        seen.append(set(c.choose(4)))
        c.update({})
    assert seen == [{"easy"}] * 2 + [{"mid"}] * 2 + [{"hard"}] * 4


def test_state_dict_round_trip_continues_the_same_draws():
    a = SECCurriculum(["x", "y", "z"], np.random.default_rng(5), tau=0.4, lr=0.5)
    a.update({"x": 0.9})
    a.choose(3)
    saved = a.state_dict()
    b = make_curriculum("sec", ["x", "y", "z"], np.random.default_rng(999), tau=0.4, lr=0.5)
    b.load_state_dict(saved)
    assert b.q == a.q and b.step == a.step
    assert [a.choose(4) for _ in range(5)] == [b.choose(4) for _ in range(5)]
    with pytest.raises(ConfigError, match="checkpoint holds"):
        RandomCurriculum(["x", "y", "z"], np.random.default_rng(0)).load_state_dict(saved)


def test_curriculum_validation():
    with pytest.raises(ConfigError, match="at least one arm"):
        RandomCurriculum([], np.random.default_rng(0))
    with pytest.raises(ConfigError, match="distinct"):
        RandomCurriculum(["a", "a"], np.random.default_rng(0))
    with pytest.raises(ConfigError, match="unknown curriculum"):
        make_curriculum("ucb", ["a"], np.random.default_rng(0))
    with pytest.raises(ConfigError, match="steps_per_arm"):
        ScheduleCurriculum(["a"], np.random.default_rng(0), steps_per_arm=0)


# ---------------------------------------------------------------- recipes
def test_recipe_validation_names_the_bad_key(tmp_path):
    import trl  # noqa: F401 - part of the test install; missing, it must fail, not skip

    from strop.training.recipe import load_recipe, recipe_from_dict

    r = recipe_from_dict({"data": {"task": "arithmetic"}, "output": "runs/x", "grpo": {"max_steps": 3}})
    assert r.grpo["max_steps"] == 3 and r.grpo["num_generations"] == 8
    with pytest.raises(ConfigError, match="curriculm"):
        recipe_from_dict({"data": {"task": "arithmetic"}, "output": "x", "curriculm": {}})
    with pytest.raises(ConfigError, match="learning_rat"):
        recipe_from_dict({"data": {"task": "arithmetic"}, "output": "x", "grpo": {"learning_rat": 1}})
    with pytest.raises(ConfigError, match="tau"):
        recipe_from_dict({"data": {"task": "arithmetic"}, "output": "x", "curriculum": {"tau": -1}})
    with pytest.raises(ConfigError, match="needs 'data'"):
        recipe_from_dict({"output": "x"})
    with pytest.raises(ConfigError, match="output_dir"):
        recipe_from_dict({"data": {"task": "arithmetic"}, "output": "x", "grpo": {"output_dir": "y"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text("data: {task: arithmetic}\noutput: runs/y\nmodel: {lora: true}\n")
    r = load_recipe(good, {"grpo.max_steps": 7, "output": "runs/z"})
    assert r.grpo["max_steps"] == 7 and r.output == "runs/z" and r.model.lora is not None and r.model.lora.r == 16


def test_shipped_recipes_load():

    import trl  # noqa: F401 - part of the test install; missing, it must fail, not skip
    import yaml

    from strop.training.recipe import load_recipe

    folder = ROOT / "recipes"
    recipes = sorted(folder.glob("*.yaml"))
    assert recipes
    for path in recipes:
        # Tree recipes (LADDER, and plain RL on a tree's roots) name no task: strop ladder train fills in task, file and arms.
        tree_recipe = "task" not in (yaml.safe_load(path.read_text()).get("data") or {})
        load_recipe(path, {"data.task": "integrals", "data.data": "tree.jsonl"} if tree_recipe else None)


def test_training_logs_survive_a_line_cut_by_a_kill(tmp_path):
    from strop.training.run_folder import _truncate_jsonl, load_metrics

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.25}\n{"step": 3, "rew')
    metrics, curriculum = load_metrics(tmp_path)
    assert [m["step"] for m in metrics] == [1, 2] and curriculum == []
    _truncate_jsonl(tmp_path / "metrics.jsonl", 1)  # resume from checkpoint-1 drops what it does not hold
    assert [m["step"] for m in load_metrics(tmp_path)[0]] == [1]


# ------------------------------------------------- SEC and sampling options (hand-worked)
def test_sec_update_drawn_keeps_undrawn_q_and_all_decays_it():
    from strop.training.curriculum import SECCurriculum

    drawn = SECCurriculum(["a", "b", "c"], np.random.default_rng(0), lr=0.5, q0=0.2)
    every = SECCurriculum(["a", "b", "c"], np.random.default_rng(0), lr=0.5, q0=0.2, update="all")
    assert drawn.q == every.q == {"a": 0.2, "b": 0.2, "c": 0.2}
    drawn.update({"a": 1.0})
    every.update({"a": 1.0})
    assert drawn.q == pytest.approx({"a": 0.6, "b": 0.2, "c": 0.2})  # 0.5 * 1 + 0.5 * 0.2; the rest untouched
    assert every.q == pytest.approx({"a": 0.6, "b": 0.1, "c": 0.1})  # the rest: 0.5 * 0 + 0.5 * 0.2
    with pytest.raises(ConfigError, match="update"):
        SECCurriculum(["a"], np.random.default_rng(0), update="some")


def test_problems_are_drawn_with_replacement_as_before_or_in_per_arm_passes():
    from strop.training.curriculum import RandomCurriculum

    # with replacement: exactly one rng.integers(n) per draw, as the trainer drew before the option existed
    c, ref = RandomCurriculum(["a"], np.random.default_rng(5)), np.random.default_rng(5)
    assert [c.draw("a", 7) for _ in range(20)] == [int(ref.integers(7)) for _ in range(20)]
    # without: every pass over an arm's n problems is a permutation, and each arm has its own pass
    c = RandomCurriculum(["a", "b"], np.random.default_rng(1), sampling="without_replacement")
    a = [c.draw("a", 3) for _ in range(6)]
    b = [c.draw("b", 4) for _ in range(4)]
    assert sorted(a[:3]) == sorted(a[3:]) == [0, 1, 2] and sorted(b) == [0, 1, 2, 3]
    # a checkpoint mid-pass resumes the same pass
    c.draw("a", 3)
    state = json.loads(json.dumps(c.state_dict()))
    rest = [c.draw("a", 3) for _ in range(5)]
    d = RandomCurriculum(["a", "b"], np.random.default_rng(99), sampling="without_replacement")
    d.load_state_dict(state)
    assert [d.draw("a", 3) for _ in range(5)] == rest
    with pytest.raises(ConfigError, match="sampling"):
        RandomCurriculum(["a"], np.random.default_rng(0), sampling="sometimes")


def test_recipe_options_reach_the_curriculum_and_old_checkpoints_still_load():
    from strop.training.curriculum import RandomCurriculum
    from strop.training.entry import _curriculum
    from strop.training.recipe import recipe_from_dict

    raw = {"data": {"task": "arithmetic"}, "output": "x",
           "curriculum": {"kind": "sec", "q0": 0.3, "update": "all", "sampling": "without_replacement", "tau": 1.0, "seed": 2}}
    c = _curriculum(recipe_from_dict(raw), ["d1o1", "d2o1"], 10)
    assert (c.kind, c.q, c.update_rule, c.sampling, c.tau) == ("sec", {"d1o1": 0.3, "d2o1": 0.3}, "all", "without_replacement", 1.0)
    s = _curriculum(recipe_from_dict({**raw, "curriculum": {"kind": "schedule"}}), ["a", "b", "c"], 10)
    assert s.steps_per_arm == 3  # unset: the steps split over the arms
    for bad in ({"kind": "sec", "update": "every"}, {"kind": "random", "sampling": "twice"}, {"kind": "nope"}):
        with pytest.raises(ConfigError):
            recipe_from_dict({**raw, "curriculum": bad})
    # a checkpoint written before per-arm passes existed has no "left": it loads, drawing with replacement
    old = RandomCurriculum(["a"], np.random.default_rng(0)).state_dict()
    del old["left"]
    RandomCurriculum(["a"], np.random.default_rng(1)).load_state_dict(old)


# ------------------------------------------------------------------ rewards
def test_reward_functions_agree_in_any_call_order_and_verify_each_completion_once():
    from strop.tasks import get_task
    from strop.training.rewards import RewardBook

    task = get_task("arithmetic")
    probs = task.load(seed=0, categories=["d1o1"])[:2]
    completions = [f"The answer is {probs[0].gold}.", "no idea", f"{probs[1].gold}", "It is 1000."]
    ids = [probs[0].id, probs[0].id, probs[1].id, probs[1].id]
    cats = ["d1o1"] * 4
    for order in ("correct first", "format first"):
        book = RewardBook(task, probs, format_weight=0.1)
        calls = []
        real = book.verify
        book.verify = lambda c, pid, calls=calls, real=real: calls.append((pid, c)) or real(c, pid)
        correct, fmt = book.functions()
        if order == "format first":
            f, c = fmt(completions, problem_id=ids, category=cats), correct(completions, problem_id=ids, category=cats)
        else:
            c, f = correct(completions, problem_id=ids, category=cats), fmt(completions, problem_id=ids, category=cats)
        assert c == [1.0, 0.0, 1.0, 0.0] and f == [1.0, 0.0, 1.0, 1.0], order
        assert sorted(calls) == sorted(zip(ids, completions))  # each completion checked once for both rewards
