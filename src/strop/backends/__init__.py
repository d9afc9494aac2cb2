"""Backends: how tokens are produced. One contract (``Backend``), one result shape (``Generation``).

Backends are looked up by name in a lazy registry, so ``import strop`` never
imports torch, transformers or llama.cpp; only the backend you load does.
"""

from __future__ import annotations

import importlib
from typing import Any

from strop.backends.base import (
    ENTROPY,
    EXACT_LOGPROBS,
    LOGPROBS,
    PREFIX_CACHE,
    SCORE,
    TOPK_BASE,
    Backend,
    Generation,
    SamplingParams,
    Scored,
)
from strop.errors import UnknownNameError
from strop.registry import add

# name -> "module:Class". Register more with ``register_backend``.
_REGISTRY: dict[str, str] = {
    "llamacpp": "strop.backends.llamacpp:LlamaCppBackend",
    "hf": "strop.backends.hf:HFBackend",
    "openai": "strop.backends.openai_compat:OpenAIBackend",
    "toy": "strop.backends.toy:ToyBackend",
}

DEFAULT_BACKEND = "llamacpp"


def register_backend(name: str, target: str, *, replace: bool = False) -> None:
    """Register a backend class by import path, e.g. ``register_backend("mine", "pkg.mod:MyBackend")`` (a taken name is refused)."""
    add(_REGISTRY, "backend", name, target, replace=replace)


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown backend '{name}'; choose one of: {', '.join(backend_names())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_backend(name: str = DEFAULT_BACKEND, model: str | None = None, **options: Any) -> Backend:
    """Load a model on a backend. ``model=None`` means the embedded SmolLM2-135M-Instruct.

    >>> backend = load_backend()                       # llama.cpp, embedded model  # doctest: +SKIP
    >>> backend = load_backend("hf", "HuggingFaceTB/SmolLM2-360M-Instruct")  # doctest: +SKIP
    """
    cls = backend_class(name)
    if cls.model_source is None:  # the class says how it is loaded: no backend name is special here
        raise UnknownNameError(cls.load_hint or f"backend {name!r} is built in code, not loaded by name")
    if model is None and cls.model_source == "embedded":
        from strop.models import embedded_model_path

        model = str(embedded_model_path())
    return cls(model, **options) if model is not None else cls(**options)


__all__ = [
    "ENTROPY",
    "EXACT_LOGPROBS",
    "LOGPROBS",
    "PREFIX_CACHE",
    "SCORE",
    "TOPK_BASE",
    "Backend",
    "Generation",
    "SamplingParams",
    "Scored",
    "backend_class",
    "backend_names",
    "load_backend",
    "register_backend",
]
