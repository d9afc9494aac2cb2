"""``strop serve``: the methods behind an OpenAI-compatible HTTP API (see ``strop.server.app``)."""

from strop.server.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
