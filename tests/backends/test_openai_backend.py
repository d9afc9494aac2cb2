"""The openai backend against a real OpenAI-compatible server on loopback.

The server is llama-cpp-python's own (``python -m llama_cpp.server``) over the
embedded model, started by the test; a second tiny server answers garbage.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from loopback import client, free_port, running
from strop.backends import SamplingParams, load_backend
from strop.errors import BackendError
from strop.models import embedded_model_path

pytestmark = pytest.mark.slow

# The server decodes with llama.cpp's own kernels and its own prefill batching
# (the same Q4_1 weights as the llamacpp backend); see test_llamacpp for the
# batched-vs-sequential noise this bounds.
SERVER_VS_LOCAL_MAX_TOL = 0.5
SERVER_VS_LOCAL_MEAN_TOL = 0.12


@pytest.fixture(scope="module")
def server_url():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("llama_cpp.server exited at start")
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 120 s")
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def remote(server_url):
    b = load_backend("openai", base_url=server_url)
    yield b
    b.close()


def test_model_name_comes_from_the_server(remote):
    assert remote.model_id == "smollm2"


def test_result_shape(remote):
    p = remote.chat_prompt("What is 17 + 25?")
    g = remote.generate(p, SamplingParams(max_tokens=12, return_entropy=True), np.random.default_rng(0))
    n = g.completion_tokens
    assert 1 <= n <= 12 and g.base_logprobs.shape == g.proposal_logprobs.shape == g.entropies.shape == (n,)
    assert np.all(g.base_logprobs <= 0) and "entropy_topk" in g.approximations
    assert g.finish_reason in ("eos", "length")
    assert remote.detokenize(g.token_ids).startswith(g.text)


def test_greedy_tokens_equal_the_local_backend(remote, llama):
    # llama-cpp-python 0.3.36's server answers a repeated identical prompt from a broken
    # prefix-reuse path (garbage tokens, seen with its plain client too), so each prompt is
    # sent once here; strop's side is checked by exact agreement with local greedy decoding.
    p = llama.chat_prompt("Name a color.")
    greedy = SamplingParams(max_tokens=10, temperature=0)
    assert remote.generate(p, greedy, np.random.default_rng(0)).token_ids == llama.generate(p, greedy, np.random.default_rng(0)).token_ids


def test_logprobs_agree_with_the_local_llamacpp_backend(remote, llama):
    p = llama.chat_prompt("Name a prime number.")
    g = remote.generate(p, SamplingParams(max_tokens=24), np.random.default_rng(1))
    s = llama.score(p, g.token_ids)
    d = np.abs(s.logprobs - g.base_logprobs)
    assert d.max() < SERVER_VS_LOCAL_MAX_TOL and d.mean() < SERVER_VS_LOCAL_MEAN_TOL
    s2 = remote.score(p, g.token_ids)
    assert np.abs(s2.logprobs - s.logprobs).max() < SERVER_VS_LOCAL_MAX_TOL


def test_server_down_is_a_clear_error():
    b = load_backend("openai", model="x", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with pytest.raises(BackendError, match="cannot reach the server"):
        b.generate(b.tokenize("hi"), SamplingParams(max_tokens=2), np.random.default_rng(0))


class _Garbage(http.server.BaseHTTPRequestHandler):
    bodies = [b"this is not json", b'{"choices": []}', b'{"choices": [{"text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": ["high"]}}]}']

    def do_POST(self):
        body = self.bodies[int(self.path.endswith("completions")) and self.server.count % len(self.bodies)]
        self.server.count += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_garbage_answers_are_clear_errors():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    srv.count = 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = load_backend("openai", model="x", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", timeout=5)
        for _ in range(3):
            with pytest.raises(BackendError, match="server"):
                b.generate(b.tokenize("hi"), SamplingParams(max_tokens=2), np.random.default_rng(0))
    finally:
        srv.shutdown()


def test_smc_power_sampling_runs_on_the_server_with_its_approximations_named(remote):
    # The proposal at temperature 1/alpha is not the base model: the server's top log-probs stand in for its
    # proposal log-probs, and the result says so.
    from strop.methods import method_settings, run_method

    r = run_method("power", remote, "What is 3 + 4?", np.random.default_rng(0),
                   **method_settings("power", sampler="smc", particles=3, smc_block=6, max_tokens=12, kappa=1.0))
    assert len(r.candidates) == 3 and r.config["sampler"] == "smc"
    assert "proposal_logprobs_topk" in r.stats["approximations"]
    assert all("proposal_logprobs_topk" in g.approximations for g in r.candidates)
    assert all(np.all(np.isfinite(g.proposal_logprobs)) for g in r.candidates)  # an EOS's too (fetched by an echo request)
    assert r.stats["decoded_tokens"] >= max(g.completion_tokens for g in r.candidates) >= 1
    assert r.stats["blocks"] == len(r.stats["ess_per_block"]) >= 1


def test_strop_serve_in_front_of_an_upstream_server(remote):
    """strop serve over the openai backend: RC runs on the upstream server, answers in OpenAI shape; upstream down is a 503."""
    import openai

    with running(remote) as url:
        r = client(url).chat.completions.create(model="rc/smollm2", messages=[{"role": "user", "content": "What is 4 + 4?"}],
                                                seed=3, extra_body={"strop": {"turns": 2, "reasoning_tokens": 24, "summary_tokens": 16}})
        turns = r.strop["choices"][0]["stats"]["turns"]
        assert len(turns) == 2 and r.choices[0].message.content == turns[-1]["reasoning"]
        assert r.usage.completion_tokens == sum(t["reasoning_tokens"] + t["summary_tokens"] for t in turns)
    down = load_backend("openai", model="x", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with running(down, model_name="x") as url:
        with pytest.raises(openai.InternalServerError) as e:
            client(url).chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert e.value.status_code == 503 and "backend failed" in str(e.value)


class _Concurrent(http.server.BaseHTTPRequestHandler):
    """A completions endpoint that answers only once ``barrier`` parties are in flight at the same time."""

    barrier: threading.Barrier

    def do_POST(self):
        import json as _json

        body = _json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            self.barrier.wait()  # every request of a concurrent batch meets here; one at a time, they time out
            text = "a"
        except threading.BrokenBarrierError:
            text = "b"
        self.answer(body, text)

    def answer(self, body: dict, text: str) -> None:
        """A one-token completion ``text`` with its log-prob."""
        import json as _json

        out = _json.dumps({"id": "x", "object": "text_completion", "created": 0, "model": body["model"], "choices": [
            {"index": 0, "text": text, "finish_reason": "length", "logprobs": {"tokens": [text], "token_logprobs": [-0.5],
                                                                              "top_logprobs": None, "text_offset": [0]}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("concurrency,want", [(4, "a"), (1, "b")])
def test_generate_many_keeps_concurrency_requests_in_flight(concurrency, want):
    """Four requests meet at the server's barrier only if the backend sends them together (a batching server's input)."""
    from strop.backends.base import GenRequest

    handler = type("H", (_Concurrent,), {"barrier": threading.Barrier(4, timeout=60 if concurrency > 1 else 2)})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = load_backend("openai", model="m", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", timeout=120,
                         concurrency=concurrency)
        reqs = [GenRequest(b.tokenize(f"q{i}"), SamplingParams(max_tokens=1), np.random.default_rng(i)) for i in range(4)]
        gens = b.generate_many(reqs)
        assert [g.text for g in gens] == [want] * 4  # all four met at the barrier, or (one at a time) none did
        b.close()
    finally:
        srv.shutdown()


class _Refill(_Concurrent):
    """Prompt "q0" answers only after "q2" has arrived: with two in flight, q2 is sent only when q1's slot is refilled."""

    arrived: threading.Event

    def do_POST(self):
        import json as _json

        body = _json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["prompt"] if isinstance(body["prompt"], str) else ""
        if "q2" in prompt:
            self.arrived.set()
        self.answer(body, ("a" if self.arrived.wait(60) else "b") if "q0" in prompt else "c")


def test_a_new_request_goes_out_as_soon_as_one_answers():
    """No rounds: while q0 is still being answered, q1's answer frees its place for q2 (a server's slots stay full)."""
    from strop.backends.base import GenRequest

    handler = type("H", (_Refill,), {"arrived": threading.Event()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = load_backend("openai", model="m", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", timeout=120,
                         concurrency=2)
        reqs = [(i, GenRequest(b.tokenize(f"q{i}"), SamplingParams(max_tokens=1), np.random.default_rng(i))) for i in range(3)]
        rest, got = reqs[2:], {}

        def more(free):
            nonlocal rest
            take, rest = rest[:free], rest[free:]
            return take

        b.generate_stream(reqs[:2], more, lambda i, g: got.__setitem__(i, g.text), max_rows=2)
        assert got == {0: "a", 1: "c", 2: "c"}  # "b": q2 waited for q0, as rounds of generate_many do
        b.close()
    finally:
        srv.shutdown()


def test_llama_server_log_probs_in_the_chat_shape_are_read_by_token_id():
    """llama-server answers /v1/completions log-probs as ``content`` entries with ids; a byte-fallback piece's text
    (' 體' here) would not map back to one id, its id does."""
    from strop.backends.openai_compat import _from_content

    content = [{"id": 216, "token": " ", "logprob": -0.1, "top_logprobs": [{"id": 216, "token": " ", "logprob": -0.1},
                                                                          {"id": 1792, "token": " x", "logprob": -4.3}]},
               {"id": 40000, "token": " 體", "logprob": -2.0, "top_logprobs": []}]
    tokens, lps, tops = _from_content(content)
    assert tokens == ["token_id:216", "token_id:40000"] and lps == [-0.1, -2.0]
    assert tops == [{"token_id:216": -0.1, "token_id:1792": -4.3}, None]

