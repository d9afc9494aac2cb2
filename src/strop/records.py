"""JSON-lines records that survive a kill: the one reader for eval records and training logs.

A leaf module (standard library only), so training and evaluation both use it
without importing each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete JSON-lines records; a line cut by a kill is dropped and cut from the file so appends stay valid."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        with path.open("r+b") as f:
            f.truncate(len(raw))
    out = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
