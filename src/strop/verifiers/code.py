"""Code: run a completion against its unit tests in a contained child process.

Success is proven, not inferred from an exit status: the parent puts a random
nonce on a pipe the child inherits; the child's guard (``sandbox_guard``,
not the program) calls ``check(candidate)`` and, only if that call returns,
writes the nonce to a result pipe. The parent accepts exactly that nonce and
nothing else, so every ending the program controls (``sys.exit(0)``,
``os._exit(0)``, ``raise SystemExit``, atexit handlers, signals to itself,
threads, swallowed exceptions, exiting before or after a failing assertion)
is a failure.

Layers (docs/evaluation.md, "The code sandbox", says which guarantee rests on which):
- seccomp (OS level, installed by the guard before the program runs): no new
  processes, no sockets, no ptrace, no raising of the limits; threads work;
- resource limits: CPU seconds, address space, size of written files (which
  also caps the captured output), no core files;
- a fresh process group in a scratch directory, killed whole at the deadline;
- an environment with nothing inherited (no API keys, tokens, proxies), and
  ``python -I`` (ignores PYTHON* variables and the user's site-packages);
- Python audit hooks (second layer): no writes, deletes or renames outside
  the scratch directory, no /proc or devices, no process creation, sockets,
  ctypes, tracers or gc introspection; one of them alone holds the nonce;
- output goes to an unnamed file capped by the file-size limit, never a pipe
  the parent must drain, so a flood cannot delay the verdict; only its tail is read.

Where seccomp cannot be installed (not x86-64 Linux, or the kernel refuses),
the run goes on with the other layers, the guard also refuses to import
``_posixsubprocess``, and the verdict's detail says so (plus one
``RuntimeWarning`` per process): never silently.

Not covered: the program and the tests share one interpreter, so a program
can weaken what the tests use (patch builtins or modules, return objects whose
``__eq__`` always holds); reading world-readable files is allowed; code in the
same process could in principle reach the nonce (docs/evaluation.md says what
stands in the way). It is not a security boundary against a determined
attacker: run untrusted code at scale inside a container or VM as well.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from strop.verifiers import sandbox_guard, sandbox_seccomp  # noqa: F401  (imported also so their bytecode is cached for the guard)
from strop.verifiers.base import Verdict, Verification

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 512
MAX_OUTPUT_BYTES = 16_384  # the tail of the output kept for the verdict's detail
MAX_WRITE_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE: any file the program writes, its output included
# The guard is imported from its folder (appended to sys.path, then removed), so its cached bytecode is used:
# compiling it from source would be a fifth of a short run.
_GUARD_START = ("import sys; sys.path.append(sys.argv[1]); import sandbox_guard; sys.path.pop(); "
                "sandbox_guard.main(sys.argv[2:])")
_warned = False


@dataclass(frozen=True)
class ProgramRun:
    """How a contained run ended.

    status: "ok" (the guard's nonce came back: the program, and ``check`` if
    there were tests, returned normally), "failed", or "timeout".
    seccomp: whether the OS-level layer held; ``sandbox_note`` says why not.
    """

    status: str
    exit_code: int | None
    output: str
    seccomp: bool
    sandbox_note: str = ""


def run_program(source: str, *, test: str | None = None, entry_point: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                memory_mb: int = DEFAULT_MEMORY_MB, seccomp: bool = True) -> ProgramRun:
    """Run ``source`` contained; with ``test`` and ``entry_point``, then the tests and ``check(entry_point)``.

    ``timeout_s`` is wall-clock time from the start (the process group is
    killed then) and the CPU-time limit. ``seccomp=False`` leaves out the
    OS-level layer (to see the audit hook alone); the result says so.
    """
    if (test is None) != (entry_point is None):
        raise ValueError("pass both test and entry_point, or neither")
    nonce = secrets.token_hex(32).encode()
    with tempfile.TemporaryDirectory(prefix="strop-sandbox-") as scratch, tempfile.TemporaryFile() as out:
        Path(scratch, "program.py").write_text(source, encoding="utf-8", errors="replace")
        if test is not None:
            Path(scratch, "test.py").write_text(test, encoding="utf-8", errors="replace")
        nonce_r, nonce_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            os.write(nonce_w, nonce)
            os.close(nonce_w)
            env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
            args = [str(nonce_r), str(result_w), scratch, "check" if test is not None else "run", entry_point or "",
                    repr(float(timeout_s)), str(int(memory_mb)), str(MAX_WRITE_BYTES), "1" if seccomp else "0"]
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _GUARD_START, str(Path(sandbox_guard.__file__).parent), *args], cwd=scratch,
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(nonce_r, result_w),
            )
            os.close(nonce_r)
            os.close(result_w)
            nonce_r = result_w = -1
            deadline = time.monotonic() + timeout_s
            try:
                # The result pipe reaches end-of-file when the child exits (it holds the only write end):
                # waiting on it wakes at once, where Popen.wait(timeout) polls with sleeps of up to 50 ms.
                result, ended = _read_until_eof(result_r, 4096, deadline)
                timed_out = not ended
                if ended:  # the program may have closed the pipe itself and gone on running
                    try:
                        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # at the deadline, or anything it left behind in its group
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        finally:
            for fd in (nonce_r, result_r, result_w):
                if fd >= 0:
                    os.close(fd)
        header, _, proof = result.partition(b"\n")
        on = header == b"seccomp=on"
        note = "" if on else _fallback_note(header)
        if proof == nonce:
            status = "ok"
        elif timed_out or proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            status = "timeout"  # SIGKILL without us: the hard CPU limit, for a program that ignored SIGXCPU
        else:
            status = "failed"
        return ProgramRun(status, proc.returncode, _tail(out), on, note)


def _read_until_eof(fd: int, cap: int, deadline: float) -> tuple[bytes, bool]:
    """What arrives on the pipe (the first ``cap`` bytes; the rest is read and dropped, so a writer never
    blocks on it), and whether end-of-file came before the deadline."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    kept = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return bytes(kept), False
        b = os.read(fd, 65536)
        if not b:
            return bytes(kept), True
        kept += b[: max(0, cap - len(kept))]


def _fallback_note(header: bytes) -> str:
    global _warned
    why = header.decode("utf-8", "replace").removeprefix("seccomp=off: ") if header.startswith(b"seccomp=off") else (
        "the guard did not report its layers")
    note = f"sandbox without seccomp (audit hook only): {why}"
    if not _warned:
        _warned = True
        warnings.warn(f"strop code sandbox: {note}", RuntimeWarning, stacklevel=3)
    return note


def _tail(out) -> str:
    out.seek(0, os.SEEK_END)
    size = out.tell()
    out.seek(max(0, size - MAX_OUTPUT_BYTES))
    return out.read(MAX_OUTPUT_BYTES).decode("utf-8", errors="replace")


def verify_code(prompt: str, completion: str, test: str, entry_point: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                seccomp: bool = True) -> Verification:
    """HumanEval-style check: prompt + completion, then the task's tests, then ``check(entry_point)`` called by the guard."""
    run = run_program(f"{prompt}{completion}\n", test=test, entry_point=entry_point, timeout_s=timeout_s, seccomp=seccomp)
    note = f" [{run.sandbox_note}]" if run.sandbox_note else ""
    if run.status == "timeout":
        return Verification(Verdict.TIMEOUT, f"no result within {timeout_s} s{note}")
    if run.status == "ok":
        return Verification(Verdict.CORRECT, note.strip())
    lines = run.output.strip().splitlines()
    last = lines[-1][:200] if lines else ""
    if not last.startswith("sandbox:"):  # the program ended the process itself (os._exit, a signal, a thread...)
        last = f"ended before check returned{': ' + last if last else ''}"
    return Verification(Verdict.INCORRECT, f"exit {run.exit_code}: {last}{note}")
