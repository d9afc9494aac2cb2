"""strop: make language models reason better at test time and from their own verified outputs.

The library is organised as the architecture is:

- ``strop.backends``: how tokens are produced (llama.cpp, transformers, any
  OpenAI-compatible server, and exact toy models), all returning one
  ``Generation`` shape.
- ``strop.engine``: runs many method instances at once, batching their requests.
- ``strop.methods``: decoding algorithms as step machines (greedy, sampling,
  best-of-n, majority vote, power sampling, RC and its comparison points).
- ``strop.verifiers``: is an answer right.
- ``strop.tasks``: benchmarks by name, and custom JSONL tasks.
- ``strop.evaluation``: the resumable eval harness, metrics with intervals.
- ``strop.training``: the RL engine (GRPO through TRL, curricula such as SEC).
- ``strop.ladder``: variant trees and test-time variant RL.
- ``strop.server``: every method behind an OpenAI-compatible API.
- ``strop.cli``: the ``strop`` command, a thin shell over the library.
"""

import os

# OpenMP worker threads (llama.cpp's build and torch both use libgomp) spin at every barrier before sleeping, by
# default for up to 300,000 spins. When other processes keep the cores busy, a spinning thread burns the time slice
# its partner needs: measured on this 2-core machine with two busy loops running, llama.cpp at 2 threads decoded
# 0.2 tokens/s. A short spin (20,000) then sleep keeps it usable there (34 tokens/s; fully passive waiting: 23) and
# costs nothing measurable on an idle machine (83 tokens/s either way; passive: 58). It has to be set before either
# OpenMP runtime loads, hence here; a wait policy or spin count the user set wins. See docs/contributing.md.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")

from strop.backends import Backend, Generation, SamplingParams, Scored, load_backend
from strop.errors import CapabilityError, StropError

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "CapabilityError",
    "Generation",
    "SamplingParams",
    "Scored",
    "StropError",
    "load_backend",
    "__version__",
]
