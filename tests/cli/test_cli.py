"""The ``strop`` command as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def strop(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strop", *args], capture_output=True, text=True, timeout=timeout, input=stdin,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})


def test_solve_prints_an_answer():
    r = strop("solve", "What is 17 + 25?", "--max-tokens", "24")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "Traceback" not in r.stderr


def test_solve_json_has_tokens_logprobs_and_timing():
    r = strop("solve", "What is 2 + 3?", "--method", "majority", "-n", "3", "--max-tokens", "16", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "majority" and len(out["candidates"]) == 3 and out["model"].endswith(".gguf")
    c = out["candidates"][0]
    assert len(c["token_ids"]) == len(c["base_logprobs"]) == c["completion_tokens"] and c["elapsed_s"] > 0
    assert out["decoded_tokens"] == sum(x["completion_tokens"] for x in out["candidates"])


def test_solve_majority_takes_the_vote_mode():
    r = strop("solve", "What is 2 + 3?", "--method", "majority", "-n", "2", "--max-tokens", "8", "--vote", "string", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["config"]["vote"] == "string" and sum(out["stats"]["votes"].values()) <= 2


def test_same_seed_same_output():
    a = strop("solve", "Name a fruit.", "--method", "sample", "--seed", "7", "--max-tokens", "16")
    b = strop("solve", "Name a fruit.", "--method", "sample", "--seed", "7", "--max-tokens", "16")
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


def test_question_from_stdin():
    r = strop("solve", "-", "--max-tokens", "8", stdin="What is 1 + 1?")
    assert r.returncode == 0 and r.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--model", "/does/not/exist.gguf"], "model file not found"),
        (["--temperature", "-1"], "temperature must be"),
        (["--top-p", "0"], "top_p must be"),
        (["--n-ctx", "64", "--max-tokens", "4"], "context holds"),
        (["--backend", "openai", "--model", "x", "--base-url", "SERVER"], "cannot reach the server"),
        (["--base-url", "http://127.0.0.1:1/v1"], "apply only to --backend openai"),
        (["--method", "power", "--cut", "[bold]x[/bold]"], "cut must be one of"),  # brackets reach the terminal verbatim
        (["--method", "majority", "--vote", "mode"], "vote must be one of equivalence, string, got 'mode'"),
        (["--kv-layout", "paged"], "kv_layout must be one of shared, per-sequence"),
        (["--backend", "hf", "--kv-layout", "shared"], "--kv-layout applies only to --backend llamacpp"),
    ],
)
def test_bad_input_is_one_clear_line_and_nonzero_exit(args, needle, tmp_path):
    args = [a.replace("SERVER", f"http://127.0.0.1:{_free_port()}/v1") for a in args]
    question = "word " * 200 if "--n-ctx" in args else "hi"
    r = strop("solve", question, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["solve", "x", "--samplr", "smc"], "No such option: --samplr"),
        (["solve", "x", "--alpha", "abc"], "Invalid value for '--alpha'"),
        (["solve"], "Missing argument"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["eval", "--task", "gsm8k"], "Missing option '--out'"),
    ],
)
def test_usage_errors_are_clicks_message_without_a_traceback(args, needle):
    r = strop(*args, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and needle in r.stderr and "Usage: strop" in r.stderr, r.stderr


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    r = strop("solve", "hi", "--model", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr


def test_help_lists_every_option():
    r = strop("solve", "--help")
    assert r.returncode == 0
    for opt in ("--method", "--backend", "--model", "--temperature", "--top-p", "--top-k", "--seed", "--json", "-n"):
        assert opt in r.stdout


def test_solve_power_reports_chain_statistics():
    r = strop("solve", "2 + 3 = ?", "--method", "power", "--block-size", "8", "--mcmc-steps", "2", "--max-tokens", "16",
              "--cut", "entropy", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)["stats"]
    assert st["proposals"] == 2 * st["blocks"] and len(st["accepted_per_block"]) == st["blocks"]
    assert st["decoded_tokens"] > 0 and st["elapsed_s"] > 0


def test_power_bad_cut_is_a_clear_error():
    r = strop("solve", "hi", "--method", "power", "--cut", "middle")
    assert r.returncode == 2 and "cut must be one of" in r.stderr and "Traceback" not in r.stderr


def test_power_target_option_reaches_solve_and_eval(tmp_path):
    for cmd in (["solve", "2 + 3 = ?"], ["eval", "--task", "arithmetic", "--limit", "1", "--out", str(tmp_path / "run")]):
        r = strop(*cmd, "--method", "power", "--target", "topk")  # refused before any model loads: topk needs --top-k
        assert r.returncode == 2 and "top_k" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = strop("solve", "2 + 3 = ?", "--method", "power", "--target", "topk", "--top-k", "50", "--block-size", "8",
              "--mcmc-steps", "1", "--max-tokens", "8", "--cut", "entropy", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["config"]["target"] == "topk" and out["config"]["top_k"] == 50
    # Entropies of the top-50 renormalised base model: never above log 50 (the full vocabulary's can be).
    assert max(out["candidates"][0]["entropies"]) <= math.log(50) + 1e-6


def test_integral_check_and_variant_validity_from_the_command_line(tmp_path):
    r = strop("eval", "--task", "arithmetic", "--verifier", "ladder", "--limit", "1", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "one check" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = strop("eval", "--task", "integrals", "--verifier", "ttrl", "--method", "greedy", "--limit", "1", "--max-tokens", "16",
              "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "run" / "records.jsonl").read_text().splitlines()[0])
    assert rec["verifier"] == "ttrl" and json.loads((tmp_path / "run" / "run.json").read_text())["verifier"] == "ttrl"
    tree = tmp_path / "tree.jsonl"
    r = strop("ladder", "build", "--task", "integrals", "--limit", "1", "--depth", "1", "--validity", "numeric", "--out", str(tree))
    assert r.returncode == 0, r.stderr
    assert json.loads(tree.with_name("tree.jsonl.expanded").read_text().splitlines()[0])["spec"]["validity"] == "numeric"


def test_bench_power_mixing_quick(tmp_path):
    r = strop("bench", "power-mixing", "--quick", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "power_mixing.json").read_text())
    uni = {row["T"]: row["steps_to_tv"] for row in data["over_T"] if row["cut"] == "uniform"}
    ent = {row["T"]: row["steps_to_tv"] for row in data["over_T"] if row["cut"] == "entropy"}
    assert uni[16] < uni[32] < uni[64] and ent[16] == ent[64] < uni[16]
    assert (tmp_path / "power_mixing.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args,needle",
    [
        (["eval", "--task", "nope", "--out", "OUT"], "unknown task 'nope'"),
        (["eval", "--task", "gsm8k", "--data", "/no/such.jsonl", "--out", "OUT"], "data file not found"),
        (["eval", "--task", "jsonl", "--out", "OUT"], "task jsonl needs a data file (--data FILE"),
        (["eval", "--task", "arithmetic", "--samples", "0", "--out", "OUT"], "--samples, --limit and --batch-size must be >= 1"),
        (["eval", "--task", "arithmetic", "--method", "rc", "--turns", "0", "--out", "OUT"], "turns must be"),
        (["eval", "--task", "arithmetic", "--vote", "mode", "--out", "OUT"], "vote must be one of"),  # maj@k votes whatever the method
        (["report", "NOT_A_RUN"], "has no metrics.json"),
    ],
)
def test_eval_and_report_bad_input_is_one_clear_line(args, needle, tmp_path):
    r = strop(*[a.replace("OUT", str(tmp_path / "run")).replace("NOT_A_RUN", str(tmp_path)) for a in args])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
