"""Is the installed llama.cpp build safe on this CPU? Checked in a child process, remembered per build.

A llama.cpp compiled for another CPU (or with a broken kernel for this one:
seen, a -march=native build on a Xeon with AVX-512 and AMX) does not raise an
error: it kills the process with SIGSEGV or SIGILL inside ``llama_decode``.
In-process, that is a bare "Segmentation fault" for ``strop solve`` and a dead
test runner with no summary for pytest. So before the first in-process load of
a build, strop loads the embedded model in a *child* process and decodes a few
tokens through the same backend code; a child that dies by a signal becomes
one clear error naming the build's CPU features and the fix. The verdict is
stored under ``$STROP_CACHE/native-check`` keyed by the build's library files
(path, size, mtime), so the check costs one child start per build.

This file is also the single source of the portable build flags: the
Makefile's ``scripts/llama-wheel.sh`` runs it as a script
(``python src/strop/backends/native.py cmake-args portable``) before strop is
installed, so it imports nothing outside the standard library at module level.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"

# The llama.cpp build levels the Makefile knows (scripts/llama-wheel.sh). AMX and
# AVX-512 stay off in `portable`: the native build that crashed used them, and
# the portable build must run on every CPU of its level.
_OFF_512 = ("-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
            " -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF")
CMAKE_ARGS = {
    # x86-64-v3: every x86-64 CPU since Intel Haswell (2013) and AMD Zen (2017).
    "portable": "-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON " + _OFF_512,
    # plain x86-64 (SSE2 only): any x86-64 CPU; the Makefile picks it when the CPU lacks AVX2/FMA/F16C/BMI2.
    "baseline": "-DGGML_NATIVE=OFF -DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_BMI2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF " + _OFF_512,
    # x86-64-v4 without AMX: for CPUs with AVX-512 (Intel Skylake-SP and later, AMD Zen 4); opt-in.
    "avx512": "-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
              " -DGGML_AVX_VNNI=OFF -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
              " -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF",
    # -march=native: fastest on the machine that built it, valid only on CPUs with the same features.
    "native": "-DGGML_NATIVE=ON",
}
# Options every level shares: no multimodal library (strop never uses it; a third of the build time).
COMMON_CMAKE_ARGS = "-DLLAVA_BUILD=OFF -DGGML_OPENMP=ON"
# What a CPU needs for the `portable` level (names as in /proc/cpuinfo).
PORTABLE_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi2", "sse4_2")


def cmake_args(level: str) -> str:
    if level not in CMAKE_ARGS:
        raise ValueError(f"unknown llama.cpp build level {level!r}; choose one of: {', '.join(CMAKE_ARGS)}")
    return f"{CMAKE_ARGS[level]} {COMMON_CMAKE_ARGS}"


def cpu_flags() -> set[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def default_level(flags: set[str] | None = None) -> str:
    """`portable` where the CPU has x86-64-v3's features, else `baseline`."""
    flags = cpu_flags() if flags is None else flags
    return "portable" if all(f in flags for f in PORTABLE_CPU_FLAGS) else "baseline"


def fix_hint() -> str:
    return (
        "Rebuild llama-cpp-python with the project's portable flags: `make clean && make run` in strop's checkout "
        "(the Makefile builds and keeps a wheel per set of flags), or by hand:\n"
        f'  CMAKE_ARGS="{cmake_args("portable")}" pip install --force-reinstall --no-deps --no-cache-dir '
        f"--no-binary llama-cpp-python llama-cpp-python=={LLAMA_CPP_VERSION}\n"
        "(use the `baseline` flags of strop.backends.native.CMAKE_ARGS on a CPU without AVX2)."
    )


# ------------------------------------------------------------------ the check
@dataclass(frozen=True)
class NativeCheck:
    """The verdict on one llama.cpp build: ``ok``, or why not, with its CPU features."""

    ok: bool
    message: str
    system_info: str = ""
    cached: bool = False


def _lib_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def build_key(lib_dir: Path | None = None) -> str | None:
    """A key that changes whenever the installed llama.cpp libraries change (path, size, mtime of each)."""
    lib_dir = lib_dir or _lib_dir()
    if lib_dir is None or not lib_dir.is_dir():
        return None
    parts = []
    for f in sorted(lib_dir.glob("*.so*")) + sorted(lib_dir.glob("*.dylib")) + sorted(lib_dir.glob("*.dll")):
        st = f.stat()
        parts.append(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] if parts else None


def _cache_dir() -> Path:
    from strop.models import cache_root  # not at module level: this file also runs as a stdlib-only script

    return cache_root() / "native-check"


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp prints load logs (and load errors) straight to fd 2; keep them off the user's terminal."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_check(argv: list[str], *, timeout_s: float = 300.0) -> NativeCheck:
    """Run the smoke child ``argv`` and read its verdict (not cached).

    The child is the backend's (``strop.backends.llamacpp.smoke_argv``): it prints ``SYSTEM_INFO <features>``,
    decodes a few tokens and prints ``DECODED <n>``. This module only runs it and reads it (tests simulate
    crashes with other commands), so it never imports the backend it checks.
    """
    env = {**os.environ, "STROP_NATIVE_CHECK": "off"}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return NativeCheck(False, f"the llama.cpp smoke check did not finish within {timeout_s:.0f} s (machine overloaded?); not remembered")
    out = proc.stdout or ""
    info = next((line[len("SYSTEM_INFO "):] for line in out.splitlines() if line.startswith("SYSTEM_INFO ")), "")
    features = f"\nThis build's CPU features (llama.cpp system info): {info}" if info else ""
    if proc.returncode < 0:
        return NativeCheck(
            False,
            f"llama.cpp crashed ({_signal_name(proc.returncode)}) while decoding a few tokens of the embedded model in a child process: "
            f"the installed llama-cpp-python build does not run on this CPU.{features}\n{fix_hint()}",
            info,
        )
    if proc.returncode != 0 or "DECODED" not in out:
        tail = (proc.stderr or out).strip().splitlines()[-5:]
        return NativeCheck(False, "the llama.cpp smoke check failed (exit status "
                           f"{proc.returncode}):\n  " + "\n  ".join(tail) + features, info)
    return NativeCheck(True, "llama.cpp decodes on this CPU", info)


def check_build(argv: list[str], *, force: bool = False) -> NativeCheck:
    """The remembered verdict for the installed build, running the smoke child ``argv`` once per build.

    A crash verdict is remembered too (a rebuild changes the key); a timeout is not.
    ``STROP_NATIVE_CHECK=off`` skips the check (the smoke child itself runs so).
    """
    if os.environ.get("STROP_NATIVE_CHECK", "").lower() in ("0", "off", "no", "false"):
        return NativeCheck(True, "check skipped (STROP_NATIVE_CHECK=off)")
    key = build_key()
    path = _cache_dir() / f"{key}.json" if key else None
    if path is not None and path.is_file() and not force:
        try:
            data = json.loads(path.read_text())
            return NativeCheck(bool(data["ok"]), str(data["message"]), str(data.get("system_info", "")), cached=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged record: check again
    verdict = run_check(argv)
    remember = verdict.ok or "crashed" in verdict.message
    if path is not None and remember:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"ok": verdict.ok, "message": verdict.message, "system_info": verdict.system_info,
                                       "checked_at": time.time()}))
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs a re-check next time
    return verdict


if __name__ == "__main__":
    # Used by scripts/llama-wheel.sh before strop is installed: standard library only.
    if len(sys.argv) == 3 and sys.argv[1] == "cmake-args":
        print(cmake_args(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "default-level":
        print(default_level())
    else:
        sys.exit("usage: native.py cmake-args LEVEL | default-level")
