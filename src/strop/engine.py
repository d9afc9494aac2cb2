"""The engine: many method instances at once, their generation requests batched.

Every decoding method is a *step machine* (a generator): it yields a list of
``GenRequest`` (prompt ids, sampling settings, its own rng), receives the
``Generation`` for each, and finally returns its ``MethodResult``. It never
calls the backend's ``generate``. The engine keeps any number of machines
in flight and hands the requests pending across all of them to the backend's
``generate_stream`` (at most ``max_rows`` rows at once, oldest first; a row
that finishes makes room for the next request between decode steps).

Guarantees:
- Each request carries the rng of the attempt that made it, and every
  backend draws a row's tokens only from that row's rng, so an attempt's
  random stream is the same alone or batched with others. On backends whose
  rows run one by one (toy, scripted, openai) results are identical; on
  batching backends (hf, llamacpp) the logits of a row can differ in float
  rounding with the batch's composition, which flips a token whose draw
  lands next to a boundary: rarely on hf (float32), often on llamacpp (its
  Q4_1 kernels change with the batch size); measured and bounded in the tests.
- A machine's requests of one yield are answered together, in order; its
  next requests join the batch as soon as they exist, while other rows are
  still decoding (continuous batching, on backends that support it).
- An exception inside a machine ends that machine only (``on_done`` sees
  it); an exception from the backend ends every machine of that round.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from strop.backends.base import Backend, Generation, GenRequest

#: A method instance: yields batches of requests, receives their generations, returns its result.
Steps = Generator[list[GenRequest], list[Generation], Any]


class Cancelled(Exception):
    """Raised for a job given up by its owner (time limit, client gone, shutdown): it stops at its next round."""


@dataclass(eq=False)
class Job:
    """One machine in the engine and where it stands."""

    machine: Steps
    on_done: Callable[[Job], None] | None = None
    requests: list[GenRequest] = field(default_factory=list)
    answers: list[Generation | None] = field(default_factory=list)
    sent: int = 0  # requests of the current yield already in a round
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop this job before its next round (thread-safe: a flag the engine reads)."""
        self.cancelled = True


class Engine:
    """Drives step machines over one backend, batching their requests.

    ``run`` drives a fixed set to the end (the CLI, the eval harness, training
    rollouts); ``submit`` + ``serve_forever`` (or ``step``) keep a live queue
    that other threads add to (the server).
    """

    def __init__(self, backend: Backend, *, max_rows: int | None = None) -> None:
        self.backend = backend
        self.max_rows = max(1, max_rows or backend.max_batch)
        self._jobs: deque[Job] = deque()  # jobs with requests not yet answered, oldest first
        self._lock = threading.Condition()
        self._incoming: list[Job] = []  # submitted from other threads, started by the engine's thread
        self._stopping = False
        self._halt = False  # run(): a machine failed, start no more rows

    # ------------------------------------------------------------ the jobs
    def _advance(self, job: Job, value: list[Generation] | None) -> None:
        """Feed the machine (None: start it) until it yields requests or ends."""
        try:
            while True:
                if job.cancelled:
                    job.machine.close()
                    raise Cancelled()
                reqs = job.machine.send(value) if value is not None else next(job.machine)
                if reqs:
                    job.requests, job.answers, job.sent = list(reqs), [None] * len(reqs), 0
                    return
                value = []  # a machine that asks for nothing gets nothing back at once
        except StopIteration as stop:
            job.result = stop.value
            self._finish(job)
        except BaseException as e:  # noqa: BLE001 - the machine's own error ends that job only; its owner sees it
            job.error = e
            self._finish(job)

    def _finish(self, job: Job) -> None:
        job.done = True
        job.requests, job.answers = [], []
        if job.on_done is not None:
            job.on_done(job)

    def add(self, machine: Steps, on_done: Callable[[Job], None] | None = None) -> Job:
        """Start a machine (runs it up to its first request) and queue its requests."""
        job = Job(machine, on_done)
        self._advance(job, None)
        if not job.done:
            self._jobs.append(job)
        return job

    # --------------------------------------------------------------- rounds
    def _take(self, n: int) -> list[tuple[tuple[Job, int], GenRequest]]:
        """Up to ``n`` requests not yet sent, oldest jobs first; cancelled jobs without rows in flight end here."""
        for job in [j for j in self._jobs if j.cancelled and _in_flight(j) == 0]:
            self._jobs.remove(job)
            self._advance(job, [])  # raises Cancelled inside _advance, which finishes the job
        taken: list[tuple[tuple[Job, int], GenRequest]] = []
        for job in self._jobs:
            if job.cancelled:
                continue
            while job.sent < len(job.requests) and len(taken) < n:
                taken.append(((job, job.sent), job.requests[job.sent]))
                job.sent += 1
            if len(taken) >= n:
                break
        return taken

    def _answered(self, key: tuple[Job, int], g: Generation) -> None:
        """A row finished: once a job has every answer of its yield, feed them and queue its next requests."""
        job, i = key
        job.answers[i] = g
        if job.cancelled and _in_flight(job) == 0:
            self._jobs.remove(job)
            self._advance(job, [])  # ends it with Cancelled
        elif all(a is not None for a in job.answers):
            answers = list(job.answers)
            self._jobs.remove(job)
            self._advance(job, answers)  # type: ignore[arg-type]
            if not job.done:
                self._jobs.append(job)  # its next requests queue behind the others'

    def _refill(self, free: int) -> list[tuple[tuple[Job, int], GenRequest]]:
        """Rows to start now that ``free`` rows are free (called by the backend between decode steps)."""
        if self._halt:
            return []
        self._start_incoming()
        return self._take(free)

    def _start_incoming(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for job in incoming:
            self._advance(job, None)
            if not job.done:
                self._jobs.append(job)

    def step(self) -> bool:
        """Decode until no request is pending: rows start as others finish (continuous batching). False if idle.

        At most ``max_rows`` rows are in flight; a machine whose answers are
        complete is advanced at once and its next requests join the batch while
        other rows are still decoding.
        """
        taken = self._take(self.max_rows)
        if not taken:
            return False
        in_flight = {id(job): job for (job, _), _r in taken}

        def more(free: int) -> list[tuple[tuple[Job, int], GenRequest]]:
            rows = self._refill(free)
            in_flight.update((id(job), job) for (job, _), _r in rows)
            return rows

        try:
            self.backend.generate_stream(taken, more, self._answered, max_rows=self.max_rows)
        except BaseException as e:  # noqa: BLE001 - the backend failed: every job with a row in flight ends with the error
            for job in in_flight.values():
                if job.done:
                    continue
                if job in self._jobs:
                    self._jobs.remove(job)
                job.machine.close()
                job.error = e
                self._finish(job)
        return True

    def run(self, machines: Iterable[Steps], *, on_result: Callable[[int, Any], None] | None = None,
            in_flight: int | None = None) -> list[Any]:
        """Drive ``machines`` to their results (in order). ``on_result(i, result)`` sees each as it finishes.

        At most ``in_flight`` machines are alive at once (default: all); as one
        ends the next starts, so the batch stays full instead of draining at the
        end of every group (machines may be a lazy iterable). The first machine
        that raises ends the run with its exception (the others are closed), as
        running them one at a time would.
        """
        jobs: list[Job] = []
        failed: list[Job] = []
        source = iter(machines)
        limit = in_flight if in_flight is not None else float("inf")
        alive = [0]

        def done(job: Job, i: int) -> None:
            alive[0] -= 1
            if job.error is not None:
                failed.append(job)
                self._halt = True
                return
            if on_result is not None:
                on_result(i, job.result)
            start_more()

        def start_more() -> None:
            while not self._halt and alive[0] < limit:
                m = next(source, None)
                if m is None:
                    return
                i = len(jobs)
                job = Job(m, lambda job, i=i: done(job, i))
                jobs.append(job)
                alive[0] += 1
                self._advance(job, None)
                if not job.done:
                    self._jobs.append(job)

        try:
            start_more()
            while not failed and self.step():
                pass
            if failed:
                raise failed[0].error  # type: ignore[misc]
        finally:
            self._halt = False
            for job in jobs:
                if not job.done:
                    job.machine.close()
                    if job in self._jobs:
                        self._jobs.remove(job)
        return [job.result for job in jobs]

    # ------------------------------------------------- a live queue (server)
    def submit(self, machine: Steps, on_done: Callable[[Job], None]) -> Job:
        """Queue a machine from any thread; ``on_done(job)`` runs on the engine's thread when it ends."""
        job = Job(machine, on_done)
        with self._lock:
            if self._stopping:
                raise Cancelled()
            self._incoming.append(job)
            self._lock.notify()
        return job

    def serve_forever(self) -> None:
        """The engine thread: start queued machines, decode, until ``stop``; then cancel what is left."""
        while True:
            with self._lock:
                while not self._incoming and not self._jobs and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    left, self._incoming = self._incoming, []
                    break
            self._start_incoming()
            self.step()
        for job in left + list(self._jobs):
            job.cancel()
            self._advance(job, [])
        self._jobs.clear()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()


def _in_flight(job: Job) -> int:
    """Rows of the job's current yield sent to the backend and not answered yet."""
    return job.sent - sum(a is not None for a in job.answers)


def run_steps(backend: Backend, machine: Steps) -> Any:
    """Run one machine to its result (what calling a method directly does)."""
    return Engine(backend).run([machine])[0]
