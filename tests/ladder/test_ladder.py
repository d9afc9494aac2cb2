"""LADDER: variant generators, trees (de-duplication, resume after a kill), training data, test-time variant RL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from locations import ROOT, TESTS
from strop.backends.scripted import ScriptedBackend
from strop.errors import CapabilityError, ConfigError, UnknownNameError
from strop.ladder.arithmetic import symbolic_arithmetic_variants
from strop.ladder.integrals import LEVELS, integral_problems, integrand_keys, validate_integrand
from strop.ladder.tree import TreeSpec, build_tree
from strop.ladder.variants import KINDS, PERSONAS, TEMPERATURES, request_plan
from strop.tasks import get_task
from strop.verifiers import verify_integral


# ------------------------------------------------------------- generators
@pytest.mark.parametrize("integrand", ["3*x**2 + 2*x + 1", "5*x*exp(2*x)", "sqrt(x + 1)*sin(2*x)", "4*x**3 + 9*exp(3*x)"])
def test_integral_variants_parse_and_the_verifier_checks_them(integrand):
    kind = KINDS["integral"]
    made = 0
    for seed in range(3):
        for cand in kind.symbolic(integrand, 4, seed):
            v = kind.validate(cand.payload)
            if not v["ok"]:
                continue  # rejected candidates never become nodes (see the tree tests)
            made += 1
            # The verifier accepts the known antiderivative and rejects a wrong one: it can check this problem.
            assert verify_integral(v["payload"], f"\\boxed{{{v['answer']}}}").correct
            assert verify_integral(v["payload"], f"\\boxed{{{v['answer']} + x**7}}").verdict.value == "incorrect"
    assert made >= 3


def test_every_tree_node_is_a_checkable_problem(tmp_path):
    task = get_task("integrals")
    roots = [task.load(seed=3)[i] for i in (0, 25, 45, 65, 85)]  # one per level
    tree = build_tree(roots, KINDS["integral"], TreeSpec(depth=2, symbolic_per_node=2, seed=1), tmp_path / "t.jsonl")
    variants = [n for n in tree.nodes if n["depth"] > 0]
    assert len(variants) >= 8
    for i, n in enumerate(variants):
        p = task.parse(n, i)
        assert p.category == f"depth{n['depth']}" and n["parent"] in {m["id"] for m in tree.nodes}
        assert task.check(p, f"\\boxed{{{n['answer']}}}").correct, n


def test_local_rules_are_the_documented_simplifications():
    import sympy

    from strop.ladder.integrals import _local_rules

    x = sympy.Symbol("x")

    def rules(text):
        e = sympy.sympify(text)
        return {(name, sympy.sstr(e.xreplace({node: repl}))) for name, node, repl in _local_rules(e, x)}

    assert rules("7*x**3") == {("drop a coefficient", "x**3"), ("make the coefficient cancel", "4*x**3"), ("lower an exponent", "7*x**2")}
    assert rules("x*exp(2*x)") == {("drop a factor", "x"), ("drop a factor", "exp(2*x)"),
                                   ("simplify an argument", "x*exp(x)"), ("drop a coefficient", "x*exp(x)")}
    assert rules("sqrt(x + 1)") == {("remove a root", "x + 1"), ("drop a term", "sqrt(x)"), ("drop a term", "1")}


def test_hostile_integrands_are_refused_not_run():
    assert not validate_integrand("__import__('os').system('true')")["ok"]
    assert "unknown names" in validate_integrand("y*x")["why"]
    slow = validate_integrand("9^9^9^9")  # whitelisted, but SymPy would run for ever
    assert not slow["ok"]
    assert validate_integrand("x*exp(x)")["answer"] in ("(x - 1)*exp(x)", "x*exp(x) - exp(x)")


def test_arithmetic_variants_are_easier_and_exact():
    out = symbolic_arithmetic_variants("86 + 67 - 5 = ?", 10, seed=0)
    assert {q for q, _, _ in out} == {"67 - 5 = ?", "86 - 5 = ?", "86 + 67 = ?", "8 + 67 - 5 = ?", "86 + 6 - 5 = ?"}
    for q, a, _ in out:
        nums = q.removesuffix(" = ?").split()
        total = int(nums[0]) + sum(int(v) * (1 if s == "+" else -1) for s, v in zip(nums[1::2], nums[2::2]))
        assert total == a >= 0
    # One operation is the floor: a two-operand sum only loses digits, and a one-digit sum has no variants.
    assert {q for q, _, _ in symbolic_arithmetic_variants("86 + 67 = ?", 10, seed=0)} == {"8 + 67 = ?", "86 + 6 = ?"}
    assert symbolic_arithmetic_variants("8 + 6 = ?", 10, seed=0) == []


def test_generator_levels_are_distinct_and_seeded():
    for lv in LEVELS:
        a, b = integral_problems(20, seed=0, level=lv), integral_problems(20, seed=0, level=lv)
        assert a == b and len({p["integrand"] for p in a}) == 20
    with pytest.raises(ConfigError, match="unknown integral level"):
        integral_problems(1, seed=0, level="hard")


# ------------------------------------------------------------ de-duplication
def test_variants_equal_to_test_problems_never_enter_the_tree(tmp_path):
    kind = KINDS["integral"]
    root = get_task("integrals").parse({"id": "r", "integrand": "3*x**2 + 2*x"}, 0)
    free = build_tree([root], kind, TreeSpec(depth=1, symbolic_per_node=6, seed=0))
    made = {n["integrand"] for n in free.nodes if n["depth"] == 1}
    assert len(made) >= 3
    banned = sorted(made)[:2]
    # The test set writes them differently: the key is canonical (term order, spacing).
    written = [" + ".join(reversed(s.split(" + "))) for s in banned]
    keys = integrand_keys(written)
    assert len(keys) == 2
    tree = build_tree([root], kind, TreeSpec(depth=1, symbolic_per_node=6, seed=0), exclude_keys=keys)
    kept = {n["integrand"] for n in tree.nodes}
    assert not kept & set(banned) and kept - {"3*x**2 + 2*x"}
    assert tree.rejected["in the excluded (test) set"] >= 2
    # A root that is itself a test problem is left out.
    assert build_tree([root], kind, TreeSpec(depth=1, symbolic_per_node=2), exclude_keys=integrand_keys(["2*x + 3*x**2"])).nodes == []


# -------------------------------------------------------- model-written ones
def test_model_written_variants_follow_the_paper_prompting_and_are_validated():
    replies = iter([
        "Sure!\nintegrate(x**2, x)\nintegrate(x^2, x)\nintegrate(__import__('os'), x)\nintegrate(exp(x), x)\nI like maths.",
        "\\int 2*x dx and integrate(9^9^9^9, x) and integrate(y*x, x)",
    ])
    backend = ScriptedBackend(lambda prompt: next(replies))
    kind = KINDS["integral"]
    root = get_task("integrals").parse({"id": "r", "integrand": "3*x**2 + exp(2*x)"}, 0)
    tree = build_tree([root], kind, TreeSpec(depth=1, symbolic_per_node=0, model_requests=2, variants_per_request=10),
                      backend=backend)
    got = [(n["integrand"], n["source"]) for n in tree.nodes if n["depth"] == 1]
    assert got == [("x**2", "model"), ("exp(x)", "model"), ("2*x", "model")]
    assert tree.rejected["duplicate"] == 1  # x^2 is x**2
    assert sum(tree.rejected.values()) == 4  # + the import, the tower of powers and y*x
    temps = [n["meta"]["temperature"] for n in tree.nodes if n["depth"] == 1]
    assert temps == [TEMPERATURES[0], TEMPERATURES[0], TEMPERATURES[1]]
    assert PERSONAS[0] in backend.prompts[0] and PERSONAS[1] in backend.prompts[1]
    for prompt in backend.prompts:
        named = [t for t in kind.transforms if f"- {t}" in prompt]
        assert 3 <= len(named) <= 5 and "integrate(3*x**2 + exp(2*x), x)" in prompt


def test_request_plans_draw_3_to_5_transformations_in_library_order():
    rng = np.random.default_rng(0)
    kind = KINDS["integral"]
    for i in range(30):
        plan = request_plan(i, rng, kind)
        idx = [kind.transforms.index(t) for t in plan["transforms"]]
        assert 3 <= len(idx) <= 5 and idx == sorted(idx) and len(set(idx)) == len(idx)
        assert plan["temperature"] == TEMPERATURES[i % len(TEMPERATURES)] and 0.8 <= plan["temperature"] <= 1.4


# ------------------------------------------------------------------ resume
def _build_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "strop", "ladder", "build", "--task", "integrals", "--seed", "2", "--limit", "6",
            "--depth", "2", "--symbolic", "2", "--out", str(out)]


def _nodes(path: Path) -> list[tuple]:
    return [(n["id"], n["integrand"], n["parent"]) for n in map(json.loads, path.read_text().splitlines())]


@pytest.mark.slow
def test_a_killed_tree_build_resumes_to_the_same_tree(tmp_path):
    whole = tmp_path / "whole.jsonl"
    subprocess.run(_build_cmd(whole), check=True, capture_output=True, cwd=ROOT, timeout=600)
    killed, marker = tmp_path / "killed.jsonl", tmp_path / "blocked"
    # The same tree through a test plugin whose 10th variant validation blocks for ever (tests/blocking_plugin.py):
    # the kill lands mid-expansion at a known point, whatever the machine's speed; the resumed build never blocks.
    env = {**os.environ, "STROP_PLUGINS": "blocking_plugin", "STROP_TEST_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [a if a != "integrals" else "integrals-blocking" for a in _build_cmd(killed)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, "the build ended before its blocked validation"
        assert time.monotonic() < deadline, "the build never reached its 10th validation"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _nodes(killed)
    assert 0 < len(partial) < len(_nodes(whole))
    assert any(n[2] is not None for n in partial)  # some variants were written before the kill
    with killed.open("a") as f:
        f.write('{"id": "cut mid-li')  # a line cut by the kill
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600, env=env)
    assert _nodes(killed) == _nodes(whole)
    # Finished: a third run adds nothing; other settings are refused.
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600, env=env)
    assert _nodes(killed) == _nodes(whole)
    bad = subprocess.run(cmd[:-2] + ["--depth", "1", "--out", str(killed)], capture_output=True, text=True, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "built with other settings" in bad.stderr


def test_an_expansion_cut_short_is_redone_without_duplicates(tmp_path):
    kind = KINDS["arithmetic"]
    roots = get_task("arithmetic").load(seed=0, categories=["d2o2"])[:3]  # several variants each
    spec = TreeSpec(depth=2, symbolic_per_node=3, seed=4)
    whole = build_tree(roots, kind, spec, tmp_path / "whole.jsonl").nodes
    path = tmp_path / "cut.jsonl"
    build_tree(roots, kind, spec, path)
    # Simulate a kill after the first child of a depth-1 node was written, before its log line.
    lines, log = path.read_text().splitlines(), Path(str(path) + ".expanded")
    entries = log.read_text().splitlines()
    cut = next(i for i, e in enumerate(entries) if i > 3 and json.loads(e).get("children", 0) >= 2)
    node = json.loads(entries[cut])["expanded"]
    first = next(i for i, line in enumerate(lines) if json.loads(line)["parent"] == node)
    path.write_text("\n".join(lines[: first + 1]) + "\n")
    log.write_text("\n".join(entries[:cut]) + "\n")
    again = build_tree(roots, kind, spec, path).nodes
    assert [n["id"] for n in again] == [n["id"] for n in whole]
    assert [n["question"] for n in again] == [n["question"] for n in whole]


# --------------------------------------------------------- training on trees
def test_ladder_recipe_takes_task_file_and_arms_from_the_tree(tmp_path):
    from strop.ladder.training import ladder_recipe

    roots = get_task("arithmetic").load(seed=0)[100:102]
    tree = tmp_path / "tree.jsonl"
    build_tree(roots, KINDS["arithmetic"], TreeSpec(depth=2, symbolic_per_node=2), tree)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("output: out\ncurriculum: {kind: schedule}\n")
    r = ladder_recipe(tree, recipe)
    assert (r.data.task, r.data.data, r.data.categories) == ("arithmetic", str(tree), ["depth2", "depth1", "depth0"])
    from strop.training.data import training_problems

    _, problems = training_problems(r.data)
    assert len(problems) == len(tree.read_text().splitlines())
    with pytest.raises(ConfigError, match="not a tree"):
        ladder_recipe(tmp_path / "r.yaml", recipe)


def test_the_arithmetic_ladder_recipe_trains_depths_in_order_and_never_on_an_evaluation_question(tmp_path):
    """recipes/ladder-arith.yaml on a tiny model: easiest depth first, and no tree node is a held-out problem."""
    from typer.testing import CliRunner

    from strop.cli.app import app
    from strop.ladder.training import ladder_recipe
    from strop.training.data import training_problems
    from strop.training.entry import build_trainer
    from strop.training.run_folder import load_metrics
    from tiny_lm import build_tiny_lm

    tree = tmp_path / "tree.jsonl"
    # The README's build command, on two-digit roots so that one-digit variants collide with evaluation questions.
    res = CliRunner().invoke(app, ["ladder", "build", "--task", "arithmetic", "--seed", "1", "--exclude-seed", "0",
                                   "--category", "d2o1", "--limit", "12", "--depth", "2", "--symbolic", "2", "--out", str(tree)])
    assert res.exit_code == 0, res.output
    assert "in the excluded (test) set" in res.output  # the exclusion had something to do
    nodes = [json.loads(line) for line in tree.read_text().splitlines()]
    held = {p.question for p in get_task("arithmetic").load(seed=0)}  # what strop eval --task arithmetic asks
    assert {n["depth"] for n in nodes} == {0, 1, 2} and not {n["question"] for n in nodes} & held

    recipe = ladder_recipe(tree, ROOT / "recipes" / "ladder-arith.yaml", {
        "model.name": str(build_tiny_lm(tmp_path / "m", seed=0)), "output": str(tmp_path / "run"),
        "grpo.max_steps": 6, "curriculum.steps_per_arm": 2, "grpo.num_generations": 2, "grpo.per_device_train_batch_size": 4,
        "grpo.max_completion_length": 4, "grpo.beta": 0.0, "grpo.save_steps": 1000})
    _, problems = training_problems(recipe.data)
    assert {p.question for p in problems} == {n["question"] for n in nodes} and not {p.question for p in problems} & held
    trainer = build_trainer(recipe, quiet=True)
    seen: list[list[str]] = []
    original = trainer._after_generation

    def spy(out):
        seen.append([c for c, _ in trainer.round_book])  # the category of every rollout the step trained on
        original(out)

    trainer._after_generation = spy
    trainer.train()
    order = ["depth2", "depth2", "depth1", "depth1", "depth0", "depth0"]
    assert seen == [[d] * 4 for d in order]
    _, curriculum = load_metrics(tmp_path / "run")
    assert [max(r["counts"], key=r["counts"].get) for r in curriculum] == order


# ------------------------------------------------------ test-time variant RL
@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    from strop.backends.hf import HFBackend
    from tiny_lm import build_tiny_lm

    return HFBackend(str(build_tiny_lm(tmp_path_factory.mktemp("tiny") / "m", seed=0)), device="cpu")


def test_test_time_rl_leaves_the_base_weights_bit_identical(tiny_backend):
    from strop.ladder.ttrl import TTRLConfig, test_time_rl

    task = get_task("arithmetic")
    problem = task.load(seed=0, categories=["d2o2"])[0]
    before = {k: v.detach().clone() for k, v in tiny_backend.model.state_dict().items()}
    cfg = TTRLConfig(steps=3, depth=2, variants_per_node=3, groups_per_step=2, num_generations=4, max_tokens=6,
                     learning_rate=0.05, probe_samples=2, pass_samples=3)
    seen = []
    res = test_time_rl(tiny_backend, task, problem, np.random.default_rng(0), config=cfg, progress=lambda d, t: seen.append(d))
    s = res.stats
    assert s["steps"] == 3 and seen == [1, 2, 3] and s["variants"] >= 4 and s["probes"] == 6
    assert len(s["train_reward"]) == 3 and s["decoded_tokens"] > 3 * 8
    assert s["pass_samples"] == 3 and 0 <= s["sample_correct_before"] <= 3 and 0 <= s["sample_correct_after"] <= 3
    assert len(s["train_correct"]) == 3 and s["variant_solved"] == any(c > 0 for c in s["train_correct"])
    assert s["solved_during"] == (s["correct_before"] or s["correct_after"] or s["probe_correct"] > 0
                                  or s["sample_correct_before"] > 0 or s["sample_correct_after"] > 0)
    after = tiny_backend.model.state_dict()
    assert set(after) == set(before)  # no adapter layers left behind
    assert all(torch_equal(before[k], after[k]) for k in before)
    assert type(tiny_backend.model).__name__ == "LlamaForCausalLM" and not tiny_backend.model.training


def torch_equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))


def test_the_adapter_really_trains_during_test_time_rl(tiny_backend):
    """Guard against a vacuous bit-identity test: the adapted model differs from the base while it trains."""
    from strop.backends.chat import user_turn
    from strop.ladder import ttrl
    from strop.ladder.ttrl import TTRLConfig, test_time_rl

    task = get_task("arithmetic")
    problem = task.load(seed=0)[101]
    ids = tiny_backend.chat_prompt(user_turn(task.prompt(problem)))

    def logprobs():
        training = tiny_backend.model.training
        tiny_backend.model.eval()
        tiny_backend.reset_cache()  # the prefix cache may hold other weights' keys
        try:
            return tiny_backend.score(ids[:-3], ids[-3:]).logprobs.copy()
        finally:
            tiny_backend.model.train(training)

    base_lp = logprobs()
    shifted = []
    real_answer = ttrl._answer

    def spy(backend, prompt, params, rngs):
        shifted.append(float(np.abs(logprobs() - base_lp).max()))
        return real_answer(backend, prompt, params, rngs)

    ttrl._answer = spy
    try:
        test_time_rl(tiny_backend, task, problem, np.random.default_rng(1),
                     config=TTRLConfig(steps=2, groups_per_step=2, num_generations=4, max_tokens=6, learning_rate=0.05, probe_samples=1))
    finally:
        ttrl._answer = real_answer
    assert shifted[0] < 1e-6 and max(shifted[1:]) > 1e-4  # before training: the base; during: adapted
    assert np.abs(logprobs() - base_lp).max() < 1e-6  # and back to the base after


def test_ttrl_is_refused_outside_eval_and_off_the_hf_backend():
    from strop.ladder.ttrl import TTRLConfig, test_time_rl
    from strop.methods import run_method

    backend = ScriptedBackend(lambda p: "1")
    with pytest.raises(UnknownNameError, match="unknown method 'ttrl'"):  # a solver, not a decoding method
        run_method("ttrl", backend, "1 + 1 = ?", np.random.default_rng(0))
    task = get_task("arithmetic")
    with pytest.raises(CapabilityError, match="--backend hf"):
        test_time_rl(backend, task, task.load(seed=0)[0], np.random.default_rng(0), config=TTRLConfig())
    with pytest.raises(ConfigError, match="no variant generator"):
        from strop.ladder.variants import kind_for_task

        kind_for_task("gsm8k")
    with pytest.raises(ConfigError):
        TTRLConfig(steps=-1)


def test_ttrl_metrics_report_pass_at_k_before_and_after_from_the_samples():
    from strop.evaluation.harness import compute_metrics

    def rec(pid: str, before: int, after: int, variant_solved: bool) -> dict:
        stats = {"solved_during": before + after > 0, "correct_before": False, "correct_after": after > 4, "steps": 4,
                 "variants": 9, "pass_samples": 8, "sample_correct_before": before, "sample_correct_after": after,
                 "variant_solved": variant_solved}
        return {"id": pid, "sample": 0, "category": "d3o1", "correct": after > 4, "answer": "1", "verdict": "incorrect",
                "tokens": 10, "seconds": 1.0, "stats": stats}

    t = compute_metrics([rec("a", 0, 1, True), rec("b", 2, 8, False)], 1, vote="string")["overall"]["ttrl"]
    # by hand: pass@1 = mean(c / 8); pass@5 = 1 - C(8 - c, 5) / C(8, 5); pass@8 = any correct
    assert t["pass_at_k_before"] == pytest.approx({"1": (0 + 2 / 8) / 2, "5": (0 + 1 - 6 / 56) / 2, "8": 0.5})
    assert t["pass_at_k_after"] == pytest.approx({"1": (1 / 8 + 1) / 2, "5": (1 - 21 / 56 + 1) / 2, "8": 1.0})
    assert (t["passn_before"], t["passn_after"], t["variant_solved"]) == (0.5, 1.0, 0.5)


def test_ttrl_variant_validity_option_reaches_the_tree():
    from strop.ladder.ttrl import TTRLConfig

    assert TTRLConfig().validity == "sympy" and TTRLConfig(validity="numeric").validity == "numeric"
    with pytest.raises(ConfigError, match="validity"):
        TTRLConfig(validity="loose")
