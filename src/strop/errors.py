"""Errors strop raises on purpose.

Every user error (bad path, unknown name, prompt too long, server down) is a
``StropError`` whose message is one line a person can act on; the CLI prints
that line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class StropError(Exception):
    """Base class for errors whose message is meant for the user."""


class ConfigError(StropError, ValueError):
    """A configuration value is invalid; the message names the field and value."""


class ModelLoadError(StropError):
    """A model could not be found or loaded (missing path, corrupt file, ...)."""


class UnknownNameError(StropError, KeyError):
    """A backend, method or other registry entry was asked for by a wrong name."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class CapabilityError(StropError):
    """A backend was asked for something it cannot provide.

    Methods check capabilities before they start, so this names the capability
    rather than failing halfway with a silent ``None``.
    """

    def __init__(self, backend: str, capability: str, hint: str = "") -> None:
        self.backend = backend
        self.capability = capability
        msg = f"backend '{backend}' cannot provide '{capability}'"
        super().__init__(f"{msg}: {hint}" if hint else msg)


class ContextOverflowError(StropError):
    """The prompt (plus requested tokens) does not fit the model's context."""


class BackendError(StropError):
    """A backend failed at run time: server down, garbage response, decode error."""
