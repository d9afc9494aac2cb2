"""The code sandbox's seccomp filter: the system calls an untrusted program may not make (x86-64 Linux).

Part of the guard (``sandbox_guard``): imported by path with it, before any untrusted code runs; standard
library only, and nothing happens on import. Which calls are refused, and why, is in ``sandbox_guard``'s
docstring (step 2).
"""

from __future__ import annotations

import os
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_EPERM, _ENOSYS = 1, 38
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000

# x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl), refused with EPERM.
DENIED_SYSCALLS = {
    "socket": 41, "fork": 57, "vfork": 58, "execve": 59, "ptrace": 101, "personality": 135, "adjtimex": 159,
    "setrlimit": 160, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
    "ioperm": 173, "init_module": 175, "delete_module": 176, "tkill": 200, "clock_settime": 227,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "execveat": 322,
    "userfaultfd": 323, "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "pidfd_open": 434, "pidfd_getfd": 438, "mount_setattr": 442,
}
_CLONE, _CLONE3, _KILL, _TGKILL, _RT_SIGQUEUEINFO, _RT_TGSIGQUEUEINFO, _PRLIMIT64 = 56, 435, 62, 234, 129, 297, 302

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian: low word first).
_NR, _ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


def _arg_hi(i: int) -> int:
    return 20 + 8 * i


def seccomp_program(pid: int) -> list[tuple[int, int, int, int]]:
    """The classic-BPF filter as (code, jt, jf, k) rows, for x86-64; ``pid`` is the process it is for.

    Hand-written rather than built with libseccomp (pyseccomp): the filter is
    small, it needs no shared library or package on the machine (so the layer
    is there wherever the kernel has seccomp, not only where libseccomp is
    installed), and the guard stays a standard-library-only file. What
    libseccomp would add is handled here explicitly: the architecture check
    (a 32-bit ``int 0x80`` call kills the process) and the x32 ABI (refused).
    """
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGE/JSET|K, BPF_RET|K
    rows: list[tuple] = []  # (code, k, true_label, false_label); None = next row

    def op(code, k, jt=None, jf=None):
        rows.append((code, k, jt, jf))

    op(ld, _ARCH)
    op(jeq, AUDIT_ARCH_X86_64, None, "kill")
    op(ld, _NR)
    op(jge, _X32_SYSCALL_BIT, "eperm", None)
    for nr in sorted(DENIED_SYSCALLS.values()):
        op(jeq, nr, "eperm", None)
    op(jeq, _CLONE3, "enosys", None)
    op(jeq, _CLONE, "clone", None)
    op(jeq, _KILL, "kill_syscall", None)
    for nr in (_TGKILL, _RT_SIGQUEUEINFO, _RT_TGSIGQUEUEINFO):
        op(jeq, nr, "own_tgid", None)
    op(jeq, _PRLIMIT64, "prlimit", None)
    op(ret, _RET_ALLOW)
    labels = {}

    def label(name):
        labels[name] = len(rows)

    label("clone")  # a thread (CLONE_THREAD) may be made; a process may not
    op(ld, _arg_lo(0))
    op(jset, _CLONE_THREAD, "allow", "eperm")
    label("kill_syscall")  # kill(pid, sig): itself, or its own process group (0 or -pid); it is alone in it
    op(ld, _arg_lo(0))
    op(jeq, pid, "allow", None)
    op(jeq, 0, "allow", None)
    op(jeq, (-pid) & 0xFFFFFFFF, "allow", "eperm")
    label("own_tgid")  # tgkill / rt_(tg)sigqueueinfo: first argument is the target process
    op(ld, _arg_lo(0))
    op(jeq, pid, "allow", "eperm")
    label("prlimit")  # prlimit64(pid, resource, new, old): reading (new == NULL) only
    op(ld, _arg_lo(2))
    op(jeq, 0, None, "eperm")
    op(ld, _arg_hi(2))
    op(jeq, 0, "allow", "eperm")
    label("allow")
    op(ret, _RET_ALLOW)
    label("eperm")
    op(ret, _RET_ERRNO | _EPERM)
    label("enosys")
    op(ret, _RET_ERRNO | _ENOSYS)
    label("kill")
    op(ret, _RET_KILL_PROCESS)

    out = []
    for i, (code, k, jt, jf) in enumerate(rows):
        if code in (ld, ret):
            out.append((code, 0, 0, k))
            continue
        offsets = [0 if t is None else labels[t] - (i + 1) for t in (jt, jf)]
        if not all(0 <= o <= 255 for o in offsets):
            raise ValueError("seccomp filter jump out of range")
        out.append((code, offsets[0], offsets[1], k))
    return out


def install_seccomp() -> str | None:
    """Install the filter on this process; None when it holds, else why it could not be installed."""
    machine = os.uname().machine
    if sys.platform != "linux" or machine != "x86_64" or sys.maxsize < 2**32:
        return f"no filter for {sys.platform}/{machine} (x86-64 Linux only)"
    try:
        import ctypes
        import struct

        rows = seccomp_program(os.getpid())
        buf = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *r) for r in rows))

        class _Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        prog = _Prog(len(rows), ctypes.cast(buf, ctypes.c_void_p))
        libc = ctypes.CDLL(None, use_errno=True)
        ul = ctypes.c_ulong
        # PR_SET_NO_NEW_PRIVS (38): required of a process without CAP_SYS_ADMIN; harmless as root.
        if libc.prctl(ul(38), ul(1), ul(0), ul(0), ul(0)) != 0:
            return f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}"
        # PR_SET_SECCOMP (22), SECCOMP_MODE_FILTER (2). One thread only here, so no TSYNC is needed.
        if libc.prctl(ul(22), ul(2), ctypes.byref(prog), ul(0), ul(0)) != 0:
            return f"the kernel refused the filter: {os.strerror(ctypes.get_errno())}"
    except Exception as e:  # noqa: BLE001 - any failure here means "no seccomp", which is reported, never hidden
        return f"{type(e).__name__}: {e}"
    return None
