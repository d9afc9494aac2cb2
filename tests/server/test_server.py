"""``strop serve`` on loopback, driven by the official ``openai`` client.

Most tests serve a character-level toy model (deterministic, log-probs, fast),
so every method runs in milliseconds and its output can be recomputed locally
with the same seed: the server's text and usage must equal a direct call of
the method. One test starts the real ``strop serve`` command on the embedded
model and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import string
import subprocess
import sys
import threading
import time

import numpy as np
import openai
import pytest
import requests

from locations import TESTS
from loopback import client, free_port, running, wait_until
from strop.backends.toy import ToyBackend
from strop.methods import get_method, method_settings
from strop.methods.base import takes_question

VOCAB = list(string.printable) + ["<eos>"]


class CharToy(ToyBackend):
    """A toy model over printable characters (others read as '?'); ``gate`` can hold generation mid-request."""

    def __init__(self) -> None:
        def logits(ctx: tuple[int, ...]) -> np.ndarray:
            row = np.random.default_rng(hash(ctx[-3:]) % 2**32).normal(size=len(VOCAB))
            row[-1] = 1.5  # EOS: ~3% a token, so completions end on their own or at max_tokens
            return row

        super().__init__(VOCAB, logits, eos="<eos>", context_length=8192)
        self.gate = threading.Event()
        self.gate.set()
        self.held = threading.Event()  # set when a call is waiting at the closed gate
        self.hold_after: int | None = None
        self.calls = 0

    def tokenize(self, text: str) -> list[int]:
        return super().tokenize("".join(c if c in string.printable else "?" for c in text))

    def generate(self, prompt_ids, params, rng, **kw):
        self.calls += 1
        if self.hold_after is not None and self.calls > self.hold_after:
            if not self.gate.is_set():
                self.held.set()
            assert self.gate.wait(120), "test gate never opened"
        return super().generate(prompt_ids, params, rng, **kw)


@pytest.fixture(scope="module")
def toy():
    return CharToy()


@pytest.fixture(scope="module")
def url(toy):
    with running(toy, max_tokens=512, max_request_tokens=20000) as u:
        yield u


# Small settings per method, so each runs in milliseconds on the toy.
SMALL = {
    "sample": {}, "greedy": {}, "best-of-n": {"n": 3}, "majority": {"n": 3},
    "power": {"alpha": 4.0, "block_size": 4, "mcmc_steps": 2},
    "rc": {"turns": 2, "reasoning_tokens": 6, "summary_tokens": 5},
    "self-refine": {"turns": 2, "reasoning_tokens": 6}, "long": {"turns": 2, "reasoning_tokens": 4, "summary_tokens": 3},
}


def local(backend, method: str, question: str, seed: int, max_tokens: int, choice: int = 0):
    """The same method run directly: what the server must have answered."""
    kwargs = method_settings(method, temperature=1.0, top_p=1.0, max_tokens=max_tokens, **SMALL[method])
    rng = np.random.default_rng([seed, choice])
    fn = get_method(method)
    if takes_question(method):
        return fn(backend, question, rng, **kwargs)
    return fn(backend, backend.chat_prompt([{"role": "user", "content": question}]), rng, **kwargs)


def test_models_and_health(url):
    ids = [m.id for m in client(url).models.list()]
    assert ids[0] == "smollm2" and "power/smollm2" in ids and "rc/smollm2" in ids
    assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"


@pytest.mark.parametrize("method", list(SMALL))
def test_each_method_answers_in_openai_shape_with_honest_usage(url, toy, method):
    c = client(url)
    r = c.chat.completions.create(model=f"{method}/smollm2", messages=[{"role": "user", "content": "What is 2+3?"}],
                                  max_tokens=12, seed=7, extra_body={"strop": SMALL[method]})
    assert r.object == "chat.completion" and len(r.choices) == 1 and r.model == f"{method}/smollm2"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    want = local(toy, method, "What is 2+3?", 7, 12)
    assert choice.message.content == want.text
    # Every decoded token counts: discarded samples, rejected proposals, summaries.
    assert r.usage.completion_tokens == want.decoded_tokens == r.strop["choices"][0]["decoded_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.strop["method"] == method and r.strop["seed"] == 7
    if method == "rc":
        turns = want.stats["turns"]
        assert r.usage.completion_tokens == sum(t["reasoning_tokens"] + t["summary_tokens"] for t in turns)
    if method == "best-of-n":
        assert r.usage.completion_tokens == sum(g.completion_tokens for g in want.candidates) > len(want.candidates)


def test_method_by_extra_body_n_choices_logprobs_and_completions(url, toy):
    c = client(url)
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=10, seed=3, n=2,
                                  logprobs=True, extra_body={"strop": {"method": "sample"}})
    assert [ch.index for ch in r.choices] == [0, 1]
    for i, ch in enumerate(r.choices):
        want = local(toy, "sample", "Hi", 3, 10, choice=i)
        assert ch.message.content == want.text
        g = want.candidates[0]
        lp = ch.logprobs.content
        assert "".join(t.token for t in lp) == want.text
        np.testing.assert_allclose([t.logprob for t in lp], g.base_logprobs[:len(lp)], atol=1e-9)
        assert len(lp) + (g.finish_reason == "eos") == g.completion_tokens
    assert r.usage.completion_tokens == sum(local(toy, "sample", "Hi", 3, 10, choice=i).decoded_tokens for i in range(2))

    p = c.completions.create(model="greedy/smollm2", prompt="abc", max_tokens=5, seed=1)
    assert p.object == "text_completion" and isinstance(p.choices[0].text, str) and p.usage.completion_tokens <= 5
    assert p.usage.prompt_tokens == 3


def test_streaming_sends_rc_turns_before_the_end(toy, tmp_path):
    # The gate holds the request after turn 1 (2 generate calls); turn 1 must already have reached the client.
    with running(toy) as u:
        toy.calls, toy.hold_after = 0, 2
        toy.held.clear()
        toy.gate.clear()
        try:
            stream = client(u).chat.completions.create(
                model="rc/smollm2", messages=[{"role": "user", "content": "Q?"}], seed=5, stream=True,
                stream_options={"include_usage": True}, extra_body={"strop": {"turns": 3, "reasoning_tokens": 6, "summary_tokens": 5}})
            it = iter(stream)
            first = next(it)
            assert first.choices[0].delta.role == "assistant"
            turn1 = next(it)
            assert turn1.strop["event"] == "turn" and turn1.strop["turn"] == 1
            # Turn 1 reached the client; wait (on an event, not on timing) until the server is held inside turn 2.
            assert toy.held.wait(120), "the server never reached turn 2"
            assert toy.calls == 3
            toy.gate.set()
            rest = list(it)
        finally:
            toy.hold_after = None
            toy.gate.set()
    turns = [c.strop for c in rest if getattr(c, "strop", None) and c.strop.get("event") == "turn"]
    assert [e["turn"] for e in turns] == [2, 3]
    content = "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert content == turns[-1]["reasoning"]  # RC answers with its last turn
    assert rest[-1].usage.completion_tokens == rest[-1].strop["choices"][0]["decoded_tokens"]


def test_streaming_power_blocks_arrive_as_events(url):
    stream = client(url).chat.completions.create(
        model="power/smollm2", messages=[{"role": "user", "content": "Go"}], max_tokens=12, seed=2, stream=True,
        extra_body={"strop": {"block_size": 4, "mcmc_steps": 1}})
    chunks = list(stream)
    blocks = [c.strop for c in chunks if getattr(c, "strop", None) and c.strop.get("event") == "block"]
    finals = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert [b["block"] for b in blocks] == list(range(1, len(blocks) + 1)) and blocks
    assert finals and chunks.index(finals[0]) > chunks.index(next(c for c in chunks if getattr(c, "strop", None) and c.strop.get("event") == "block"))


class SlowToy(CharToy):
    """A CharToy whose next-token logits wait at ``token_gate`` once ``arm_after`` logits rows have been computed."""

    def __init__(self) -> None:
        super().__init__()
        self.token_gate = threading.Event()
        self.token_gate.set()
        self.at_gate = threading.Event()
        self.arm_after: int | None = None
        self.rows = 0

    def logits(self, context):
        if self.arm_after is not None:
            self.rows += 1
            if self.rows > self.arm_after:
                self.at_gate.set()
                assert self.token_gate.wait(120), "token gate never opened"
        return super().logits(context)


@pytest.mark.parametrize("method", ["sample", "greedy"])
def test_sample_and_greedy_stream_tokens_as_they_are_decoded(method):
    slow = SlowToy()
    with running(slow, max_tokens=64) as u:
        want = local(slow, method, "Tell me.", 9, 12)
        assert want.candidates[0].completion_tokens > 4  # long enough that the gate falls mid-answer
        slow.rows, slow.arm_after = 0, 3  # the prompt's row and two tokens' rows pass; the fourth waits
        slow.at_gate.clear()
        slow.token_gate.clear()
        try:
            stream = client(u).chat.completions.create(model=f"{method}/smollm2", messages=[{"role": "user", "content": "Tell me."}],
                                                       max_tokens=12, seed=9, stream=True)
            it = iter(stream)
            assert next(it).choices[0].delta.role == "assistant"
            first = next(it)
            # The model is still held before its fourth token: this content was sent before the answer was decoded.
            assert first.choices[0].delta.content and not slow.token_gate.is_set()
            assert slow.at_gate.wait(120)
            slow.token_gate.set()
            rest = [c for c in it if c.choices]
        finally:
            slow.arm_after = None
            slow.token_gate.set()
    text = first.choices[0].delta.content + "".join(c.choices[0].delta.content or "" for c in rest)
    assert text == want.text  # the streamed pieces add up to the answer the same seed gives unstreamed
    assert [c.choices[0].finish_reason for c in rest][-1] in ("stop", "length")


def test_concurrent_requests_are_not_mixed(url, toy):
    jobs = [(f"Problem {i}", 100 + i, ["sample", "rc", "power", "majority"][i % 4]) for i in range(12)]
    out: dict[int, tuple[str, int]] = {}

    def one(i: int) -> None:
        q, seed, m = jobs[i]
        r = client(url).chat.completions.create(model=f"{m}/smollm2", messages=[{"role": "user", "content": q}], max_tokens=10,
                                                seed=seed, extra_body={"strop": SMALL[m]})
        out[i] = (r.choices[0].message.content, r.usage.completion_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(out) == len(jobs)
    for i, (q, seed, m) in enumerate(jobs):
        want = local(toy, m, q, seed, 10)
        assert out[i] == (want.text, want.decoded_tokens), (i, m)


def test_bounded_load_loses_and_mixes_nothing(url):
    from strop.server.load import mixed_answers, run_load

    reqs = [{"model": f"{m}/smollm2", "messages": [{"role": "user", "content": f"Load {i}"}], "max_tokens": 12, "seed": i,
             "extra_body": {"strop": SMALL[m]}} for i, m in enumerate(["sample", "rc", "power", "best-of-n", "greedy", "long"])]
    report = run_load(url + "/v1", reqs, clients=8, seconds=3.0)
    s = report.summary()
    assert s["errors"] == 0 and s["requests"] >= 8, (s, report.errors[:3])
    assert mixed_answers(url + "/v1", reqs, report) == {"mixed": [], "rounding": []}  # the toy has no batched rounding
    # Nothing stays pending: eventually, not at this instant. The server is shared by the module's tests, and a request
    # an earlier test gave up on (a stream closed early) counts until the engine reaches its next round, which on a
    # loaded machine can come after this test's own answers (seen once under a training run: pending 1).
    wait_until(lambda: requests.get(url + "/health", timeout=10).json()["pending"] == 0, "the server still holds requests")
    assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"


BAD = [
    (b'{"model": "smollm2", "messages": [', 400, "not valid JSON"),
    (json.dumps({"model": "smollm2", "messages": "hi"}).encode(), 400, "messages"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**12}).encode(), 400, "limit"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}).encode(), 400, "temperature"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "strop": {"method": "magic"}}).encode(), 400, "method"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "strop": {"alpah": 2}}).encode(), 400, "alpah"),
    (json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}).encode(), 404, "not served"),
    (json.dumps({"model": "magic/smollm2", "messages": [{"role": "user", "content": "x"}]}).encode(), 404, "not served"),
    (json.dumps({"model": "rc/smollm2", "messages": [{"role": "user", "content": "x"}], "strop": {"method": "power"}}).encode(), 400, "prefix"),
    (json.dumps({"model": "power/smollm2", "messages": [{"role": "user", "content": "x"}],
                 "strop": {"mcmc_steps": 200, "block_size": 4000}}).encode(), 400, "limit"),
    (json.dumps({"model": "rc/smollm2", "messages": [{"role": "user", "content": "x"}], "stop": ["a"]}).encode(), 400, "stop"),
    (json.dumps({"model": "smollm2", "messages": []}).encode(), 400, "messages"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "role"),
    (json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x" * 20000}]}).encode(), 400, "context"),
    (json.dumps([1, 2, 3]).encode(), 400, ""),
]


@pytest.mark.parametrize("body, status, needle", BAD)
def test_bad_requests_get_a_clear_4xx(url, body, status, needle):
    r = requests.post(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle.lower() in err["message"].lower() and err["type"]


U = [{"role": "user", "content": "hi"}]
# Bodies strop must refuse with a 400 naming the field: invalid Unicode (sent as raw JSON: a lone surrogate escape is
# valid JSON), and fields it does not implement that would otherwise be silently ignored. (endpoint, body, param)
REFUSED = [
    ("chat", '{"model": "smollm2", "messages": [{"role": "user", "content": "hi \\ud800"}]}', "messages.0.content"),
    ("chat", '{"model": "smollm2", "messages": [{"role": "user", "content": "hi \\ud800"}], "stream": true}', "messages.0.content"),
    ("chat", '{"model": "rc/smollm2", "messages": [{"role": "system", "content": "\\udfff"}, {"role": "user", "content": "hi"}]}',
     "messages.0.content"),
    ("chat", '{"model": "smollm2", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udc00x"}]}]}',
     "messages.0.content.0.text"),
    ("chat", '{"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}', "stop.0"),
    ("completions", '{"model": "smollm2", "prompt": "a \\ud834 b"}', "prompt"),
    ("completions", '{"model": "rc/smollm2", "prompt": "\\ud834"}', "prompt"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "logit_bias": {"50": 100}}), "logit_bias"),
    ("chat", json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}),
     "messages.0.content.1.type"),
    ("chat", json.dumps({"model": "smollm2", "messages": [*U, {"role": "tool", "tool_call_id": "c1"}]}), "messages.1.content"),
    ("chat", json.dumps({"model": "smollm2", "messages": [*U, {"role": "tool", "tool_call_id": "c1", "content": None}]}),
     "messages.1.content"),
    ("chat", json.dumps({"model": "smollm2", "messages": [*U, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}), "messages.1.tool_calls"),
    ("chat", json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "hi", "name": "alice"}]}), "messages.0.name"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "tools": [{"type": "function", "function": {"name": "f"}}]}), "tools"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "tool_choice": "required"}), "tool_choice"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "response_format": {"type": "json_object"}}), "response_format"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "frequency_penalty": 0.5}), "frequency_penalty"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "presence_penalty": -1}), "presence_penalty"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "top_k": 5}), "top_k"),
    ("chat", json.dumps({"model": "smollm2", "messages": U, "modalities": ["text", "audio"]}), "modalities"),
    ("completions", json.dumps({"model": "smollm2", "prompt": "a", "suffix": "b"}), "suffix"),
    ("completions", json.dumps({"model": "smollm2", "prompt": "a", "best_of": 3}), "best_of"),
    ("chat", json.dumps({"model": "rc/smollm2", "messages": [*U, {"role": "assistant", "content": "4"}, {"role": "user", "content": "?"}]}),
     "messages"),
]


@pytest.mark.parametrize("endpoint, body, param", REFUSED)
def test_invalid_unicode_and_unimplemented_fields_are_a_400_naming_the_field(url, endpoint, body, param):
    r = requests.post(f"{url}/v1/{'chat/' if endpoint == 'chat' else ''}completions", data=body.encode(),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error", err
    assert ("not valid Unicode" if "\\u" in body else "support") in err["message"], err


def test_no_op_values_of_unimplemented_fields_are_accepted_and_change_nothing(url):
    plain = client(url).chat.completions.create(model="smollm2", messages=U, max_tokens=8, seed=5)
    same = client(url).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]}],
        max_tokens=8, seed=5, logit_bias={}, frequency_penalty=0, presence_penalty=0.0, tools=[], tool_choice="none",
        response_format={"type": "text"}, modalities=["text"], user="u1", metadata={"k": "v"}, store=False,
        extra_body={"top_k": 0, "repetition_penalty": 1.0, "ignore_eos": False})
    assert same.choices[0].message.content == plain.choices[0].message.content


def test_oversized_bodies_and_api_keys(toy):
    with running(toy, max_body_bytes=2000, api_key="sekret") as u:
        big = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x" * 5000}]})
        r = requests.post(u + "/v1/chat/completions", data=big, headers={"Authorization": "Bearer sekret", "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]

        def chunks():
            yield big.encode()[:1500]
            yield big.encode()[1500:]

        r = requests.post(u + "/v1/chat/completions", data=chunks(), headers={"Authorization": "Bearer sekret", "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 413  # no Content-Length: counted as it arrives
        with pytest.raises(openai.AuthenticationError):
            client(u, api_key="wrong").models.list()
        assert client(u, api_key="sekret").chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "a"}], max_tokens=3).choices
        assert requests.get(u + "/health", timeout=10).status_code == 200  # health needs no key


def test_queue_limit_is_429_time_limit_is_503_and_the_server_stays_up(toy):
    with running(toy, max_pending=1, timeout_s=1.0) as u:
        toy.calls, toy.hold_after = 0, 0
        toy.held.clear()
        toy.gate.clear()
        try:
            held: dict = {}
            t = threading.Thread(target=lambda: held.setdefault("r", requests.post(
                u + "/v1/chat/completions", json={"model": "smollm2", "messages": [{"role": "user", "content": "a"}], "max_tokens": 3}, timeout=30)))
            t.start()
            assert toy.held.wait(120), "the first request never reached the model"
            with pytest.raises(openai.RateLimitError):
                client(u).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "b"}], max_tokens=3)
            t.join(120)
            assert held["r"].status_code == 503 and "time limit" in held["r"].json()["error"]["message"]
        finally:
            toy.hold_after = None
            toy.gate.set()
        # The held request is released by its gate.
        wait_until(lambda: not requests.get(u + "/health", timeout=30).json()["pending"], "the held request never finished")
        r = client(u).chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "c"}], max_tokens=3, seed=1)
        assert r.choices[0].message.content == local(toy, "sample", "c", 1, 3).text


def test_a_timed_out_rc_request_stops_at_its_next_turn(toy):
    with running(toy, timeout_s=0.5) as u:
        toy.calls, toy.hold_after = 0, 1  # turn 1's reasoning runs; its summary waits at the gate
        toy.gate.clear()
        try:
            r = requests.post(u + "/v1/chat/completions", timeout=30, json={
                "model": "rc/smollm2", "messages": [{"role": "user", "content": "Q?"}],
                "strop": {"turns": 5, "reasoning_tokens": 6, "summary_tokens": 5}})
            assert r.status_code == 503 and r.json()["error"]["code"] == "timeout"
        finally:
            toy.gate.set()
            toy.hold_after = None
        wait_until(lambda: not requests.get(u + "/health", timeout=30).json()["pending"], "the held request never finished")
        assert toy.calls == 2  # the held summary finished; turn 2 never started


def test_an_error_nobody_awaits_any_more_is_not_logged_as_never_retrieved(toy):
    """A request that timed out (or lost its client) stops awaiting its future; the error it ends with later must not
    reach asyncio's "Future exception was never retrieved" log, which formats a traceback on the server's thread."""
    import asyncio
    import gc

    from strop.server.bridge import ServerEngine
    from strop.server.plan import ServeConfig

    def failing():
        raise ValueError("the machine failed")
        yield  # a step machine: a generator

    async def give_up() -> list[str]:
        logged: list[str] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: logged.append(ctx["message"]))
        fut, cancel = bridge.submit([failing()])
        await asyncio.wait([fut], timeout=120)  # waits without reading the result, as a caller that gave up
        assert fut.done()
        await asyncio.sleep(0)  # the bridge's own bookkeeping (release) runs
        del fut, cancel
        gc.collect()
        return logged

    bridge = ServerEngine(toy, ServeConfig())
    try:
        assert asyncio.run(give_up()) == []
    finally:
        bridge.engine.stop()
        bridge.thread.join(60)


# ----------------------------------------------------------------- fuzzing


def test_fuzzing_the_openapi_schema_finds_no_server_error(toy):
    """Schemathesis generates requests from the server's own OpenAPI document (valid and invalid); no answer may be 5xx.

    Driven through hypothesis directly: schemathesis' pytest plugin does not
    load under this pytest.
    """
    # schemathesis.specs.openapi.schemas: what from_url would import lazily, imported before the server's thread
    # runs. pytest rewrites schemathesis' modules (a pytest plugin) through ast.parse, and CPython 3.11 keeps one
    # AST-construction depth counter per process, so a traceback formatted on the server's thread at the same
    # moment (3.11 parses the source line for its carets) can fail the import with "SystemError: AST constructor
    # recursion depth mismatch" (seen in CI).
    import hypothesis
    import schemathesis
    import schemathesis.specs.openapi.schemas
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error

    with running(toy, max_tokens=64, max_request_tokens=4096, timeout_s=60) as u:
        schema = schemathesis.openapi.from_url(u + "/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"}
        statuses: list[tuple[str, int]] = []
        # Random model names would all be 404s: most cases get one of the served ids, so the methods run too.
        ids = st.sampled_from(["smollm2", "sample/smollm2", "greedy/smollm2", "power/smollm2", "rc/smollm2", "majority/smollm2",
                               "best-of-n/smollm2", "self-refine/smollm2", "long/smollm2", "other"])
        # What the schema's strategies missed: lone surrogates (valid JSON escapes) and control-token text, put into
        # message contents, the prompt or a stop string of some cases.
        hostile = st.lists(st.sampled_from(["\ud800", "\udfff", "\udc80", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "system\n",
                                            "\n", "a", " ", "\u00e9", "\U0001f600"]), min_size=1, max_size=8).map("".join)

        def served(drawn):
            case, model, text, pick = drawn
            body = case.body
            if isinstance(body, dict) and "model" in body:
                body["model"] = model
            if isinstance(body, dict) and text is not None:
                messages = [m for m in body.get("messages") or [] if isinstance(m, dict)] if isinstance(body.get("messages"), list) else []
                if messages:
                    messages[pick % len(messages)]["content"] = text
                elif "prompt" in body:
                    body["prompt"] = text
                if pick % 3 == 0:
                    body["stop"] = [text]
            return case

        for op in operations:
            @hypothesis.given(case=st.tuples(op.as_strategy(), ids, st.none() | hostile, st.integers(0, 5)).map(served))
            @hypothesis.settings(max_examples=100 if op.method.upper() == "POST" else 5, deadline=None, database=None,
                                 suppress_health_check=list(hypothesis.HealthCheck))
            def check(case) -> None:
                response = case.call(timeout=60)
                statuses.append((case.path, response.status_code))
                case.validate_response(response, checks=[not_a_server_error])
                if response.status_code == 400 and response.json()["error"].get("code") == "invalid_unicode":
                    statuses.append((case.path, "invalid_unicode"))

            check()
        assert requests.get(u + "/health", timeout=10).json()["status"] == "ok"
    # Both accepted and refused requests were generated for the method endpoints.
    for path in ("/v1/chat/completions", "/v1/completions"):
        codes = [code for p, code in statuses if p == path]
        assert 200 in codes and any(isinstance(c, int) and 400 <= c < 500 for c in codes), (path, sorted(set(map(str, codes))))
        assert "invalid_unicode" in codes, path  # the hostile strategy reached the endpoint


# -------------------------------------------------------- the real command
@pytest.mark.slow
def test_strop_serve_on_the_embedded_model_and_sigterm(tmp_path):
    port = free_port()
    # A generous grace period: on a loaded CI machine the RC request below can take tens of seconds.
    marker, release = tmp_path / "in-flight", tmp_path / "release"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STROP_PLUGINS": "blocking_plugin", "STROP_TEST_MARKER": str(marker),
           "STROP_TEST_RELEASE": str(release), "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "strop", "serve", "--port", str(port), "--graceful-timeout", "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "strop serve did not come up"
            time.sleep(0.2)
        c = client(f"http://127.0.0.1:{port}")
        r = c.chat.completions.create(model="rc/smollm2", messages=[{"role": "user", "content": "What is 2 + 3?"}], seed=0,
                                      extra_body={"strop": {"turns": 2, "reasoning_tokens": 24, "summary_tokens": 16}})
        turns = r.strop["choices"][0]["stats"]["turns"]
        assert len(turns) == 2 and r.choices[0].message.content == turns[-1]["reasoning"]
        assert r.usage.completion_tokens == sum(t["reasoning_tokens"] + t["summary_tokens"] for t in turns)
        # SIGTERM during a request, at a known point: the plugin's method (tests/blocking_plugin.py) waits until the
        # test releases it. The test signals while it waits, sees the server stop accepting connections (shutdown
        # has begun), then releases it: the request finishes, then the server exits cleanly.
        done: dict = {}
        def request() -> None:
            try:
                done["r"] = c.chat.completions.create(model="greedy-after-release/smollm2", seed=1, max_tokens=16,
                                                      messages=[{"role": "user", "content": "Count to ten."}])
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                done["error"] = e

        t = threading.Thread(target=request)
        t.start()
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert t.is_alive() and time.monotonic() < deadline, done
            time.sleep(0.01)
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["pending"] == 1
        proc.send_signal(signal.SIGTERM)
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=30)
            except requests.ConnectionError:
                break  # no longer listening: the shutdown is under way with the request in flight
            assert time.monotonic() < deadline, "the server kept accepting connections after SIGTERM"
            time.sleep(0.05)
        assert t.is_alive() and proc.poll() is None  # still waiting for the request, which is still waiting for us
        release.touch()
        t.join(300)
        assert "error" not in done, done
        assert done["r"].choices[0].message.content
        # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM.
        assert proc.wait(60) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


# One half written five ways (0.14 each) against one wrong answer written one way (0.30).
HALF_FORMS = ["\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{\\frac{1}{2}}", "\\boxed{\\dfrac{1}{2}}", "\\boxed{2/4}"]


class AnswerToy(ToyBackend):
    """Answers with one boxed value, then stops."""

    def __init__(self) -> None:
        vocab = list(string.printable) + HALF_FORMS + ["\\boxed{3}", "<eos>"]
        answers = list(range(len(string.printable), len(vocab) - 1))

        def logits(ctx: tuple[int, ...]) -> np.ndarray:
            row = np.full(len(vocab), -np.inf)
            if ctx[-1] in answers:
                row[-1] = 0.0
            else:
                row[answers] = np.log([0.14] * len(HALF_FORMS) + [0.30])
            return row

        super().__init__(vocab, logits, eos="<eos>", context_length=4096)


def test_majority_votes_by_equivalence_unless_the_request_asks_for_string():
    toy = AnswerToy()
    with running(toy, max_tokens=64) as u:
        c = client(u)

        def ask(**strop):
            r = c.chat.completions.create(model="majority/smollm2", messages=[{"role": "user", "content": "What is half of 1?"}],
                                          max_tokens=4, seed=3, extra_body={"strop": {"n": 64, **strop}})
            return r.choices[0].message.content, r.strop["choices"][0]

        (text, default), (_, named), (string_text, by_string) = ask(), ask(vote="equivalence"), ask(vote="string")
        bad = requests.post(u + "/v1/chat/completions", timeout=30, json={
            "model": "majority/smollm2", "messages": [{"role": "user", "content": "x"}], "strop": {"vote": "mode"}})
    assert (default["answer"], default["stats"]["votes"]) == (named["answer"], named["stats"]["votes"])
    assert default["config"]["vote"] == named["config"]["vote"] == "equivalence" and by_string["config"]["vote"] == "string"
    # The same 64 samples, voted two ways: the five forms of one half together outvote "3"; one by one, none does.
    assert sum(default["stats"]["votes"].values()) == sum(by_string["stats"]["votes"].values()) == 64
    assert text in HALF_FORMS and default["stats"]["votes"][default["answer"]] > 32
    assert string_text == "\\boxed{3}" and by_string["answer"] == "3" and len(by_string["stats"]["votes"]) == 6
    for vote, got in (("equivalence", default), ("string", by_string)):
        kwargs = method_settings("majority", temperature=1.0, top_p=1.0, max_tokens=4, n=64, vote=vote)
        want = get_method("majority")(toy, toy.chat_prompt([{"role": "user", "content": "What is half of 1?"}]),
                                      np.random.default_rng([3, 0]), **kwargs)
        assert got["answer"] == want.answer and got["stats"]["votes"] == want.stats["votes"]
    assert bad.status_code == 400 and "vote" in bad.json()["error"]["message"]


# ------------------------------------------------ conversations for the one-question methods
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Let x be 3."},
        {"role": "assistant", "content": "OK, x = 3."}, {"role": "user", "content": "What is x + 1?"}]


@pytest.mark.parametrize("method", ["rc", "self-refine", "long"])
def test_a_conversation_with_earlier_turns_is_refused_by_default_with_the_reason_and_the_way_out(url, method):
    r = requests.post(url + "/v1/chat/completions", json={"model": f"{method}/smollm2", "messages": CHAT, "strop": SMALL[method]},
                      timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "messages" and err["code"] == "conversation_not_supported"
    assert "2 earlier user/assistant message(s)" in err["message"] and "strop.conversation" in err["message"]
    ends_with_reply = [*CHAT[:3]]
    r = requests.post(url + "/v1/chat/completions", json={"model": f"{method}/smollm2", "messages": ends_with_reply,
                                                          "strop": {**SMALL[method], "conversation": "context"}}, timeout=30)
    assert r.status_code == 400 and "last message must be the user's question" in r.json()["error"]["message"]


@pytest.mark.parametrize("method", ["rc", "self-refine", "long"])
def test_with_conversation_context_the_earlier_turns_become_the_problem(url, toy, method):
    r = client(url).chat.completions.create(model=f"{method}/smollm2", messages=CHAT, max_tokens=16, seed=4,
                                            extra_body={"strop": {**SMALL[method], "conversation": "context"}})
    problem = ("Earlier in this conversation:\n\nUser: Let x be 3.\n\nAssistant: OK, x = 3.\n\nQuestion: What is x + 1?")
    kwargs = method_settings(method, temperature=1.0, top_p=1.0, max_tokens=16, **SMALL[method])
    want = get_method(method)(toy, problem, np.random.default_rng([4, 0]), system="Be brief.", **kwargs)
    assert r.choices[0].message.content == want.text
    assert r.usage.completion_tokens == want.decoded_tokens


def test_serve_conversation_context_and_rc_prompts_are_server_options(toy):
    from strop.methods.rc import RCConfig
    from strop.methods.rc_prompts import RCPrompts

    mine = RCPrompts(reason="Solve: {problem}", reason_from_summary="Again: {problem} / {summary}")
    with running(toy, max_tokens=512, conversation="context", rc_prompts=mine) as u:
        r = client(u).chat.completions.create(model="rc/smollm2", messages=CHAT[1:], seed=1, extra_body={"strop": SMALL["rc"]})
    cfg = RCConfig(turns=2, reasoning_tokens=6, summary_tokens=5, prompts=mine)
    problem = "Earlier in this conversation:\n\nUser: Let x be 3.\n\nAssistant: OK, x = 3.\n\nQuestion: What is x + 1?"
    want = get_method("rc")(toy, problem, np.random.default_rng([1, 0]), config=cfg)
    assert r.choices[0].message.content == want.text
    assert r.strop["choices"][0]["config"]["prompts"]["reason"] == "Solve: {problem}"


def test_usage_counts_a_thinking_models_hidden_reasoning_tokens():
    from strop.backends.scripted import ScriptedBackend

    thinker = ScriptedBackend(lambda p: "<think>6 or 7?</think>It is \\boxed{7}")
    with running(thinker, max_tokens=512) as u:
        r = client(u).chat.completions.create(model="majority/smollm2", messages=[{"role": "user", "content": "Q?"}], seed=0,
                                              max_tokens=64, extra_body={"strop": {"n": 3}})
        rc = client(u).chat.completions.create(model="rc/smollm2", messages=[{"role": "user", "content": "Q?"}], seed=0,
                                               extra_body={"strop": {"turns": 2, "reasoning_tokens": 64, "summary_tokens": 64}})
    hidden = len("<think>6 or 7?</think>")  # one token per character
    assert r.usage.completion_tokens_details.reasoning_tokens == 3 * hidden
    assert r.strop["choices"][0]["answer"] == "7"
    assert rc.usage.completion_tokens_details.reasoning_tokens == 4 * hidden  # two reasoning turns and two summaries
    assert rc.strop["choices"][0]["stats"]["turns"][0]["summary"] == "It is \\boxed{7}"
