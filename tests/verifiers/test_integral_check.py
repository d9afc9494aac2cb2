"""The numerical integral check as a config: presets matching the reference checkers, records naming them,
and the numeric validity rule for LADDER variants."""

from __future__ import annotations

import json

import numpy as np
import pytest

from strop.backends.scripted import ScriptedBackend
from strop.errors import ConfigError, StropError
from strop.evaluation.harness import EvalSpec, evaluate
from strop.ladder.integrals import validate_integrand
from strop.ladder.tree import TreeSpec, build_tree
from strop.ladder.variants import ArithmeticKind, IntegralKind
from strop.tasks import Problem, resolve_task
from strop.verifiers.integral import DEFAULT_CHECK, PRESETS, IntegralCheck, check_domain, integral_check, verify_integral

# Hand-worked verdicts. Per test point, error e = F(b) - F(a) - integral of f over [a, b]:
# - f = 1, F = 1.05 x: e = 0.05 (b - a). strop: width 0.1, |e| = 0.005 > 1e-2 * 0.1 (5% off): incorrect at every point.
#   ttrl: |e| = 0.005 <= 1e-2 + 1e-3 * 0.1: correct at every point. ladder: b - a spans up to 20, |e| > 1e-2 once
#   |b - a| > 0.2 (all ten pairs closer than that has probability ~1e-17): incorrect.
# - f = 100, F = 100.5 x: e = 0.5 (b - a). strop: |e| = 0.05 <= 1e-2 * 10 (0.5% off): correct. ttrl: 0.05 >
#   1e-2 + 1e-3 * 10 = 0.02: incorrect. ladder: |e| > 1e-2 once |b - a| > 0.02: incorrect.
# - f = 1, F = (x^3)^(1/3): x for x > 0, but the principal cube root is complex for x < 0. ttrl: a root moves its
#   domain to [0.1, 10], where F = x: correct. strop: its points (seed 0) reach x < 0, F(b) - F(a) is complex there
#   and the integral is 0.1: incorrect. ladder: an end below 0 makes the same complex mismatch: incorrect.
# - f = x e^x, F = (x - 1) e^x: right everywhere: correct under every preset.
HAND = [
    ("1", "1.05*x", {"strop": "incorrect", "ladder": "incorrect", "ttrl": "correct"}),
    ("100", "100.5*x", {"strop": "correct", "ladder": "incorrect", "ttrl": "incorrect"}),
    ("1", "(x**3)**(1/3)", {"strop": "incorrect", "ladder": "incorrect", "ttrl": "correct"}),
    ("x*exp(x)", "(x - 1)*exp(x)", {"strop": "correct", "ladder": "correct", "ttrl": "correct"}),
]


@pytest.mark.parametrize("integrand,answer,verdicts", HAND)
def test_each_preset_on_hand_worked_integrands(integrand, answer, verdicts):
    for name, want in verdicts.items():
        got = verify_integral(integrand, f"\\boxed{{{answer}}}", seed=0, check=PRESETS[name])
        assert got.verdict.value == want, (name, got)


def test_strop_preset_is_todays_check():
    # The default keeps strop's settings: 5 points of width 0.1 in [-10, 10], relative tolerance 1e-2, resampling.
    assert DEFAULT_CHECK == PRESETS["strop"] == IntegralCheck()
    assert (DEFAULT_CHECK.points, DEFAULT_CHECK.atol, DEFAULT_CHECK.rtol, DEFAULT_CHECK.width) == (5, 0.0, 1e-2, 0.1)
    assert (DEFAULT_CHECK.low, DEFAULT_CHECK.high, DEFAULT_CHECK.domain, DEFAULT_CHECK.min_points) == (-10.0, 10.0, "fixed", 5)
    # The (x^3)^(1/3) verdict above rests on strop's seed-0 points reaching negative x.
    assert (np.random.default_rng(0).uniform(-10.0, 9.9, size=5) < 0).any()
    lad, tt = PRESETS["ladder"], PRESETS["ttrl"]
    assert (lad.points, lad.atol, lad.rtol, lad.interval) == (10, 1e-2, 0.0, "independent")
    assert (tt.points, tt.atol, tt.rtol, tt.domain) == (10, 1e-2, 1e-3, "positive-for-log-or-root")


def test_domain_rule_moves_to_positive_x_under_a_log_or_a_root():
    import sympy

    x = sympy.Symbol("x")
    ttrl = PRESETS["ttrl"]
    assert check_domain(ttrl, x * sympy.exp(x), x**2 - 1 / x) == (-10.0, 10.0)
    assert check_domain(ttrl, sympy.exp(x), x * sympy.log(x)) == (0.1, 10.0)  # the answer's log counts too
    assert check_domain(ttrl, sympy.sqrt(x + 1)) == (0.1, 10.0)
    assert check_domain(ttrl, 2**x * sympy.sqrt(2)) == (-10.0, 10.0)  # a constant positive base is real everywhere
    assert check_domain(PRESETS["strop"], sympy.log(x)) == (-10.0, 10.0)  # strop's domain is fixed


def test_config_is_validated_and_preset_names_mean_their_settings():
    for kwargs, needle in [({"points": 0}, "points"), ({"atol": 0.0, "rtol": 0.0}, "atol and rtol"), ({"rtol": -1.0}, "atol and rtol"),
                           ({"domain": "wide"}, "domain"), ({"interval": "random"}, "interval"), ({"min_points": 6}, "min_points"),
                           ({"tries": 3}, "tries"), ({"width": 30.0}, "width"), ({"low": 5.0, "high": 1.0}, "low < high"),
                           ({"complex_points": "drop"}, "complex_points"), ({"atol": float("nan")}, "atol")]:
        with pytest.raises(ConfigError, match=needle):
            IntegralCheck(name="mine", **kwargs)
    with pytest.raises(ConfigError, match="preset"):
        IntegralCheck(name="ladder", points=3, min_points=3)
    assert IntegralCheck(name="mine", points=3, min_points=3, tries=30).points == 3
    with pytest.raises(ConfigError, match="strop, ladder, ttrl"):
        integral_check("math")


# --------------------------------------------------------------- records and tasks


def _integral_rows():
    task = resolve_task("integrals")
    return [task.parse({"id": "one", "integrand": "1"}, 0), task.parse({"id": "hundred", "integrand": "100"}, 1)]


def _answers(prompt: str) -> str:
    return "\\boxed{100.5*x}" if "integral of 100 dx" in prompt else "\\boxed{1.05*x}"


def test_records_name_the_check_and_a_run_keeps_one(tmp_path):
    problems = _integral_rows()
    for name, want in [("ttrl", {"one": True, "hundred": False}), ("strop", {"one": False, "hundred": True})]:
        task = resolve_task("integrals", None, name)
        assert task.verifier == name
        out = tmp_path / name
        spec = EvalSpec("integrals", "greedy", "scripted", None, verifier=None if name == "strop" else name)
        evaluate(spec, task, problems, ScriptedBackend(_answers), out)
        rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        assert {r["id"]: r["correct"] for r in rows} == want
        assert all(r["verifier"] == name for r in rows)
    # A folder judged by one check is not resumed with another.
    with pytest.raises(StropError, match="differs in: verifier"):
        evaluate(EvalSpec("integrals", "greedy", "scripted", None), resolve_task("integrals"), problems,
                 ScriptedBackend(_answers), tmp_path / "ttrl")


def test_verifier_choice_is_offered_only_where_a_task_has_several():
    assert resolve_task("integrals").verifier == "strop" and resolve_task("mit-integration-bee-2025", None, "ladder").verifier == "ladder"
    assert resolve_task("arithmetic").verifier is None
    with pytest.raises(ConfigError, match="one check"):
        resolve_task("arithmetic", None, "ladder")
    with pytest.raises(ConfigError, match="unknown integral check"):
        resolve_task("integrals", None, "math")
    bee = resolve_task("mit-integration-bee-2025", None, "ttrl")
    p = Problem("b", "∫ 1 dx", "x", "indefinite", {"integrand": "1"})
    assert bee.check(p, "\\boxed{1.05*x}").correct and not resolve_task("mit-integration-bee-2025").check(p, "\\boxed{1.05*x}").correct


# ------------------------------------------------------------ variant validity


def test_numeric_validity_keeps_integrands_sympy_cannot_integrate():
    # x^x has no elementary antiderivative: SymPy's rule discards it; it integrates numerically on [0.1, 10]
    # (a non-integer power moves the ttrl domain there), so the numeric rule keeps it, without an answer.
    assert validate_integrand("x**x") == {"ok": False, "why": "SymPy finds no antiderivative"}
    v = validate_integrand("x**x", "numeric")
    assert v["ok"] and v["answer"] is None and v["integrand"] == "x**x"
    assert not validate_integrand("sin(x)/x", "numeric")["ok"]  # quadrature meets 0/0 at x = 0, as in the reference
    assert validate_integrand("x*exp(x)", "numeric")["key"] == validate_integrand("x*exp(x)")["key"]  # same de-duplication
    with pytest.raises(ConfigError, match="validity"):
        validate_integrand("x", "quad")


def test_tree_validity_option():
    root = Problem("r0", "x^x e^x", None, None, {"integrand": "x**x*exp(x)"})
    sympy_tree = build_tree([root], IntegralKind(), TreeSpec(depth=1, symbolic_per_node=6))
    numeric_tree = build_tree([root], IntegralKind(), TreeSpec(depth=1, symbolic_per_node=6, validity="numeric"))
    kept = {n["integrand"] for n in sympy_tree.nodes if n["depth"] == 1}
    assert "x**x" not in kept and sympy_tree.rejected["SymPy finds no antiderivative"] >= 1
    assert "x**x" in {n["integrand"] for n in numeric_tree.nodes if n["depth"] == 1}
    with pytest.raises(ConfigError, match="validity"):
        TreeSpec(validity="quad")
    with pytest.raises(ConfigError, match="applies to integrals"):
        build_tree([Problem("a", "1 + 2 = ?", 3)], ArithmeticKind(), TreeSpec(depth=1, validity="numeric"))


def test_a_tree_log_from_before_the_validity_option_resumes(tmp_path):
    path = tmp_path / "tree.jsonl"
    root = Problem("r0", "x e^x", None, None, {"integrand": "x*exp(x)"})
    build_tree([root], IntegralKind(), TreeSpec(depth=1, symbolic_per_node=2), path)
    log = path.with_name(path.name + ".expanded")
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    del header["spec"]["validity"]  # as older builds wrote it
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    build_tree([root], IntegralKind(), TreeSpec(depth=1, symbolic_per_node=2), path)  # the default: same settings
    with pytest.raises(ConfigError, match="other settings"):
        build_tree([root], IntegralKind(), TreeSpec(depth=1, symbolic_per_node=2, validity="numeric"), path)
