"""Run a check in a child process that can be killed: the timeout works from any thread.

SymPy and math-verify can hang or eat memory on hostile expressions (huge
exponents, deep nesting). ``signal.alarm`` timeouts only work in the main
thread of the main process, and a runaway C-level computation ignores
Python-level interruption; a separate process with a memory cap, killed at
the deadline, handles both. Processes come from a ``forkserver`` so that
forking never copies the threads of an already loaded model.

The limit is CPU time, not wall time: ``timeout_s`` CPU seconds for the check
(``RLIMIT_CPU``; the kernel stops the child with SIGXCPU), so a check that is
slow only because the machine is busy still gets its verdict. A wall-clock
backstop (``max(4 x timeout_s, timeout_s + 20)`` seconds) ends a child that
blocks without using CPU. Found necessary by running the suite on a loaded
machine: gold answers timed out when the limit was wall time.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_CTX = mp.get_context("forkserver")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None
    error: str = ""  # "timeout", "memory", or the exception text
    timed_out: bool = False


def wall_backstop(timeout_s: float) -> float:
    """Seconds after which a child is killed whatever its CPU use (it may be blocked, not computing)."""
    return max(4 * timeout_s, timeout_s + 20)


def _child(conn, fn, args, memory_mb, cpu_s):  # runs in the child
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(used.ru_utime + used.ru_stime + cpu_s)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    try:
        conn.send((True, fn(*args), ""))
    except MemoryError:
        conn.send((False, None, "memory"))
    except BaseException as e:  # noqa: BLE001 - anything the checked input provokes is a verdict, not a crash
        conn.send((False, None, f"{type(e).__name__}: {str(e)[:300]}"))
    finally:
        conn.close()


def _forget_unreal_main_file() -> None:
    """multiprocessing re-imports the parent's __main__ from its path in every child; under
    ``python -`` or ``python -c`` that "path" ('<stdin>', '<string>') is no file and every child
    would die. Such a __file__ is meaningless, so drop it."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is not None and not os.path.isfile(path):
        del main.__file__


def run_isolated(fn: Callable[..., Any], args: tuple = (), *, timeout_s: float = 5.0, memory_mb: int | None = 1024) -> Outcome:
    """``fn(*args)`` in a child process, stopped after ``timeout_s`` CPU seconds (or the wall backstop).

    ``fn`` must be importable (top-level).
    """
    _forget_unreal_main_file()
    recv, send = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_child, args=(send, fn, args, memory_mb, timeout_s), daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(wall_backstop(timeout_s)):
            try:
                ok, value, err = recv.recv()
            except (EOFError, OSError):
                proc.join(5.0)
                if proc.exitcode == -signal.SIGXCPU:
                    return Outcome(False, error="timeout", timed_out=True)
                return Outcome(False, error="the checker process died (memory or crash)")
            return Outcome(ok, value, err)
        return Outcome(False, error="timeout", timed_out=True)
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(1.0)
