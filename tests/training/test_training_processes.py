"""``strop train`` on two processes of this CPU (accelerate, torchrun, gloo) with the tiny in-test model.

What docs/training.md ("Several processes") promises and this checks:

- every rank draws the same global batch of curriculum groups at every step,
  and trains on its own slice of it (rank r: rows [r * n, (r + 1) * n));
- every rank's curriculum (Q, step, RNG) is the same after every step, because
  it learns from the advantages gathered over the ranks;
- the run finishes (final model), and a run whose launcher and both ranks are
  SIGKILLed (the launcher's process group and each rank's) after a checkpoint resumes and ends with the same per-step
  curriculum records, rewards, slices and curriculum state as an uninterrupted run;
- RC training is refused on several processes, with the reason.

About 10 s per launch on a 2-core CPU, 4 launches.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from locations import TESTS
from strop.records import read_records
from strop.training.run_folder import last_checkpoint, load_metrics
from strop.training.sources import CURRICULUM_STATE

pytestmark = pytest.mark.slow

DRIVER = TESTS / "accelerate_driver.py"
PER_RANK = 16  # rows a rank trains on per step: 2 groups of 8; the global batch is 4 groups
STEPS = 12


def recipe_file(tmp_path: Path, name: str, model: Path, data: Path, **extra) -> tuple[Path, Path]:
    out = tmp_path / name
    recipe = {
        "model": {"name": str(model)},
        "data": {"task": "jsonl", "data": str(data), "fields": {"question": "q", "answer": "a", "category": "cat"},
                 "verifier": "number", "seed": 0},
        "curriculum": {"kind": "sec", "tau": 0.4, "lr": 0.5, "seed": 3},
        "grpo": {"num_generations": 8, "per_device_train_batch_size": PER_RANK, "max_completion_length": 4,
                 "learning_rate": 3e-3, "beta": 0.0, "temperature": 1.0, "save_steps": 4, "seed": 0, "max_steps": STEPS,
                 "gradient_checkpointing": False},
        "output": str(out),
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, out


def launch(recipe: Path, records: Path) -> subprocess.Popen:
    """Two processes on this CPU through accelerate (torchrun, gloo), in their own process group (to kill it whole).

    ``accelerate launch --cpu --num_processes 2`` starts one process (accelerate
    1.15: ``--cpu`` without an MPI hostfile is its single-process launcher), so
    the ranks are started by ``--multi_gpu`` (torchrun) and ``ACCELERATE_USE_CPU``
    makes transformers ask accelerate for CPU devices: MULTI_CPU with gloo.
    """
    records.mkdir(exist_ok=True)
    with socket.socket() as s:  # a free port, so runs side by side do not meet at accelerate's default 29500
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           str(DRIVER), str(records), "train", str(recipe)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(DRIVER.parent), os.environ.get("PYTHONPATH", "")]),
           # torchrun leaves a torchelastic_* folder in the temp dir of every launch (a SIGKILL'd one too): keep it in the test's.
           "TMPDIR": str(records)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def kill_all(proc: subprocess.Popen, records: Path) -> None:
    """SIGKILL the launcher's process group and each rank's (torchrun starts every rank in a session of its own,
    so killing the launcher alone leaves the ranks training): what a lost machine does to a run."""
    os.killpg(proc.pid, signal.SIGKILL)
    for pid_file in records.glob("pid-rank*"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    proc.wait()
    for pid_file in records.glob("pid-rank*"):
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # gone, or a zombie of the (killed) launcher
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break
            time.sleep(0.01)
        pid_file.unlink()


def per_step(records: Path, rank: int) -> tuple[dict[int, dict], dict[int, dict]]:
    """(step -> the draw record, step -> the state record) of one rank; a step recorded twice (resumed) keeps its last."""
    draws, states = {}, {}
    for r in read_records(records / f"rank{rank}.jsonl"):
        (draws if "global" in r else states)[r["step"]] = r
    return draws, states


def test_two_processes_draw_alike_train_on_their_slices_and_resume_after_a_kill(tiny_model, say_seven, tmp_path):
    recipe, out = recipe_file(tmp_path, "whole", tiny_model, say_seven)
    text = finish(launch(recipe, tmp_path / "rec-whole"))
    assert f"step {STEPS}/{STEPS}  reward" in text and text.count(f"trained {STEPS} steps") == 1  # progress and summary: rank 0's
    assert (out / "final" / "model.safetensors").is_file()

    d0, s0 = per_step(tmp_path / "rec-whole", 0)
    d1, s1 = per_step(tmp_path / "rec-whole", 1)
    assert sorted(d0) == sorted(d1) == sorted(s0) == sorted(s1) == list(range(1, STEPS + 1))
    curriculum = read_records(out / "curriculum.jsonl")
    for step in range(1, STEPS + 1):
        g = d0[step]["global"]
        assert len(g) == 2 * PER_RANK and d1[step]["global"] == g  # the same global draw on both ranks
        assert d0[step]["local"] == g[:PER_RANK] and d1[step]["local"] == g[PER_RANK:]  # each its own slice
        assert s0[step]["state"] == s1[step]["state"]  # the same Q, step and RNG after learning from the gathered step
        arms = d0[step]["arms"][::8]  # one arm per group of 8
        assert curriculum[step - 1]["counts"] == {a: arms.count(a) for a in ("long", "short")}  # the log is the draw
    # The gathered signal moved Q (the same on both ranks): the check above covered a learning curriculum.
    assert any(v > 0 for r in curriculum for v in r["q"].values())

    # Killed: SIGKILL to the launcher's whole process group once a checkpoint is complete, then the same command.
    recipe_k, out_k = recipe_file(tmp_path, "killed", tiny_model, say_seven)
    proc = launch(recipe_k, tmp_path / "rec-killed")
    deadline = time.monotonic() + 300
    while (ck := last_checkpoint(out_k)) is None:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    kill_all(proc, tmp_path / "rec-killed")
    assert ck.name != f"checkpoint-{STEPS}" and not (out_k / "final").exists()
    text = finish(launch(recipe_k, tmp_path / "rec-killed"))
    assert f"resumed from {ck.name}" in text, [line for line in text.splitlines() if "resum" in line or "trained" in line]

    (m_whole, c_whole), (m_killed, c_killed) = load_metrics(out), load_metrics(out_k)
    assert [r["step"] for r in c_killed] == list(range(1, STEPS + 1))
    assert c_killed == c_whole  # arms drawn, probabilities, signals, Q: step for step
    assert [m["reward"] for m in m_killed] == [m["reward"] for m in m_whole]
    assert json.loads((out_k / f"checkpoint-{STEPS}" / CURRICULUM_STATE).read_text()) == \
        json.loads((out / f"checkpoint-{STEPS}" / CURRICULUM_STATE).read_text())
    for rank in (0, 1):  # after the resume each rank drew and trained on what it did in the uninterrupted run
        assert per_step(tmp_path / "rec-killed", rank) == per_step(tmp_path / "rec-whole", rank)


def test_rc_training_on_two_processes_is_refused_with_the_reason(tiny_model, say_seven, tmp_path):
    recipe, out = recipe_file(tmp_path, "rc", tiny_model, say_seven, rc={"turns": 2, "states": 2, "summary_tokens": 4})
    raw = yaml.safe_load(recipe.read_text())
    del raw["curriculum"]  # an rc recipe draws its own problems
    recipe.write_text(yaml.safe_dump(raw))
    proc = launch(recipe, tmp_path / "rec")
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    # Each rank stops with strop's one-line error (exit status 2, no traceback of strop's); the traceback in the
    # output is torchrun's own report that a rank failed.
    assert "error: RC training runs in one process for now" in text and "replay buffer" in text
    assert "exitcode  : 2" in text and not (out / "checkpoint-1").exists()
