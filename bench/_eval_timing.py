"""Shared by the benchmark scripts: one timed ``strop eval`` run, in-process, on a fresh output folder."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from strop.backends import Backend
from strop.evaluation.harness import EvalSpec, evaluate
from strop.tasks import get_task


def timed_eval(backend: Backend, backend_name: str, method: str, kwargs: dict[str, Any], problems: list, out: Path,
               in_flight: int, seed: int, samples: int = 1) -> tuple[dict, float, list[dict]]:
    """Run the arithmetic eval of ``method`` (``samples`` attempts per problem) with ``in_flight`` attempts at once;
    returns (metrics, wall seconds, records). Closes ``backend``."""
    if out.exists():
        shutil.rmtree(out)  # a timing must not resume
    spec = EvalSpec(task="arithmetic", method=method, backend=backend_name, model=None, seed=seed, limit=len(problems),
                    samples=samples,
                    method_config={k: str(v) for k, v in kwargs.items()})
    try:
        started = time.perf_counter()
        metrics = evaluate(spec, get_task("arithmetic"), problems, backend, out, method_kwargs=kwargs,
                           batch_size=in_flight)
        wall = time.perf_counter() - started
    finally:
        backend.close()
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return metrics, wall, records
