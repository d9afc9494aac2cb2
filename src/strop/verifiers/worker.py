"""A checker process of ``strop.verifiers.isolation``: imports the checkers once, then runs tasks one at a time.

Started by the pool as ``python -P -c "...serve(...)"`` (never through
multiprocessing, so the parent's ``__main__`` is never imported here). A
task names its function by module and qualified name. Before each task the
process lowers its own limits: address space to the task's ``memory_mb`` and
the CPU-time soft limit to (CPU used so far + ``timeout_s``), so a runaway
computation, even one stuck inside C code, is ended by the kernel (SIGXCPU,
whose default action kills); the parent then replaces the process. After a
task the limits are raised again.

Frames on both pipes: 1 byte of flags, 8 bytes of length (little-endian), then a pickle.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import resource
import struct
import sys

FRAME = struct.Struct("<BQ")
RETIRE = 1  # flag on a reply: this process exits after it (it ran out of memory, or grew too large)
MAX_TASKS = 5000  # then the process retires: whatever it cached or leaked goes with it


def read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            raise EOFError
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send(fd: int, payload: bytes, flags: int = 0) -> None:
    write_all(fd, FRAME.pack(flags, len(payload)) + payload)


def recv(fd: int) -> tuple[int, bytes]:
    flags, n = FRAME.unpack(read_exact(fd, FRAME.size))
    return flags, read_exact(fd, n)


def resolve(module: str, qualname: str):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _vm_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def serve(resp_fd: int, preload: list[str]) -> int:
    """Answer tasks read from stdin until it closes (the parent exited or retired this process)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    as_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    try:
        for name in preload:
            warm = getattr(importlib.import_module(name), "warm_up", None)
            if callable(warm):
                warm()  # first calls build parsers and caches: paid once here, not by the first task
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which reports it to the caller
        send(resp_fd, pickle.dumps(("failed", f"{type(e).__name__}: {e}")))
        return 1
    send(resp_fd, pickle.dumps(("ready", os.getpid())))
    done = 0
    while True:
        try:
            _, payload = recv(0)
        except EOFError:
            return 0
        module, qualname, args, timeout_s, memory_mb = pickle.loads(payload)
        flags = 0
        try:
            fn = resolve(module, qualname)
        except BaseException as e:  # noqa: BLE001 - an unknown function is the caller's error, reported as such
            send(resp_fd, pickle.dumps((False, None, f"cannot import {module}.{qualname}: {type(e).__name__}: {e}", "error")))
            continue
        if memory_mb:
            limit = memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit if as_hard == resource.RLIM_INFINITY else min(limit, as_hard), as_hard))
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(used.ru_utime + used.ru_stime + timeout_s)
        resource.setrlimit(resource.RLIMIT_CPU, (soft if cpu_hard == resource.RLIM_INFINITY else min(soft, cpu_hard), cpu_hard))
        try:
            try:
                out = (True, fn(*args), "", "")
            except MemoryError:
                out, flags = (False, None, "memory", "memory"), RETIRE
            except BaseException as e:  # noqa: BLE001 - anything the checked input provokes is a verdict, not a crash
                out = (False, None, f"{type(e).__name__}: {str(e)[:300]}", "error")
            try:
                reply = pickle.dumps(out)  # still under the limits: a hostile value costs the task, not the pool
            except MemoryError:
                reply, flags = pickle.dumps((False, None, "memory", "memory")), RETIRE
            except BaseException as e:  # noqa: BLE001 - an unpicklable result is reported, not fatal
                reply = pickle.dumps((False, None, f"unpicklable result: {type(e).__name__}", "error"))
        finally:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_hard, cpu_hard))
            resource.setrlimit(resource.RLIMIT_AS, (as_hard, as_hard))
        done += 1
        if done >= MAX_TASKS or (memory_mb and _vm_mb() > memory_mb / 2):
            flags = RETIRE
        send(resp_fd, reply, flags)
        if flags & RETIRE:
            return 0


def main() -> None:
    sys.exit(serve(int(sys.argv[1]), sys.argv[2:]))
