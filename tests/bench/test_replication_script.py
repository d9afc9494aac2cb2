"""bench/replication.py on the embedded model, shrunk to a smoke run: every arm is a resumable strop eval folder,
and the report pairs the arms on the same problems."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from locations import (
    ROOT,
    SHARED,
)
from strop.models import embedded_model_path

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "replication.py"), *args], capture_output=True, text=True, timeout=600)


def test_smoke_run_resumes_and_reports_paired_tests(tmp_path):
    runs = tmp_path / "runs"
    arms = ["--suite", "gsm8k", "--arm", "greedy", "--arm", "power", "--arm", "temp1"]
    smoke = ["--model", str(embedded_model_path()), *arms, "--samples", "2", "--limit", "3", "--max-tokens", "12", "--out", str(runs)]
    r = bench("run", *smoke)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("+ strop eval --task gsm8k") == 3 and "--max-tokens 12" in r.stdout
    folders = {p.name: p for p in runs.iterdir()}
    assert set(folders) == {"gsm8k-greedy", "gsm8k-power", "gsm8k-temp1"}
    recs = {name: [json.loads(x) for x in (p / "records.jsonl").read_text().splitlines()] for name, p in folders.items()}
    assert [len(recs[n]) for n in ("gsm8k-greedy", "gsm8k-power", "gsm8k-temp1")] == [3, 3, 6]
    assert all(r["finish_reason"] in ("eos", "length", "stop") for rs in recs.values() for r in rs)
    assert json.loads((folders["gsm8k-power"] / "run.json").read_text())["method_config"]["config"]["block_size"] == 128

    again = bench("run", *smoke)  # a finished run resumes with nothing to do
    assert again.returncode == 0, again.stderr[-3000:]
    assert [len((p / "records.jsonl").read_text().splitlines()) for p in folders.values()] == [len(recs[n]) for n in folders]

    md, png = tmp_path / "tables.md", tmp_path / "acc.png"
    rep = bench("report", "--out", str(runs), "--md", str(md), "--plot", str(png))
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = md.read_text()
    assert "| greedy | 3 |" in text and "| maj@2 (temperature 1, equivalence) | 3 |" in text
    assert "| greedy | power (MH, alpha 4, B 128, N 2) | 3 |" in text and "tokens matched" in text
    assert png.stat().st_size > 1000
    summary = json.loads((runs / "summary.json").read_text())
    paired = summary["suites"]["gsm8k"]["paired"]
    assert {(t["a"], t["b"]) for t in paired} >= {("greedy", "power"), ("greedy", "temp1"), ("power", "temp1")}
    assert all(t["n"] == 3 and t["only_a"] + t["only_b"] <= 3 and 0 < t["p"] <= 1 for t in paired)
    assert [t["b"][:4] for t in paired if t.get("token_matched")] == ["maj@", "best"]
    assert "| best-of-2 (temperature 1, mean log-likelihood) | 3 |" in text and "| any of 2 right (temperature 1; oracle" in text
    by_k = {m["k"]: m for m in summary["suites"]["gsm8k"]["majority"]}
    assert by_k[2]["correct"] <= by_k[2]["any_right"] and by_k[2]["best_of"] <= by_k[2]["any_right"]


def test_turn_dynamics_count_lost_and_gained_verdicts_and_carried_answers(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("replication", ROOT / "bench" / "replication.py")
    rep = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "replication", rep)  # its dataclasses look their module up
    spec.loader.exec_module(rep)
    turn = lambda answer, correct, summary: {"answer": answer, "correct": correct, "summary": summary}  # noqa: E731
    recs = [
        {"turns": [turn("12", True, "so far: x = 12"), turn("13", False, "x is 13"), turn("12", True, "no number")]},
        {"turns": [turn(None, False, "partial"), turn("\\frac{1}{2}", True, "got \\frac{1}{ 2}")]},
    ]
    d = rep._turn_dynamics(recs)
    assert [(x["turn"], x["n"], x["lost"], x["gained"], x["no_answer"]) for x in d] == [(1, 2, 0, 0, 1), (2, 2, 1, 1, 0), (3, 1, 0, 1, 0)]
    assert [(x["summary_has_answer"], x["answered"]) for x in d] == [(1, 1), (2, 2), (0, 1)]
    # Cut parts are counted where the record holds the part's tokens (records before they were kept do not).
    recs[0]["turns"][0] |= {"reasoning_tokens": 512, "summary_tokens": 40}
    recs[1]["turns"][0] |= {"reasoning_tokens": 300, "summary_tokens": 128}
    recs[1]["turns"][1] |= {"reasoning_tokens": 511, "summary_tokens": 127}
    d = rep._turn_dynamics(recs, hr=512, hs=128)
    assert [(x["counted"], x["reasoning_cut"], x["summary_cut"]) for x in d] == [(2, 1, 1), (1, 0, 0), (0, 0, 0)]


def test_report_pairs_rcs_last_turn_with_its_first(tmp_path):
    # RC's claim is a rise over turns: the report tests the last turn against the first on the same problems.
    folder = tmp_path / "runs" / "rc-rc"
    folder.mkdir(parents=True)
    rights = {"a": (False, True), "b": (False, True), "c": (True, False), "d": (True, True), "e": (False, False)}
    recs = [{"id": i, "sample": 0, "correct": last, "answer": "1", "tokens": 20, "seconds": 1.0, "finish_reason": "eos", "output": "",
             "turns": [{"turn": t + 1, "answer": "1", "correct": ok, "cumulative_tokens": 10 * (t + 1), "summary": ""}
                       for t, ok in enumerate((first, last))]}
            for i, (first, last) in rights.items()]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    rep = bench("report", "--out", str(tmp_path / "runs"), "--md", str(tmp_path / "t.md"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    (test,) = json.loads((tmp_path / "runs" / "summary.json").read_text())["suites"]["rc"]["paired"]
    assert (test["a"], test["b"], test["n"], test["only_a"], test["only_b"]) == ("rc last turn", "rc turn 1", 5, 2, 1)
    assert "| RC (T 4, H_R 512, H_S 128), last turn | RC (T 4, H_R 512, H_S 128), after turn 1 | 5 | 2 | 1 | 1 |" in (tmp_path / "t.md").read_text()
