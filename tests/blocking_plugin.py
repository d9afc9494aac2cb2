"""A test plugin (``STROP_PLUGINS=blocking_plugin``, this folder on PYTHONPATH): a task and a method that stop
at a known point, so a test kills or signals a real strop process there instead of racing it.

- task ``arithmetic-blocking``: the arithmetic task, whose check, on its 5th call, creates the file
  ``$STROP_TEST_MARKER`` and blocks for ever (the test then kills the process). When the marker exists already
  (the resumed run), it never blocks.
- task ``integrals-blocking`` (for ``strop ladder build``): the integrals task, whose variant kind blocks for
  ever on its 10th validation, after creating ``$STROP_TEST_MARKER`` (never when the marker exists).
- method ``greedy-after-release``: greedy, but before its first request it creates ``$STROP_TEST_MARKER`` and
  waits until the file ``$STROP_TEST_RELEASE`` exists (the test creates it when it is ready).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from strop.ladder.variants import KINDS, TASK_KINDS, IntegralKind
from strop.methods import method_spec, register_method
from strop.tasks import get_task, register_task

_calls = 0
_lock = threading.Lock()
_arith = get_task("arithmetic")


def _block_at(call: int) -> None:
    """On the ``call``-th call in this process, unless a run before made the marker: make it, and block for ever."""
    global _calls
    marker = Path(os.environ["STROP_TEST_MARKER"])
    with _lock:
        _calls += 1
        block = _calls == call and not marker.exists()
        if block:
            marker.touch()
    if block:
        threading.Event().wait()  # for ever: the test kills this process here


def _check(problem, completion):
    _block_at(5)
    return _arith.check(problem, completion)


register_task(replace(_arith, name="arithmetic-blocking", check=_check))


class _BlockingIntegrals(IntegralKind):
    name, task = "integral-blocking", "integrals-blocking"

    def validate(self, payload):
        _block_at(10)
        return super().validate(payload)

    def with_validity(self, validity):
        assert validity == "sympy"
        return self


register_task(replace(get_task("integrals"), name="integrals-blocking"))
KINDS["integral-blocking"] = _BlockingIntegrals()
TASK_KINDS["integrals-blocking"] = "integral-blocking"

_greedy = method_spec("greedy")


def _after_release(model, prompt_ids, rng, **kwargs):
    Path(os.environ["STROP_TEST_MARKER"]).touch()
    release = Path(os.environ["STROP_TEST_RELEASE"])
    while not release.exists():  # the test creates it; the test itself bounds how long it waits for anything
        time.sleep(0.01)
    return (yield from _greedy.steps(model, prompt_ids, rng, **kwargs))


register_method(replace(_greedy, name="greedy-after-release", steps=_after_release, help="greedy, after the test says so"))
