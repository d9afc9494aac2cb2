"""strop: make language models reason better at test time and from their own verified outputs.

The library is organised as the architecture is:

- ``strop.backends``: how tokens are produced (llama.cpp, transformers, any
  OpenAI-compatible server, and exact toy models), all returning one
  ``Generation`` shape.
- ``strop.methods``: decoding algorithms built on backends (greedy, sampling,
  best-of-n, majority vote; power sampling, RC later).
- ``strop.verifiers``: is an answer right.
- ``strop.cli``: the ``strop`` command, a thin shell over the library.
"""

import os

# OpenMP worker threads (llama.cpp's build and torch both use libgomp) spin at every barrier by default. When other
# processes keep the cores busy, a spinning thread burns the time slice its partner needs: measured on this 2-core
# machine with two busy loops running, llama.cpp at 2 threads decoded 0.2 tokens/s instead of 16, transformers 2.8
# instead of 7.6. Waiting passively (sleeping at barriers) keeps both usable on a shared machine. It has to be set
# before either OpenMP runtime loads, hence here; a value the user set wins. See docs/contributing.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
