"""Run a check in a process that can be killed: a warm, bounded pool of checker processes.

SymPy and math-verify can hang or eat memory on hostile expressions (huge
exponents, deep nesting). ``signal.alarm`` timeouts only work in the main
thread of the main process, and a runaway C-level computation ignores
Python-level interruption; a separate process with limits, killed when it
overruns, handles both.

The processes are kept warm (``CheckerPool``): each imports math-verify,
SymPy and strop's checkers once and answers task after task, so a check costs
milliseconds instead of an interpreter start and those imports. At most
``size`` run at once (default: one per core), each on one task at a time;
calls from several threads (``parallel_map``, ``CheckerPool.map``) run in
parallel across them. A process that overruns is killed and replaced.

The limit is CPU time, not wall time: ``timeout_s`` CPU seconds for the check
(``RLIMIT_CPU`` soft limit = CPU used so far + ``timeout_s``; the kernel ends
the process with SIGXCPU), so a check that is slow only because the machine is
busy still gets its verdict. A wall-clock backstop (``wall_backstop``,
``max(4 x timeout_s, timeout_s + 20)`` seconds) ends a process that blocks
without using CPU. Found necessary by running the suite on a loaded machine:
gold answers timed out when the limit was wall time. Memory: ``RLIMIT_AS`` =
``memory_mb`` during the task; a MemoryError retires the process.

Processes are started with ``subprocess`` running ``strop.verifiers.worker``,
never through multiprocessing's spawn or forkserver, which import the caller's
``__main__`` in every child (a script without an ``if __name__ == "__main__":``
guard then ran again, once per checker). So ``fn`` must be importable by its
module and qualified name, and not defined in ``__main__``. They are stopped
at interpreter exit, and exit by themselves when their parent goes away.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from strop.verifiers import worker as _wire

# Imported (and warmed up, through their ``warm_up``) by every pooled checker when it starts.
DEFAULT_PRELOAD = ("strop.verifiers.math_answer", "strop.verifiers.integral")
START_TIMEOUT_S = 180.0  # for a checker to import its preloads, on a loaded machine
_T = TypeVar("_T")
_R = TypeVar("_R")


FAILURES = ("timeout", "memory", "crash", "error", "start")


@dataclass(frozen=True)
class Outcome:
    """What an isolated call gave: its value, or why not.

    ``failure`` says what went wrong as a field, so callers branch on it, not on message text: "timeout" (the
    CPU or wall limit), "memory" (the memory limit), "crash" (the checker process died), "error" (the function
    raised; ``error`` holds ``Type: message``), "start" (no checker process could start); "" when ``ok``.
    """

    ok: bool
    value: Any = None
    error: str = ""  # a message for people: the exception text, or what happened
    failure: str = ""

    def __post_init__(self) -> None:
        if self.failure not in ("", *FAILURES) or (self.failure == "") != self.ok:
            raise ValueError(f"an Outcome is ok with no failure, or not ok with one of {FAILURES}; got ok={self.ok}, "
                             f"failure={self.failure!r}")

    @property
    def timed_out(self) -> bool:
        return self.failure == "timeout"


def wall_backstop(timeout_s: float) -> float:
    """Seconds after which a checker is killed whatever its CPU use (it may be blocked, not computing)."""
    return max(4 * timeout_s, timeout_s + 20)


def _task_name(fn: Callable[..., Any]) -> tuple[str, str]:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(f"run_isolated needs a module-level function, importable by name; got {fn!r}")
    if module == "__main__":
        raise ValueError(f"run_isolated cannot run {qualname}: it is defined in __main__ (the running script), which the "
                         "checker processes never import (that would run the script again); move it into a module")
    return module, qualname


def _search_path() -> str:
    # The checker finds what the caller finds (a test module, a checkout on sys.path); '' is the caller's cwd.
    return os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)


class _Checker:
    """One checker process and its two pipes; used by one thread at a time."""

    def __init__(self, preload: Sequence[str]) -> None:
        resp_r, resp_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=_search_path(), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-c", "from strop.verifiers.worker import main; main()", str(resp_w), *preload],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(resp_w,),
                start_new_session=True, env=env,  # its own session: a Ctrl-C meant for the caller does not reach it
            )
        except BaseException:
            os.close(resp_r)
            raise
        finally:
            os.close(resp_w)
        self.resp = resp_r
        self.ready = False

    def _recv(self, deadline: float) -> tuple[int, bytes] | None:
        """The next frame, or None at the deadline; EOFError if the process is gone."""
        header = self._read(_wire.FRAME.size, deadline)
        if header is None:
            return None
        flags, n = _wire.FRAME.unpack(header)
        body = self._read(n, deadline)
        return None if body is None else (flags, body)

    def _read(self, n: int, deadline: float) -> bytes | None:
        poller = select.poll()
        poller.register(self.resp, select.POLLIN)
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                return None
            b = os.read(self.resp, min(n - got, 1 << 20))
            if not b:
                raise EOFError
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def call(self, module: str, qualname: str, args: tuple, timeout_s: float, memory_mb: int | None) -> tuple[Outcome, bool]:
        """The outcome, and whether this checker can take another task."""
        if not self.ready:
            try:
                got = self._recv(time.monotonic() + START_TIMEOUT_S)
                msg = pickle.loads(got[1]) if got else ("failed", f"no answer within {START_TIMEOUT_S:.0f} s")
            except EOFError:
                msg = ("failed", f"it exited with status {self.proc.wait()}")
            if msg[0] != "ready":
                return Outcome(False, error=f"the checker process did not start: {msg[1]}", failure="start"), False
            self.ready = True
        try:
            _wire.send(self.proc.stdin.fileno(), pickle.dumps((module, qualname, args, timeout_s, memory_mb)))
            got = self._recv(time.monotonic() + wall_backstop(timeout_s))
        except (BrokenPipeError, EOFError):
            try:
                code = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
            if code == -signal.SIGXCPU:
                return Outcome(False, error="timeout", failure="timeout"), False
            return Outcome(False, error="the checker process died (memory or crash)", failure="crash"), False
        if got is None:
            return Outcome(False, error="timeout", failure="timeout"), False
        flags, body = got
        ok, value, err, failure = pickle.loads(body)  # the worker says which failure: "memory" (it then retires) or "error"
        return Outcome(ok, value, err, failure), not flags & _wire.RETIRE

    def stop(self) -> None:
        """Kill and reap (idempotent)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for f in (self.proc.stdin,):
            with contextlib.suppress(OSError):
                f.close()
        if self.resp >= 0:
            os.close(self.resp)
            self.resp = -1


class CheckerPool:
    """At most ``size`` warm checker processes; ``run`` from any number of threads.

    Processes start on first use (all ``size`` at once, importing ``preload``
    in parallel), stay for the next task, and are killed and replaced after a
    timeout, a memory blow-up or a crash.
    """

    def __init__(self, size: int | None = None, preload: Sequence[str] = DEFAULT_PRELOAD) -> None:
        self.size = max(1, size or default_size())
        self.preload = tuple(preload)
        self._idle: list[_Checker] = []
        self._live = 0
        self._cond = threading.Condition()
        self._closed = False
        self._owner = os.getpid()
        _POOLS.add(self)

    def _acquire(self) -> _Checker:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the checker pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._live < self.size:
                    # Start every missing checker now: they import in parallel while the first one does.
                    missing, self._live = self.size - self._live, self.size
                    break
                self._cond.wait()
        started: list[_Checker] = []
        failed = True
        try:
            for _ in range(missing):
                started.append(_Checker(self.preload))
            failed = False
        finally:
            with self._cond:
                self._live -= missing - len(started)
                self._idle.extend(started if failed else started[1:])  # on failure the ones started stay usable
                self._cond.notify_all()
        return started[0]

    def _release(self, checker: _Checker, reusable: bool) -> None:
        replacement = None
        if not reusable:
            checker.stop()
            if not self._closed:
                try:
                    replacement = _Checker(self.preload)  # warm again before it is needed
                except OSError:
                    replacement = None
        with self._cond:
            if reusable and not self._closed:
                self._idle.append(checker)
            elif replacement is not None and not self._closed:
                self._idle.append(replacement)
                replacement = None
            else:
                self._live -= 1
            self._cond.notify()
        if reusable and self._closed:
            checker.stop()
        if replacement is not None:
            replacement.stop()

    def run(self, fn: Callable[..., Any], args: tuple = (), *, timeout_s: float = 5.0, memory_mb: int | None = 1024) -> Outcome:
        """``fn(*args)`` in a checker, stopped after ``timeout_s`` CPU seconds (or the wall backstop)."""
        module, qualname = _task_name(fn)
        checker = self._acquire()
        reusable = False
        try:
            out, reusable = checker.call(module, qualname, tuple(args), float(timeout_s), memory_mb)
        finally:
            self._release(checker, reusable)
        return out

    def map(self, fn: Callable[..., Any], arg_tuples: Iterable[tuple], *, timeout_s: float = 5.0,
            memory_mb: int | None = 1024) -> list[Outcome]:
        """``run(fn, args)`` for each tuple, up to ``size`` at once; outcomes in order."""
        _task_name(fn)
        return parallel_map(lambda a: self.run(fn, a, timeout_s=timeout_s, memory_mb=memory_mb), arg_tuples, workers=self.size)

    def close(self) -> None:
        """Stop every idle checker; busy ones stop when their task returns."""
        if os.getpid() != self._owner:  # a forked child holds a copy of the parent's pool: not its to stop
            return
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._cond.notify_all()
        for c in idle:
            c.stop()

    def __enter__(self) -> CheckerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_size() -> int:
    """Checkers in the default pool: ``STROP_CHECKERS`` if set, else one per core this process may use."""
    env = os.environ.get("STROP_CHECKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_POOLS: weakref.WeakSet[CheckerPool] = weakref.WeakSet()
_DEFAULT: CheckerPool | None = None
_DEFAULT_LOCK = threading.Lock()
# ``one_child_per_call``: scoped to the block's context (a contextvar), never a process-wide switch.
_FRESH: contextvars.ContextVar[bool] = contextvars.ContextVar("strop_isolation_fresh", default=False)


def default_pool() -> CheckerPool:
    """The process-wide pool behind ``run_isolated``."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            _DEFAULT = CheckerPool()
        return _DEFAULT


def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()


def _forget_after_fork() -> None:
    # The child of a fork gets copies of the parent's pool objects; it starts its own when it needs one.
    global _DEFAULT, _DEFAULT_LOCK
    _DEFAULT, _DEFAULT_LOCK = None, threading.Lock()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_forget_after_fork)


def run_isolated(fn: Callable[..., Any], args: tuple = (), *, timeout_s: float = 5.0, memory_mb: int | None = 1024,
                 fresh: bool | None = None) -> Outcome:
    """``fn(*args)`` in a killable checker process, stopped after ``timeout_s`` CPU seconds (or the wall backstop).

    ``fn`` must be importable by module and name (not defined in ``__main__``).
    ``fresh=True`` starts a new process for this call alone and stops it after
    (the one-child-per-call path, kept for comparison: ``one_child_per_call``,
    bench/verifier_speed.py); the default is the warm pool.
    """
    if fresh if fresh is not None else _FRESH.get():
        module, qualname = _task_name(fn)
        checker = _Checker(())
        try:
            return checker.call(module, qualname, tuple(args), float(timeout_s), memory_mb)[0]
        finally:
            checker.stop()
    return default_pool().run(fn, args, timeout_s=timeout_s, memory_mb=memory_mb)


@contextlib.contextmanager
def one_child_per_call() -> Iterator[None]:
    """Within the block, every ``run_isolated`` of this thread (this context) starts its own process (what strop did
    before the pool); for benchmarks. Other threads, and threads the block starts, keep the pool."""
    token = _FRESH.set(True)
    try:
        yield
    finally:
        _FRESH.reset(token)


def parallel_map(func: Callable[[_T], _R], items: Iterable[_T], *, workers: int | None = None) -> list[_R]:
    """``[func(x) for x in items]``, up to ``workers`` (default: the pool's size) at once, in order.

    For verifying many answers: each call that reaches ``run_isolated`` takes
    a checker of the pool, so the checks run in parallel across cores (code
    checks each start their own sandboxed process). The first exception
    raised by ``func`` is raised here.
    """
    items = list(items)
    n = min(len(items), workers or default_size())
    if n <= 1:
        return [func(x) for x in items]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="strop-verify") as ex:
        return list(ex.map(func, items))
