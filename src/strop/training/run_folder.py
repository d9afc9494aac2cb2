"""A training run's folder: checkpoints (which one is complete), its logs, and the recipe it holds.

``strop train`` resumes from the newest complete checkpoint, drops log lines
past it (a killed run may have logged steps its checkpoint does not hold), and
refuses a folder that holds another recipe's run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from strop.errors import ConfigError
from strop.records import read_records
from strop.training.recipe import TrainRecipe

# Written by transformers' Trainer as the last file of a checkpoint: its
# presence is what makes a checkpoint folder complete (a kill can land mid-save).
TRAINER_STATE = "trainer_state.json"


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def _complete(checkpoint: Path) -> bool:
    """Whether the Trainer finished writing ``checkpoint``: its state file, written last, exists and parses.

    A kill can land while that file is being written, leaving it empty or cut.
    """
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(output: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder (a kill mid-save leaves an incomplete one behind)."""
    done = [p for p in output.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit() and _complete(p)]
    return max(done, key=checkpoint_step) if done else None


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop records past ``step``: a killed run may have logged steps its last checkpoint does not hold."""
    if path.is_file():
        keep = [r for r in read_records(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def wall_so_far(output: Path) -> float:
    """Seconds of training the run folder's metrics.jsonl counts (the sum of its seconds per step)."""
    return sum(float(r.get("wall_per_step_s", 0.0)) for r in load_metrics(output)[0])


def _check_same_recipe(output: Path, recipe: TrainRecipe) -> None:
    """Refuse to resume a folder that holds another recipe's run.

    ``max_steps`` may grow (extend a finished run), ``max_wall_s`` may change, and ``output`` is the folder
    itself however it is spelled (relative, absolute, ``--output``).
    """
    saved = output / "recipe.json"
    current = recipe.to_dict()
    if saved.is_file():
        old = json.loads(saved.read_text())

        def strip(d: dict) -> dict:
            # "rc" is absent from recipes saved before RC training existed: the same as none.
            # Keys added later (rc.prompts, model.chat_template_kwargs) are absent from older saved recipes: the same as None.
            rc = None if d.get("rc") is None else {"prompts": None, **d["rc"]}
            model = {"chat_template_kwargs": None, **d["model"]}
            # data.verifier "math" was the default before None (the task's own check) replaced it: the same check.
            data = {**d["data"], "verifier": None if d["data"].get("verifier") == "math" else d["data"].get("verifier")}
            # curriculum q0, update, sampling, options came later too: their defaults are what older runs did.
            curriculum = {"q0": 0.0, "update": "drawn", "sampling": "with_replacement", "options": {}, **d["curriculum"]}
            return {**d, "output": None, "max_wall_s": None, "rc": rc, "model": model, "data": data, "curriculum": curriculum, "eval": d.get("eval"),
                    "dynamic_sampling": d.get("dynamic_sampling"),
                    "grpo": {k: v for k, v in d["grpo"].items() if k != "max_steps"}}

        if strip(old) != strip(current):
            raise ConfigError(f"{output} holds a run of a different recipe; use another output folder or delete it")
    # Atomically (a temporary file renamed over it): under accelerate launch every rank checks and writes it at
    # once, and a rank must never read a file another rank has just truncated.
    tmp = saved.with_name(f"{saved.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(current, indent=2))
    os.replace(tmp, saved)


def load_metrics(output: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """(metrics.jsonl records, curriculum.jsonl records) of a run folder."""
    out = Path(output)
    return read_records(out / "metrics.jsonl"), read_records(out / "curriculum.jsonl")
