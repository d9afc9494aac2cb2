"""JSON-lines records that survive a kill: the one reader for eval records and training logs, and the lock
that keeps one writer per run folder.

A leaf module (standard library and strop's errors only), so training and evaluation both use it without
importing each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strop.errors import StropError

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock (strop's sandbox needs Linux anyway)
    fcntl = None  # type: ignore[assignment]

LOCK = ".strop.lock"


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Complete JSON-lines records: a last line without its newline (a kill mid-write, or a writer still
    writing it) is not one.

    With ``repair`` (a writer about to append, holding the folder's lock: ``writer_lock``) that line is also cut
    from the file so appends stay valid. Without it the file is never changed: a reader (a report, an audit of
    a running eval) must not cut the line a live writer is finishing.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        if repair:
            with path.open("r+b") as f:
                f.truncate(len(raw))
    out = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@contextmanager
def writer_lock(folder: Path, doing: str) -> Iterator[None]:
    """Hold ``folder``'s (an existing folder's) writer lock for the block, or fail at once with a message naming the holder.

    Two writers of one run folder would write each attempt twice, or (a regrade swapping the records file
    while an eval appends to the old one) lose records. ``flock``: the kernel drops the lock when its holder
    ends, a kill -9 included, so a killed run never leaves a stale lock behind to clear by hand.
    """
    with open(folder / LOCK, "a+", encoding="utf-8") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise StropError(f"{folder} is being written by {holder}; wait until it ends ({doing} cannot share a run "
                                 "folder with it)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({doing})")
        f.flush()
        yield  # the lock goes with the file's close
