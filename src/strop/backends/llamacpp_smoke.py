"""The llama.cpp build check's child: ``python -m strop.backends.llamacpp_smoke MODEL``.

Prints the build's CPU features (``SYSTEM_INFO ...``), then loads ``MODEL`` and decodes a few tokens through
strop's llamacpp backend (``DECODED n``). It runs in its own process (``strop.backends.native.check_build``), so
a build that crashes on this CPU kills the child, not the caller, who reads the verdict from its output.
"""

from __future__ import annotations

import sys

import numpy as np

from strop.backends.base import SamplingParams
from strop.backends.llamacpp import LlamaCppBackend


def main(model: str) -> None:
    """Print the build's CPU features, then load ``model`` and decode a few tokens through the backend."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    print("SYSTEM_INFO " + (info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)).strip(), flush=True)
    backend = LlamaCppBackend(model, n_ctx=256, native_check=False)
    g = backend.generate(backend.tokenize("1 + 1 ="), SamplingParams(max_tokens=4, temperature=0.0), np.random.default_rng(0))
    print(f"DECODED {g.completion_tokens}", flush=True)
    backend.close()


if __name__ == "__main__":
    main(sys.argv[1])
