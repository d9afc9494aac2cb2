"""A bounded load generator for ``strop serve``: N clients, a fixed time, every answer kept and checked.

Used by ``bench/serve_load.py`` (figures) and by the tests. Each client sends
requests from a list, round robin from its own offset, with the official
``openai`` client; every answer is recorded with its request so that a later
pass can check it was not lost or mixed with another's (same seed, same
request, same answer when re-asked alone).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoadReport:
    clients: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answers: list[tuple[int, str, int]] = field(default_factory=list)  # (request index, text, completion tokens)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_s)
        return {"clients": self.clients, "seconds": round(self.seconds, 2), "requests": len(self.latencies_s),
                "errors": len(self.errors), "throughput_rps": round(len(self.latencies_s) / self.seconds, 3),
                "p50_s": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
                "p99_s": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
                "completion_tokens": sum(a[2] for a in self.answers)}


def ask(client: Any, request: dict[str, Any]) -> tuple[str, int]:
    r = client.chat.completions.create(**request)
    return r.choices[0].message.content, r.usage.completion_tokens


def run_load(base_url: str, requests: list[dict[str, Any]], *, clients: int, seconds: float, api_key: str = "unused") -> LoadReport:
    """``clients`` threads send ``requests`` (chat.completions keyword arguments) for ``seconds``; nothing is retried."""
    import openai

    report = LoadReport(clients, seconds)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(offset: int) -> None:
        c = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=max(60.0, seconds * 4))
        i = offset
        while time.monotonic() < stop_at:
            k = i % len(requests)
            t0 = time.perf_counter()
            try:
                text, tokens = ask(c, requests[k])
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported, not raised
                with lock:
                    report.errors.append(f"{type(e).__name__}: {e}")
            else:
                with lock:
                    report.latencies_s.append(time.perf_counter() - t0)
                    report.answers.append((k, text, tokens))
            i += clients

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.seconds = time.monotonic() - started
    return report


def mixed_answers(base_url: str, requests: list[dict[str, Any]], report: LoadReport, api_key: str = "unused") -> dict[str, list[int]]:
    """Each answer under load against the same request asked alone.

    Returns request indices by outcome: ``mixed`` (the answer is another
    request's: it equals what a request with a different question answers
    alone) and ``rounding`` (it differs from its own alone answer but is no other
    request's: on a batching backend a row's float rounding depends on the batch
    it shared, which can flip a token). An answer equal to its own is neither.
    """
    import openai

    c = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    alone = {k: ask(c, requests[k]) for k in sorted({a[0] for a in report.answers})}

    def question(k: int) -> str:
        return str(requests[k].get("messages", [{}])[-1].get("content", requests[k].get("prompt", "")))

    mixed, rounding = set(), set()
    for k, text, tokens in report.answers:
        if (text, tokens) == alone[k]:
            continue
        if any((text, tokens) == alone[j] and question(j) != question(k) for j in alone):
            mixed.add(k)
        else:
            rounding.add(k)
    return {"mixed": sorted(mixed), "rounding": sorted(rounding)}
