"""A llama.cpp build that crashes on this CPU becomes one clear message, never a dead process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from locations import ROOT, TESTS
from strop.backends import native
from strop.backends.llamacpp import smoke_argv

CRASHING_CHILD = ("import os, signal; print('SYSTEM_INFO CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |', flush=True);"
                  " os.kill(os.getpid(), signal.SIGSEGV)")


def test_a_child_killed_by_sigsegv_is_a_verdict_naming_the_features_and_the_fix():
    v = native.run_check(argv=[sys.executable, "-c", CRASHING_CHILD])
    assert not v.ok
    assert "crashed (SIGSEGV)" in v.message
    assert "AMX_INT8 = 1" in v.message and v.system_info.startswith("CPU :")
    assert native.cmake_args("portable") in v.message and "make clean && make run" in v.message


def test_a_failing_child_is_a_verdict_with_its_last_lines():
    v = native.run_check(argv=[sys.executable, "-c", "import sys; sys.exit('no model here')"])
    assert not v.ok and "exit status 1" in v.message and "no model here" in v.message


def test_the_real_build_decodes_here():
    v = native.run_check(smoke_argv())
    assert v.ok, v.message
    assert "AVX2 = 1" in v.system_info or "SSE3 = 1" in v.system_info  # llama.cpp's own feature list


def test_portable_flags_keep_avx512_and_amx_off_and_levels_follow_the_cpu():
    args = native.cmake_args("portable")
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args
    assert "-DGGML_AVX512=OFF" in args and "-DGGML_AMX_INT8=OFF" in args
    assert native.default_level({"avx", "avx2", "fma", "f16c", "bmi2", "sse4_2"}) == "portable"
    assert native.default_level({"sse2", "sse4_2"}) == "baseline"


def _crash_record(cache: Path) -> None:
    """Remember a crash verdict for the installed build, as check_build would after a crashing child."""
    key = native.build_key()
    assert key is not None
    v = native.run_check(argv=[sys.executable, "-c", CRASHING_CHILD])
    (cache / "native-check").mkdir(parents=True)
    (cache / "native-check" / f"{key}.json").write_text(json.dumps({"ok": False, "message": v.message, "system_info": v.system_info}))


def test_strop_solve_on_a_crashing_build_says_what_to_do(tmp_path):
    _crash_record(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "strop", "solve", "1 + 1 = ?"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STROP_CACHE": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "crashed (SIGSEGV)" in proc.stderr and "make clean && make run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_suite_stops_with_one_clear_message_before_any_test(tmp_path):
    _crash_record(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "backends" / "test_logits.py")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "STROP_CACHE": str(tmp_path)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "llama.cpp smoke check failed, no test was run" in out and "crashed (SIGSEGV)" in out
    assert " passed" not in out


def test_openmp_threads_spin_briefly_unless_the_user_says_otherwise():
    """Long-spinning OpenMP barriers collapse llama.cpp and torch on a busy machine (docs/contributing.md); strop bounds
    the spin before either runtime loads, and leaves a wait policy or spin count the user set alone."""
    import os
    import subprocess
    import sys

    code = "import strop, os; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def spin(**extra: str) -> str:
        got = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        return got.stdout.strip()

    assert spin() == "20000"
    assert spin(GOMP_SPINCOUNT="5") == "5"
    assert spin(OMP_WAIT_POLICY="ACTIVE") == "None"
