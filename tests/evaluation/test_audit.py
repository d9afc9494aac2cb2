"""strop report --audit: every record re-graded, compared with Math-Verify's default grading, extraction failures by finish."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from strop.errors import StropError
from strop.evaluation.audit import audit_run
from strop.records import writer_lock


def _run(folder, task: str, rows: list[tuple]) -> None:
    """A run folder as ``strop eval`` writes it: run.json, records (id, gold, output, finish, correct[, answer read]),
    metrics.json."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"task": task, "method": "greedy", "backend": "llamacpp", "model": None, "samples": 1,
                                                 "limit": None, "seed": 0, "data": None, "method_config": {}}))
    recs = [{"id": i, "sample": 0, "category": None, "prompt": "q", "output": out, "answer": ans[0] if ans else None,
             "gold": gold, "verdict": "correct" if ok else "incorrect", "correct": ok, "finish_reason": fin, "tokens": 5,
             "seconds": 1.0}
            for i, gold, out, fin, ok, *ans in rows]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (folder / "metrics.json").write_text(json.dumps({"overall": {}, "samples": 1, "vote": "equivalence", "spec": {"task": task}}))


def test_audit_lists_where_graders_differ_and_counts_missing_answers(tmp_path):
    run = tmp_path / "run"
    _run(run, "math500", [
        ("agree", "18", "so she earns \\boxed{18} dollars.", "eos", True),
        # the output only restates the question (seen from the embedded model): Math-Verify evaluates the expression
        # "81 + 10" to the gold; strop does not take an unevaluated sum of numbers for an answer
        ("restated", "91", "What's 81 + 10 little brother!", "eos", False),
        # a set for a pair: Math-Verify compares the elements; strop reads the brackets (an older strop recorded it correct)
        ("brackets", "(1, 2)", "The point is $\\boxed{\\{1, 2\\}}$.", "eos", True),
        ("cut", "7", "Let me think step by step about the", "length", False),
        ("silent", "7", "I do not know.", "eos", False),
    ])
    a = audit_run(run)
    c = a.counts
    assert c["records"] == 5 and c["no_answer"] == 2 and c["no_answer_by_finish"] == {"length": 1, "eos": 1}
    assert [d["id"] for d in a.disagreements] == ["restated", "brackets"]
    assert c["other_correct_strop_not"] == 2 and c["strop_correct_other_not"] == 0 and c["agree"] == 3
    assert c["recorded_differs"] == 1  # "brackets" is graded incorrect now
    lines = (run / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["other"] == {"verdict": "correct", "answer": "81 + 10", "detail": ""}
    assert json.loads((run / "metrics.json").read_text())["audit"]["disagreements"] == 2
    cli = subprocess.run([sys.executable, "-m", "strop", "report", "--audit", str(run)], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "2 differ" in cli.stdout and "| restated | 0 | 91 | incorrect, 81 + 10 | correct, 81 + 10 |" in cli.stdout


def test_regrade_writes_todays_verdicts_and_recomputes_the_metrics(tmp_path):
    run = tmp_path / "run"
    _run(run, "gsm8k", [
        ("same", "18", "so she earns \\boxed{18} dollars.", "eos", True, "18"),
        # graded by an older strop, which read the unit inside the equation as a symbol (5*bags): now right
        ("unit", "5", "\\[ \\frac{550 \\text{ cups}}{110 \\text{ cups/bag}} = 5 \\text{ bags} \\]\n\nThus, the", "length", False,
         "5 \\text{ bags}"),
        ("wrong", "7", "so \\boxed{8}", "eos", False, "8"),
    ])
    before = (run / "records.jsonl").read_text()
    a = audit_run(run)  # an audit alone changes no record
    assert a.counts["recorded_differs"] == 1 and "regraded" not in a.counts and (run / "records.jsonl").read_text() == before
    a = audit_run(run, regrade=True)
    assert a.counts["regraded"] == 1
    recs = {r["id"]: r for r in map(json.loads, (run / "records.jsonl").read_text().splitlines())}
    assert recs["unit"]["correct"] is True and recs["unit"]["verdict"] == "correct"
    assert recs["unit"]["regraded_from"]["verdict"] == "incorrect" and "regraded_from" not in recs["same"]
    assert recs["unit"]["answer"] == "\\frac{550}{110} = 5" and recs["unit"]["regraded_from"]["answer"] == "5 \\text{ bags}"
    assert not recs["wrong"]["correct"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overall"]["accuracy"] == 2 / 3 and metrics["spec"] == {"task": "gsm8k"} and metrics["audit"]["regraded"] == 1
    again = audit_run(run, regrade=True)  # nothing left to change
    assert again.counts["regraded"] == 0 and again.counts["recorded_differs"] == 0
    cli = subprocess.run([sys.executable, "-m", "strop", "report", "--regrade", str(run)], capture_output=True, text=True, timeout=300)
    assert cli.returncode != 0 and "--regrade goes with --audit" in cli.stderr and "Traceback" not in cli.stderr


def test_regrade_writes_todays_answer_where_only_the_reading_changed(tmp_path):
    # An older strop recorded a HumanEval answer as the last number of the text; the verdict (the program's tests)
    # was right all along, but votes between samples group by the answer, so a regrade brings the program in.
    run = tmp_path / "code"
    program = "def add(a, b):\n    return a + b"
    _run(run, "humaneval", [("HumanEval/53", "x", f"```python\n{program}\n```\nadd(2, 3) gives 5", "eos", True, "5")])
    a = audit_run(run, regrade=True)
    rec = json.loads((run / "records.jsonl").read_text())
    assert a.counts["regraded"] == 1 and rec["answer"] == program and rec["regraded_from"]["answer"] == "5"
    assert audit_run(run, regrade=True).counts["regraded"] == 0


def test_a_regrade_waits_for_the_eval_writing_the_run_and_an_audit_does_not_disturb_it(tmp_path):
    run = tmp_path / "run"
    _run(run, "gsm8k", [("unit", "5", "= 5 \\text{ bags} \\]", "length", False, "5 \\text{ bags}")])
    with (run / "records.jsonl").open("a") as f:
        f.write('{"id": "next", "sam')  # the line the running eval is writing
    before = (run / "records.jsonl").read_text()
    with writer_lock(run, "strop eval"):
        assert audit_run(run).counts["records"] == 1  # reads beside the writer, its unfinished line not a record
        with pytest.raises(StropError, match=r"being written by pid \d+ \(strop eval\)"):
            audit_run(run, regrade=True)  # swapping the file would lose what the eval appends to the old one
        assert (run / "records.jsonl").read_text() == before  # neither cut the line being written
    with pytest.raises(StropError, match="not an eval run"):
        audit_run(tmp_path / "absent", regrade=True)
    assert not (tmp_path / "absent").exists()


def test_audit_of_a_code_task_counts_only_extraction(tmp_path):
    run = tmp_path / "code"
    _run(run, "humaneval", [("HumanEval/0", "x", "```python\ndef f(): pass\n```", "eos", False), ("HumanEval/1", "x", "", "length", False)])
    a = audit_run(run)
    assert a.other is None and a.disagreements == [] and a.counts["disagreements"] is None
    assert a.counts["no_answer"] == 1 and a.counts["no_answer_by_finish"] == {"length": 1}  # a program is an answer


def test_audit_refuses_a_folder_that_is_not_a_run(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "strop", "report", "--audit", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert cli.returncode != 0 and "not an eval run" in cli.stderr and "Traceback" not in cli.stderr
