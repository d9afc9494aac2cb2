"""Verifiers on tables of real-looking model output: right, wrong, malformed, hostile.

Every hostile case must end in a verdict within its limit: never a hang, a
crash of the run, or an escape from the sandbox.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from strop.verifiers.base import Verdict
from strop.verifiers.code import run_program, verify_code
from strop.verifiers.countdown import verify_countdown
from strop.verifiers.integral import verify_integral
from strop.verifiers.isolation import run_isolated, wall_backstop
from strop.verifiers.math_answer import verify_math

C, W, U, T = Verdict.CORRECT, Verdict.INCORRECT, Verdict.UNVERIFIABLE, Verdict.TIMEOUT

# ---------------------------------------------------------------- math


@pytest.mark.parametrize(
    "gold,completion,expected",
    [
        ("42", "17 + 25 = 42, so the answer is \\boxed{42}.", C),
        ("\\frac{1}{2}", "Therefore $\\boxed{0.5}$", C),
        ("\\frac{\\sqrt{3}}{2}", "We get \\boxed{\\frac{\\sqrt3}{2}}", C),
        ("18", "Janet sells 16 - 3 - 4 = 9 eggs, earning 9 * 2 = \\boxed{18} dollars.", C),
        ("025", "The answer is \\boxed{25}.", C),
        ("42", "I believe the answer is \\boxed{41}.", W),
        ("x^2+1", "\\boxed{x^2 - 1}", W),
        ("42", "I am not sure.", W),
        ("42", "\\boxed{", W),
    ],
)
def test_math_table(gold, completion, expected):
    assert verify_math(gold, completion).verdict is expected


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{9^{9^{9^{9^{9^{9}}}}}}",
        "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
        "1" * 10_000_000,
        "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",
    ],
)
def test_math_hostile_inputs_end_in_a_verdict_within_the_limit(completion):
    t = time.perf_counter()
    v = verify_math("42", completion, timeout_s=3.0)
    # 3 CPU-seconds, or the wall backstop (23 s) on a machine so loaded the CPU time never accrues; far below a hang.
    assert v.verdict in (W, U, T) and time.perf_counter() - t < wall_backstop(3.0) + 30


def test_math_timeout_works_off_the_main_thread():
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("v", verify_math("1", "\\boxed{9^{9^{9^{9^{9}}}}}", timeout_s=2.0)))
    th.start()
    th.join(120)
    assert not th.is_alive() and box["v"].verdict in (W, U, T)


# ------------------------------------------------------------- integrals


@pytest.mark.parametrize(
    "integrand,completion,expected",
    [
        ("x*exp(x)", "Integrating by parts: \\boxed{(x-1)e^{x} + C}", C),
        ("1/x", "\\boxed{\\ln|x|}", W),  # |x| is LaTeX the whitelist refuses: wrong, not a crash
        ("1/x", "\\boxed{log(x)}", C),  # complex branch for x < 0 differs by a constant: still right
        ("cos(x)", "<answer>sin(x)</answer>", C),
        ("3*x**2", "\\boxed{x^3 + 5}", C),
        ("x**2", "\\boxed{x^3/3 + x}", W),
        ("1/(1+x**2)", "\\boxed{\\arctan(x)}", C),
        ("x**2", "The integral is x^3/3", W),  # no boxed answer: nothing to check
        ("x**2", "\\boxed{Integral(x**2, x)}", W),
    ],
)
def test_integral_table(integrand, completion, expected):
    assert verify_integral(integrand, completion, seed=1).verdict is expected


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{__import__('os').system('touch /tmp/strop_pwned')}",
        "\\boxed{x^(10^10^10)}",
        "\\boxed{" + "sin(" * 2000 + "x" + ")" * 2000 + "}",
        "\\boxed{" + "x" * 100_000 + "}",
        "\\boxed{exp(exp(exp(exp(x))))}",
    ],
)
def test_integral_hostile_inputs_end_in_a_verdict_within_the_limit(completion):
    t = time.perf_counter()
    v = verify_integral("x", completion)
    # One attempt's 2 CPU-seconds (a timeout is not retried), or its wall backstop on a loaded machine; never a hang.
    assert v.verdict in (W, U, T) and time.perf_counter() - t < wall_backstop(2.0) + 30
    assert not os.path.exists("/tmp/strop_pwned")


# ------------------------------------------------------------- countdown


@pytest.mark.parametrize(
    "numbers,target,completion,expected",
    [
        ([3, 5, 7], 26, "<answer>3 * 7 + 5</answer>", C),
        ([3, 5, 7], 26, "Let me try: 7 * 3 = 21, 21 + 5 = 26.\n<answer>(7 * 3) + 5</answer>", C),
        ([4, 6, 8], 3, "<answer>(8 + 4) / 6 + 1</answer>", W),  # 1 is not given
        ([4, 6, 8], 3, "<answer>6 / (8 - 4) * 2</answer>", W),
        ([2, 3, 9], 3, "<answer>9 / 3 * 2 / 2</answer>", W),
        ([2, 3, 9], 1, "<answer>9 / (3 * 3)</answer>", W),
        ([3, 5, 7], 26, "<answer>3 ** 7 + 5</answer>", W),  # power refused
        ([3, 5, 7], 26, "<answer>__import__('os')</answer>", W),
        ([3, 5, 7], 26, "<answer>" + "(" * 10000 + "3" + ")" * 10000 + "</answer>", W),
        ([3, 5, 7], 26, "<answer>7 / (5 - 5) + 3</answer>", W),
    ],
)
def test_countdown_table(numbers, target, completion, expected):
    assert verify_countdown(numbers, target, completion).verdict is expected


# ------------------------------------------------------------ code sandbox

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = "def check(f):\n    assert f(2, 3) == 5\n    assert f(-1, 1) == 0\n"


def test_code_right_and_wrong():
    assert verify_code(PROMPT, "    return a + b\n", TEST, "add").verdict is C
    assert verify_code(PROMPT, "    return a - b\n", TEST, "add").verdict is W
    assert verify_code(PROMPT, "    return a +\n", TEST, "add").verdict is W


def test_sandbox_contains_a_time_out():
    t = time.perf_counter()
    assert verify_code(PROMPT, "    while True:\n        pass\n", TEST, "add", timeout_s=2).verdict is T
    assert time.perf_counter() - t < 60  # a bound against a hang; the 2 s limit plus a loaded machine's start-up


def test_sandbox_contains_a_memory_blow_up():
    status, _, out = run_program("x = [0] * (10 ** 10)", timeout_s=5)
    assert status == "failed" and "MemoryError" in out


def test_sandbox_contains_a_write_outside_the_scratch_directory(tmp_path):
    target = tmp_path / "escaped.txt"
    status, _, out = run_program(f"open({str(target)!r}, 'w').write('x')", timeout_s=5)
    assert status == "failed" and not target.exists() and "outside the scratch" in out
    assert run_program("open('inside.txt', 'w').write('x')", timeout_s=5)[0] == "ok"


def test_sandbox_hides_environment_secrets(monkeypatch):
    monkeypatch.setenv("STROP_TEST_SECRET", "hunter2")
    status, _, out = run_program("import os\nprint(os.environ.get('STROP_TEST_SECRET'))", timeout_s=5)
    assert status == "ok" and "hunter2" not in out
    status, _, out = run_program("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", timeout_s=5)
    assert status == "failed" and "hunter2" not in out


def test_sandbox_contains_a_fork_bomb_and_subprocesses():
    t = time.perf_counter()
    assert run_program("import os\nwhile True:\n    os.fork()", timeout_s=5)[0] == "failed"
    assert run_program("import subprocess\nsubprocess.run(['true'])", timeout_s=5)[0] == "failed"
    assert time.perf_counter() - t < 60  # both refused at once; the bound only rules out a hang on a loaded machine


# --------------------------------------------------------------- isolation


def _sleep_forever():
    time.sleep(3600)


def test_isolation_kills_at_the_deadline_from_a_worker_thread():
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("o", run_isolated(_sleep_forever, timeout_s=0.5)))
    t = time.perf_counter()
    th.start()
    th.join(120)
    # A sleeping child uses no CPU: the wall-clock backstop ends it (20.5 s for a 0.5 s limit), not a hang.
    assert box["o"].timed_out and time.perf_counter() - t < wall_backstop(0.5) + 60
