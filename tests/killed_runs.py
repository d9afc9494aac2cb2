"""Kill a real ``strop train`` process after its first checkpoint, and resume it: shared by the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from strop.training.grpo import last_checkpoint


def strop_train(recipe: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "strop", "train", str(recipe), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def kill_after_first_checkpoint(recipe: Path, output: Path, steps: int) -> Path:
    """Start the run, SIGKILL it as soon as a complete checkpoint exists; return that checkpoint (not the last one)."""
    proc = strop_train(recipe)
    deadline = time.monotonic() + 300
    while (ck := last_checkpoint(output)) is None:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ck.name != f"checkpoint-{steps}" and not (output / "final").exists()
    return ck


def resume(recipe: Path, checkpoint: Path) -> str:
    """Run the same command again; it must succeed and say it resumed from ``checkpoint``. Returns its output."""
    proc = strop_train(recipe)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"resumed from {checkpoint.name}" in out
    return out
