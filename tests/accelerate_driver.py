"""Run ``strop train`` under ``accelerate launch``, recording what each rank draws and trains on.

Usage: ``accelerate launch ... tests/accelerate_driver.py RECORDS_DIR strop-train-args...``.

Each rank appends JSON lines to ``RECORDS_DIR/rank<r>.jsonl``:

- ``{"step", "global", "arms", "local"}`` per training generation: the problem
  ids and arms of the curriculum's global draw, and the problem ids of the rows
  this rank handed to TRL (what it trains on);
- ``{"step", "state"}`` per step: the curriculum's whole state (Q, step, RNG)
  after it learnt from the step.

Each rank also writes its pid to ``RECORDS_DIR/pid-rank<r>``. It observes at two boundaries only (the row source's draw and learn, TRL's
``_generate_and_score_completions``) and then runs the real command line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    records = Path(sys.argv[1])
    rank = int(os.environ["RANK"])  # set by accelerate launch for every process
    out = records / f"rank{rank}.jsonl"
    # torchrun starts every rank in a session of its own: a test that kills the run must find them.
    (records / f"pid-rank{rank}").write_text(str(os.getpid()))

    def write(rec: dict) -> None:
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    from trl import GRPOTrainer

    from strop.training.sources import CurriculumRows

    real_draw, real_learn, real_generate = CurriculumRows.draw, CurriculumRows.learn, GRPOTrainer._generate_and_score_completions

    def draw(self, groups, policy):
        rows = real_draw(self, groups, policy)
        self.recorded_global = ([r["problem_id"] for r in rows], [r["category"] for r in rows])
        return rows

    def learn(self, step, advantages, book, write_log):
        metrics = real_learn(self, step, advantages, book, write_log)
        write({"step": step, "state": self.state_dict()})
        return metrics

    def generate(self, inputs):
        if self.model.training:
            ids, arms = self.row_source.recorded_global
            write({"step": self.state.global_step + 1, "global": ids, "arms": arms, "local": [r["problem_id"] for r in inputs]})
        return real_generate(self, inputs)

    CurriculumRows.draw, CurriculumRows.learn = draw, learn
    GRPOTrainer._generate_and_score_completions = generate

    from strop.cli.main import main as strop_main

    sys.argv = ["strop", *sys.argv[2:]]
    strop_main()


if __name__ == "__main__":
    main()
