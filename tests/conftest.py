"""Shared fixtures. Real-model fixtures are session-scoped: loading is the slow part."""

from __future__ import annotations

import json
import os
from pathlib import Path

# TRL's trainers report usage to the Hugging Face hub from a background thread; tests run offline and
# must not reach the network (huggingface_hub reads this when first imported, after this file).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import pytest

from strop.backends.toy import ToyBackend

# A plugin for strop processes that tests start (STROP_PLUGINS=blocking_plugin): importing it registers a task and
# a method that block, so the doctest collection (--doctest-modules) must not import it into the test process.
collect_ignore = ["blocking_plugin.py"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before any test: can this llama.cpp build decode on this CPU? Checked in a child process.

    A build that crashes (SIGSEGV/SIGILL inside llama_decode) would otherwise kill
    pytest itself at the first llama.cpp test, with no summary. The verdict is
    remembered per build (strop.backends.native), so this costs one child start per build.
    """
    from strop.backends.llamacpp import check_native_build

    verdict = check_native_build()
    if not verdict.ok:
        pytest.exit(f"llama.cpp smoke check failed, no test was run.\n{verdict.message}", returncode=1)


def branching_toy() -> ToyBackend:
    """A 4-token model with sequences of unequal length, EOS at different depths.

    From the start: "a" 0.6, "b" 0.3, "$" 0.1. After "a": "a" 0.5, "$" 0.5.
    After "b": "b" 0.2, "a" 0.3, "$" 0.5 -- order 1 (depends on the last token only).
    """
    table = {
        ("q",): {"a": 0.6, "b": 0.3, "$": 0.1},
        ("a",): {"a": 0.5, "$": 0.5},
        ("b",): {"b": 0.2, "a": 0.3, "$": 0.5},
    }
    return ToyBackend.from_table(["q", "a", "b", "$"], table, eos="$", order=1)


@pytest.fixture
def toy() -> ToyBackend:
    return branching_toy()


@pytest.fixture(scope="session")
def llama():
    from strop.backends import load_backend

    backend = load_backend("llamacpp")
    yield backend
    backend.close()


def tv_distance(p: dict, q: dict) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def empirical(samples: list) -> dict:
    out: dict = {}
    for s in samples:
        out[s] = out.get(s, 0) + 1
    return {k: v / len(samples) for k, v in out.items()}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny in-test LM (tests/tiny_lm.py), built once per module (a module may override it)."""
    from tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def say_seven(tmp_path_factory) -> Path:
    """A verifiable task any policy can learn without arithmetic: every answer is 7, in two categories
    (the random tiny model is right often enough for rewards, and SEC's Q, to move)."""
    path = tmp_path_factory.mktemp("data") / "seven.jsonl"
    rows = [{"q": f"Say {w} {i}.", "a": "7", "cat": "short" if i % 2 else "long"} for i, w in
            enumerate(["seven", "7", "the digit", "a number"] * 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
