"""Code: run a completion against its unit tests in a contained child process.

Layers (each catches what the others miss):
- a fresh process group in a scratch directory, killed whole at the deadline;
- an environment with nothing inherited (no API keys, tokens, proxies), and
  ``python -I`` (ignores PYTHON* variables and the user's site-packages);
- resource limits: CPU seconds, address space (memory), size of written files;
- a Python audit hook, installed before the untrusted code runs, that refuses:
  opening files for writing outside the scratch directory, deleting/renaming
  outside it, creating processes (fork, exec, spawn, subprocess, os.system),
  sockets, ctypes, and reading other processes' /proc entries.

What this does NOT cover (it is not a security boundary against a determined
attacker): native extensions already importable can bypass the audit hook;
reading world-readable files outside the scratch directory is allowed (the
tests need the standard library); no network namespace. For untrusted code at
scale, run strop's evaluation inside a container or VM as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from strop.verifiers.base import Verdict, Verification

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 512
MAX_OUTPUT_BYTES = 16_384

_GUARD = textwrap.dedent(
    r'''
    import os, sys
    _SCRATCH = os.path.realpath(os.getcwd())
    _DENY = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
             "socket.__new__", "socket.connect", "socket.bind", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
             "os.kill", "os.killpg", "pty.spawn", "os.chdir", "os.chroot", "os.putenv", "os.unsetenv"}
    _PATHS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
              "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}

    def _inside(p):
        try:
            p = os.fsdecode(p) if not isinstance(p, int) else None
        except Exception:
            return False
        return p is None or os.path.realpath(p).startswith(_SCRATCH + os.sep) or os.path.realpath(p) == _SCRATCH

    def _hook(event, args):
        if event in _DENY:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode = args[0], args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            if isinstance(mode, int):
                writing = bool(mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if writing and not _inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the scratch directory")
            if isinstance(path, (str, bytes)):
                s = os.fsdecode(path)
                if s.startswith("/proc/") and not s.startswith(("/proc/self/", f"/proc/{os.getpid()}/")):
                    raise PermissionError("sandbox: other processes' /proc entries are off limits")
        elif event in _PATHS and args and not all(_inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
            raise PermissionError(f"sandbox: {event} outside the scratch directory")

    sys.addaudithook(_hook)
    del _hook
    exec(compile(open("program.py").read(), "program.py", "exec"), {"__name__": "__main__"})
    '''
)


def _limits(cpu_s: int, memory_mb: int) -> None:  # runs in the child before exec
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_program(source: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB) -> tuple[str, int | None, str]:
    """Run ``source`` contained; returns (status, exit code, captured output tail).

    status: "ok" (exit 0), "failed" (non-zero exit), "timeout".
    """
    with tempfile.TemporaryDirectory(prefix="strop-sandbox-") as scratch:
        Path(scratch, "program.py").write_text(source)
        Path(scratch, "guard.py").write_text(_GUARD)
        env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", "guard.py"], cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=lambda: _limits(int(timeout_s) + 1, memory_mb),
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return "timeout", None, _tail(out)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group
            except ProcessLookupError:
                pass
        if proc.returncode == -signal.SIGXCPU or (time.monotonic() - started > timeout_s):
            return "timeout", proc.returncode, _tail(out)
        return ("ok" if proc.returncode == 0 else "failed"), proc.returncode, _tail(out)


def _tail(out: bytes | None) -> str:
    return (out or b"")[-MAX_OUTPUT_BYTES:].decode("utf-8", errors="replace")


def verify_code(prompt: str, completion: str, test: str, entry_point: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verification:
    """HumanEval-style check: prompt + completion, then the task's tests and ``check(entry_point)``."""
    program = f"{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n"
    status, code, out = run_program(program, timeout_s=timeout_s)
    if status == "timeout":
        return Verification(Verdict.TIMEOUT, f"no result within {timeout_s} s")
    if status == "ok":
        return Verification(Verdict.CORRECT)
    return Verification(Verdict.INCORRECT, f"exit {code}: {out.strip().splitlines()[-1][:200] if out.strip() else ''}")
