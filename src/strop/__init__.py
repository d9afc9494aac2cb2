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
