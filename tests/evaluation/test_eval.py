"""The eval harness: records, resume after a real kill, metrics, tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from locations import SHARED, TESTS
from strop.backends.scripted import ScriptedBackend
from strop.errors import StropError
from strop.evaluation.harness import EvalSpec, compute_metrics, evaluate
from strop.evaluation.metrics import majority_correct, pass_at_k
from strop.records import writer_lock
from strop.tasks import get_task, jsonl_task


def answer_sums(prompt: str) -> str:
    """Scripted model: right on even first operands, off by one otherwise."""
    a, b = (int(x) for x in prompt.split("=")[0].split("+"))
    return f"\\boxed{{{a + b if a % 2 == 0 else a + b + 1}}}"


def test_records_metrics_and_exact_accuracy(tmp_path):
    task = get_task("arithmetic")
    problems = task.load(seed=3)[:20]
    spec = EvalSpec(task="arithmetic", method="sample", backend="scripted", model=None, samples=2)
    m = evaluate(spec, task, problems, ScriptedBackend(lambda p: answer_sums(p.split("Question: ")[-1])), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {(r["id"], r["sample"]) for r in rows} == {(p.id, s) for p in problems for s in range(2)}
    expected = sum(int(p.question.split("+")[0]) % 2 == 0 for p in problems) / 20
    assert m["overall"]["accuracy"] == pytest.approx(expected)
    assert m["overall"]["pass_at_k"]["2"] == pytest.approx(expected)  # deterministic model: both samples agree
    for r in rows:
        assert {"prompt", "output", "answer", "verdict", "tokens", "seconds", "config", "method"} <= set(r)


def test_a_different_spec_in_the_same_folder_is_refused(tmp_path):
    task = get_task("arithmetic")
    problems = task.load()[:2]
    b = ScriptedBackend(lambda p: "1")
    evaluate(EvalSpec("arithmetic", "sample", "scripted", None), task, problems, b, tmp_path)
    with pytest.raises(StropError, match="differs in: method"):
        evaluate(EvalSpec("arithmetic", "greedy", "scripted", None), task, problems, b, tmp_path)


def test_a_line_cut_by_a_kill_is_dropped_and_redone(tmp_path):
    task = get_task("arithmetic")
    problems = task.load()[:3]
    b = ScriptedBackend(lambda p: "0")
    spec = EvalSpec("arithmetic", "sample", "scripted", None)
    evaluate(spec, task, problems[:2], b, tmp_path)
    with (tmp_path / "records.jsonl").open("a") as f:
        f.write('{"id": "' + problems[2].id + '", "sam')  # the kill came mid-write
    evaluate(spec, task, problems, b, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(p.id for p in problems)


def test_one_process_writes_a_run_folder_at_a_time(tmp_path):
    task = get_task("arithmetic")
    problems = task.load()[:2]
    b = ScriptedBackend(lambda p: "1")
    spec = EvalSpec("arithmetic", "sample", "scripted", None)
    with writer_lock(tmp_path, "strop eval"):  # as a second strop eval on the folder finds the first
        with pytest.raises(StropError, match=rf"being written by pid {os.getpid()} \(strop eval\)"):
            evaluate(spec, task, problems, b, tmp_path)
    assert not (tmp_path / "records.jsonl").exists()
    evaluate(spec, task, problems, b, tmp_path)  # the lock left with its holder (a kill releases it too: next test)
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_resume_after_a_real_kill_counts_every_attempt_once(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "blocked"
    # The task's 5th check blocks for ever (tests/blocking_plugin.py): the kill lands mid-run at a known point,
    # whatever the machine's speed; the resumed run sees the marker and never blocks.
    env = {**os.environ, "STROP_PLUGINS": "blocking_plugin", "STROP_TEST_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "strop", "eval", "--task", "arithmetic-blocking", "--method", "sample", "--max-tokens", "12",
           "--limit", "10", "--samples", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 600
    # Checks 1-4 returned before the 5th began; their records are written by threads that are not blocked.
    while not (marker.exists() and records.exists() and len(records.read_text().splitlines()) >= 4):
        assert proc.poll() is None, "the run ended before its blocked check"
        assert time.monotonic() < deadline, "the run never reached its 5th check"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records.read_text().splitlines()
    assert 4 <= len(before) < 20  # the blocked attempt is never written
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    keys = [(r["id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 20
    assert len({r["pid"] for r in rows}) == 2  # finished work of the killed run was kept, not redone
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["attempts"] == 20 and metrics["overall"]["problems"] == 10


def test_pass_at_k_and_majority_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert majority_correct(["3", "4", "4", None], [True, False, False, False]) is False
    assert majority_correct(["3", "4", "3"], [True, False, True]) is True


def test_metrics_per_turn_and_per_category():
    recs = [
        {"id": "a", "sample": 0, "category": "x", "correct": True, "answer": "1", "verdict": "correct", "tokens": 10, "seconds": 1.0,
         "turns": [{"turn": 1, "correct": False, "cumulative_tokens": 5}, {"turn": 2, "correct": True, "cumulative_tokens": 10}]},
        {"id": "b", "sample": 0, "category": "y", "correct": False, "answer": "2", "verdict": "incorrect", "tokens": 20, "seconds": 3.0,
         "turns": [{"turn": 1, "correct": True, "cumulative_tokens": 8}, {"turn": 2, "correct": False, "cumulative_tokens": 20}]},
    ]
    m = compute_metrics(recs, 1)
    assert m["overall"]["accuracy"] == 0.5 and m["overall"]["mean_tokens_per_attempt"] == 15
    assert [t["accuracy"] for t in m["overall"]["per_turn"]] == [0.5, 0.5]
    assert m["overall"]["per_turn"][0]["mean_cumulative_tokens"] == 6.5
    assert m["per_category"]["x"]["accuracy"] == 1.0 and m["per_category"]["y"]["accuracy"] == 0.0


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("name,file,count", [
    ("gsm8k", "gsm8k_test.jsonl", 1319), ("math500", "math500.jsonl", 500), ("aime2024", "aime2024.jsonl", 30),
    ("countdown", "countdown_test.jsonl", 256), ("mit-integration-bee-2025", "mit_integration_bee_2025_qualifier.jsonl", 20),
])
def test_shipped_tasks_load_the_shared_data_and_accept_gold_answers(name, file, count):
    task = get_task(name)
    problems = task.load(str(SHARED / file))
    assert len(problems) == count
    p = problems[3]
    if name == "countdown":
        return  # no gold expression in the data; the verifier is tested in test_verifiers
    gold = f"\\boxed{{{p.gold}}}"
    assert task.check(p, gold).correct, (p.id, p.gold)


def test_humaneval_canonical_solution_passes_and_a_wrong_one_fails():
    task = get_task("humaneval")
    p = task.load()[0]
    assert task.check(p, p.gold).correct
    assert not task.check(p, "    return True\n").correct
    # The answer read is the program that ran: a fenced block's code, else the text; none without code.
    fenced = task.check(p, f"Here it is:\n```python\n{p.question}{p.gold}```\nIt loops over pairs.")
    assert fenced.correct and fenced.extracted == f"{p.question}{p.gold}".strip()
    assert task.check(p, "   \n").extracted is None


def test_humaneval_majority_counts_identical_programs_as_one_vote(tmp_path):
    task = get_task("humaneval")
    p = task.load()[0]
    # Two programs math-verify finds equal (it reads x + 1 and 1 + x), which are two votes.
    answers = iter(["```python\ndef f(x):\n    return x + 1\n```", "```python\ndef f(x):\n    return 1 + x\n```"])
    m = evaluate(EvalSpec("humaneval", "sample", "scripted", None, samples=2, limit=1), task, [p],
                 ScriptedBackend(lambda prompt: next(answers)), tmp_path, vote="equivalence")
    assert m["vote"] == "string"  # the task decides: maths equivalence would compare the numbers in the code
    recs = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert sorted(r["answer"] for r in recs) == ["def f(x):\n    return 1 + x", "def f(x):\n    return x + 1"]


def test_custom_jsonl_task_with_a_field_mapping(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps({"q": f"{i} + 1 = ?", "a": str(i + 1), "key": f"k{i}"}) for i in range(3)))
    task = jsonl_task("mine", {"question": "q", "answer": "a", "id": "key"}, "number")
    problems = task.load(str(f))
    assert [p.id for p in problems] == ["k0", "k1", "k2"]
    assert task.check(problems[1], "it is \\boxed{2}").correct and not task.check(problems[1], "3").correct
    with pytest.raises(StropError, match="no field 'q'"):
        jsonl_task("bad", {"question": "q", "answer": "a"}, "exact").parse({"x": 1}, 0)


def test_a_run_can_grow_with_a_larger_limit_without_redoing_work(tmp_path):
    task = get_task("arithmetic")
    problems = task.load()
    calls = []
    b = ScriptedBackend(lambda p: calls.append(p) or "0")
    evaluate(EvalSpec("arithmetic", "sample", "scripted", None, limit=2), task, problems[:2], b, tmp_path)
    m = evaluate(EvalSpec("arithmetic", "sample", "scripted", None, limit=5), task, problems[:5], b, tmp_path)
    assert len(calls) == 5 and m["overall"]["attempts"] == 5
    m = evaluate(EvalSpec("arithmetic", "sample", "scripted", None, limit=3), task, problems[:3], b, tmp_path)
    assert len(calls) == 5 and m["overall"]["attempts"] == 3  # metrics cover the current command's problems


def test_a_run_can_grow_with_more_samples_without_redoing_work(tmp_path):
    task = get_task("arithmetic")
    problems = task.load()[:2]
    calls = []
    b = ScriptedBackend(lambda p: calls.append(p) or "0")
    evaluate(EvalSpec("arithmetic", "sample", "scripted", None, samples=2, limit=2), task, problems, b, tmp_path)
    m = evaluate(EvalSpec("arithmetic", "sample", "scripted", None, samples=4, limit=2), task, problems, b, tmp_path)
    assert len(calls) == 8 and m["overall"]["attempts"] == 8 and set(m["overall"]["majority_at_k"]) == {"1", "2", "3", "4"}
    m = evaluate(EvalSpec("arithmetic", "sample", "scripted", None, samples=1, limit=2), task, problems, b, tmp_path)
    assert len(calls) == 8 and m["overall"]["attempts"] == 2  # metrics cover the command's samples only
    recs = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["sample"]) for r in recs) == sorted((p.id, s) for p in problems for s in range(4))
    assert {r["finish_reason"] for r in recs} == {"eos"}  # the scripted "0" ends by itself, not at the cap
    assert {r["mean_logprob"] for r in recs} == {0.0}  # best-of-n's score of each sample: scripted tokens are certain


def test_plots_survive_zero_and_perfect_accuracy(tmp_path):
    from strop.evaluation.metrics import wilson_interval
    from strop.evaluation.report import plot_runs, plot_turns

    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    recs = [{"id": str(i), "sample": 0, "category": None, "correct": False, "answer": None, "verdict": "incorrect", "tokens": 10,
             "seconds": 1.0, "turns": [{"turn": 1, "correct": False, "cumulative_tokens": 5}]} for i in range(50)]
    m = compute_metrics(recs, 1)
    m["spec"] = {"method": "rc", "task": "t"}
    plot_runs([m], tmp_path / "a.png")
    plot_turns(m, tmp_path / "b.png")
    assert (tmp_path / "a.png").stat().st_size > 1000 and (tmp_path / "b.png").stat().st_size > 1000


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_every_integration_bee_gold_answer_verifies():
    task = get_task("mit-integration-bee-2025")
    problems = task.load(str(SHARED / "mit_integration_bee_2025_qualifier.jsonl"))
    failed = [(p.id, task.check(p, f"\\boxed{{{p.gold}}}").verdict.value) for p in problems]
    assert [f for f in failed if f[1] != "correct"] == []
    assert {p.category for p in problems} == {"definite", "indefinite"}


def test_majority_at_k_votes_by_equivalence_and_by_string_from_the_same_records(tmp_path):
    # Five samples per problem; the right value is written in three forms, a wrong one twice in one form.
    script = {"1 + 1 = ?": ["\\boxed{5}", "\\boxed{2.0}", "\\boxed{5}", "\\boxed{2}", "\\boxed{\\frac{4}{2}}"],
              "half of 1 = ?": ["It is \\boxed{3}", "\\boxed{0.5}", "\\boxed{3}", "\\boxed{\\frac{2}{4}}", "\\boxed{50\\%}"]}
    data = tmp_path / "q.jsonl"
    data.write_text("\n".join(json.dumps({"q": q, "a": a}) for q, a in [("1 + 1 = ?", "2"), ("half of 1 = ?", "\\frac{1}{2}")]))
    task = jsonl_task("mine", {"question": "q", "answer": "a"}, "math")
    problems = task.load(str(data))
    said: dict[str, int] = {}

    def respond(prompt: str) -> str:
        q = next(q for q in script if q in prompt)
        said[q] = said.get(q, 0) + 1
        return script[q][said[q] - 1]

    spec = EvalSpec("mine", "sample", "scripted", None, samples=5)
    backend = ScriptedBackend(respond)
    by_equivalence = evaluate(spec, task, problems, backend, tmp_path / "run", batch_size=1)
    by_string = evaluate(spec, task, problems, backend, tmp_path / "run", batch_size=1, vote="string")
    assert len(backend.prompts) == 10  # the second call decoded nothing: the vote is not part of the run
    assert by_equivalence["vote"] == "equivalence" and by_string["vote"] == "string"
    assert by_equivalence["overall"]["accuracy"] == by_string["overall"]["accuracy"] == 0.6
    # k = 1: one sample, a wrong one. k = 5: three forms of the right value outvote two identical wrong answers.
    assert by_equivalence["overall"]["majority_at_k"] == {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 1.0}
    assert by_string["overall"]["majority_at_k"] == {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0}
    assert compute_metrics([json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()], 5,
                           vote="string")["overall"]["majority_at_k"]["5"] == 0.0
    with pytest.raises(StropError, match="vote must be one of"):
        compute_metrics([], 5, vote="mode")


def test_majority_at_k_votes_over_the_first_k_samples_whatever_order_the_records_were_written_in():
    # Records are written as their verdicts arrive, so sample 2 can precede sample 0 in the file.
    rec = lambda s, a, ok: {"id": "p", "sample": s, "category": None, "answer": a, "correct": ok,  # noqa: E731
                            "verdict": "correct" if ok else "incorrect", "tokens": 1, "seconds": 0.1}
    m = compute_metrics([rec(2, "5", True), rec(0, "4", False), rec(1, "5", True)], 3, vote="string")
    # k = 1: sample 0 alone (wrong); k = 2: a tie, won by sample 0's answer; k = 3: "5" twice.
    assert m["overall"]["majority_at_k"] == {"1": 0.0, "2": 0.0, "3": 1.0}


def test_rc_records_keep_each_turns_summary_and_the_end_of_its_reasoning(tmp_path):
    # What was carried between turns is the evidence for why accuracy moves over turns (docs/evaluation.md).
    from strop.methods import method_settings

    task = get_task("arithmetic")
    problems = task.load(seed=3)[:2]
    kwargs = method_settings("rc", turns=2, reasoning_tokens=64, summary_tokens=64)
    spec = EvalSpec(task="arithmetic", method="rc", backend="scripted", model=None)
    reply = lambda p: "I found the sum is 5." if "first-person summary" in p else "Adding the two numbers: \\boxed{5}"  # noqa: E731
    evaluate(spec, task, problems, ScriptedBackend(reply), tmp_path, method_kwargs=kwargs)
    rows = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    for r in rows:
        assert [t["turn"] for t in r["turns"]] == [1, 2]
        assert all(t["summary"] == "I found the sum is 5." and t["reasoning_tail"].endswith("\\boxed{5}") for t in r["turns"])
        # Each part's tokens (one per character here, plus the EOS): a part at its cap was cut, one below it ended.
        assert [(t["reasoning_tokens"], t["summary_tokens"]) for t in r["turns"]] == [(34, 22), (34, 22)]
        assert [t["cumulative_tokens"] for t in r["turns"]] == [56, 112]
