"""Servers on loopback for tests: a free port, ``strop serve``'s app run by uvicorn in a thread, an openai client for it."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(backend, **config):
    """``strop serve``'s app over ``backend`` (ServeConfig fields as keywords) on a free port; yields its base URL."""
    import uvicorn

    from strop.server import ServeConfig, create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(backend, ServeConfig(**config)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "server did not start")
    assert thread.is_alive(), "server thread died while starting"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_until(condition, what: str, timeout_s: float = 120.0) -> None:
    """Poll ``condition()`` until it holds; fail naming ``what`` after a generous ``timeout_s`` (loaded CI machines are slow)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} (waited {timeout_s:.0f} s)"
        time.sleep(0.02)


def client(url: str, **kw):
    """The official openai client for a server from ``running``, no retries (a test must see every failure)."""
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, timeout=60, **kw)
