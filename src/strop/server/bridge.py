"""``strop serve``'s bridge to the engine: one engine thread in front of the backend, bounded admission, a future
per request, cancellation; and how a method's failure is answered."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from strop.backends.base import Backend
from strop.engine import Cancelled, Engine, Job
from strop.errors import BackendError, StropError
from strop.server.plan import APIError, ServeConfig


class ServerEngine:
    """The engine thread in front of the backend, bounded admission, time limits, cancellation."""

    def __init__(self, backend: Backend, config: ServeConfig) -> None:
        self.backend, self.config = backend, config
        self.engine = Engine(backend, max_rows=config.max_rows)
        self.thread = threading.Thread(target=self.engine.serve_forever, name="strop-engine", daemon=True)
        self.thread.start()
        self.pending = 0
        self.draining = False
        self.requests: set[Any] = set()

    def admit(self) -> None:
        if self.draining:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        if self.pending >= self.config.max_pending:
            raise APIError(429, f"too many requests in flight (limit {self.config.max_pending}); retry shortly",
                           code="too_many_requests", headers={"Retry-After": "1"})
        self.pending += 1

    def submit(self, machines: list[Any]) -> tuple[asyncio.Future, Callable[[], None]]:
        """Queue a request's machines; returns (future of their results, cancel). The future fails with the first error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        # A request that timed out or lost its client no longer awaits the future, which then ends with Cancelled:
        # reading the error here keeps asyncio from logging it as "never retrieved" (with a traceback formatted
        # on the server's thread) when the future is collected. Whoever still awaits it gets the error as before.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        results: list[Any] = [None] * len(machines)
        left = [len(machines)]
        jobs: list[Job] = []
        lock = threading.Lock()

        def cancel() -> None:
            for job in jobs:
                job.cancel()

        def settle(value: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            fut.set_exception(error) if error is not None else fut.set_result(value)

        def release() -> None:
            # A request counts against max_pending until the backend is done with it, even after a timeout.
            self.pending -= 1
            self.requests.discard(cancel)

        def done(job: Job, k: int) -> None:  # on the engine thread
            with lock:
                left[0] -= 1
                last = left[0] == 0
                results[k] = job.result
            if job.error is not None:
                cancel()  # one choice failed: the others stop at their next round
                loop.call_soon_threadsafe(settle, None, job.error)
            elif last:
                loop.call_soon_threadsafe(settle, list(results), None)
            if last:
                loop.call_soon_threadsafe(release)

        self.requests.add(cancel)
        try:
            for k, m in enumerate(machines):
                jobs.append(self.engine.submit(m, lambda job, k=k: done(job, k)))
        except Cancelled:
            cancel()
            release()
            raise APIError(503, "the server is shutting down", code="shutting_down") from None
        return fut, cancel

    def shutdown(self) -> None:
        self.draining = True
        for cancel in list(self.requests):
            cancel()
        self.engine.stop()
        self.thread.join()
        self.backend.close()


def timeout_error(timeout_s: float) -> APIError:
    return APIError(503, f"the request did not finish within this server's time limit ({timeout_s:g} s)", code="timeout")


def method_error(e: BaseException) -> APIError:
    if isinstance(e, BackendError):
        return APIError(503, f"backend failed: {e}", code="backend_error")
    if isinstance(e, StropError):
        return APIError(400, str(e))
    return APIError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error")
