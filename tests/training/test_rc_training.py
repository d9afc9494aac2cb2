"""RC training (strop.training.rc) on a scripted backend and, through TRL, on a tiny LM built in the test.

Checked exactly: the states a step draws (the empty start among the
candidates, a buffered start when there is one), what each trace is
conditioned on (the prompt RC decoding uses at that state), the grouping of
TRL's advantages (K consecutive rows per state), the buffer's replacement rule
(newest state per problem) and its use by later epochs; and that a run killed
with SIGKILL resumes with its buffer, order and random state.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from strop.backends.chat import user_turn
from strop.backends.scripted import ScriptedBackend
from strop.errors import ConfigError
from strop.methods.rc import RCConfig, reason_prompt
from strop.tasks import Problem
from strop.training.data import render_chat_text
from strop.training.rc import EMPTY, SUMMARY, RCRows, RCState, candidate_states, draw_states, rc_rollouts
from strop.training.recipe import RCSpec, recipe_from_dict

PLAIN_TOKENIZER = SimpleNamespace(chat_template=None, bos_token="", eos_token="")


def scripted() -> ScriptedBackend:
    """Reasoning answers 'R<n>' (n = the latest summary's turn + 1); a summary is 'S<turn>:<question>'.

    The turn is read from the prompt itself, so every summary says exactly
    which state it came from.
    """

    def respond(prompt: str) -> str:
        q = re.search(r"Q(\d+)\?", prompt).group(0)
        if "Write a first-person summary" in prompt:
            m = re.search(r"Here is my latest attempt:\nR(\d+)", prompt)
            return f"S{m.group(1)}:{q}"
        m = re.findall(r"S(\d+):", prompt)
        return f"R{int(m[-1]) + 1 if m else 1} \\boxed{{7}}"

    return ScriptedBackend(respond)


def problems(n: int) -> list[Problem]:
    return [Problem(id=f"p{i}", question=f"Q{i}?", gold="7") for i in range(n)]


class SevenTask:
    name = "seven"

    def check(self, problem, text):  # pragma: no cover - not called without TRL
        raise AssertionError


def rc_rows(spec: RCSpec, n: int = 3, k: int = 4, seed: int = 0) -> RCRows:
    return RCRows(spec, SevenTask(), problems(n), PLAIN_TOKENIZER, reasoning_tokens=32, temperature=1.0,
                  num_generations=k, seed=seed)


# ------------------------------------------------------------------ rollouts
def test_each_rollout_turn_reasons_from_the_previous_summary_only():
    backend = scripted()
    cfg = RCConfig(turns=3, reasoning_tokens=32, summary_tokens=32)
    starts = [RCState("p0", "", 0), RCState("p1", "S4:Q1?", 4)]
    rngs = [np.random.default_rng(i) for i in range(2)]
    out = rc_rollouts(backend, ["Q0?", "Q1?"], starts, cfg, rngs)
    assert out == [[RCState("p0", f"S{t}:Q0?", t) for t in (1, 2, 3)],
                   [RCState("p1", f"S{t}:Q1?", t) for t in (5, 6, 7)]]
    # Per turn: two reasoning prompts (batched), then two summary prompts.
    reasoning = [p for p in backend.prompts if "Write a first-person summary" not in p]
    assert len(reasoning) == 6 and len(backend.prompts) == 12
    want = [reason_prompt(cfg, "Q0?", ""), reason_prompt(cfg, "Q1?", "S4:Q1?"),
            reason_prompt(cfg, "Q0?", "S1:Q0?"), reason_prompt(cfg, "Q1?", "S5:Q1?"),
            reason_prompt(cfg, "Q0?", "S2:Q0?"), reason_prompt(cfg, "Q1?", "S6:Q1?")]
    assert reasoning == [backend.detokenize(backend.chat_prompt(user_turn(w))) for w in want]
    # Nothing older than the latest summary reaches a reasoning turn.
    assert "S1:" not in reasoning[4] and "R1" not in reasoning[4]


def test_candidates_are_the_empty_start_a_buffered_start_and_every_produced_summary():
    made = [RCState("p", f"s{t}", t) for t in (1, 2, 3)]
    assert candidate_states("p", RCState("p", "", 0), made) == [RCState("p", "", 0), *made]
    start = RCState("p", "old", 5)
    assert candidate_states("p", start, made) == [RCState("p", "", 0), start, *made]


def test_draws_are_distinct_and_uniform_over_the_candidates_empty_included():
    cands = [RCState("p", "", 0)] + [RCState("p", f"s{t}", t) for t in (1, 2, 3)]
    rng = np.random.default_rng(0)
    counts: Counter = Counter()
    for _ in range(4000):
        d = draw_states(cands, 2, rng)
        assert len(d) == 2 and d[0] != d[1]
        counts.update(s.turn for s in d)
    # Each of the 4 candidates is in a draw of 2 half the time (binomial sd 0.008).
    assert all(abs(counts[t] / 4000 - 0.5) < 0.04 for t in range(4)), counts
    assert draw_states(cands[:1], 2, rng) == cands[:1]


# --------------------------------------------------------------- a step's rows
def test_a_step_draws_n_summ_states_per_problem_and_k_rows_per_state():
    rows = rc_rows(RCSpec(turns=3, states=2), n=3, k=4)
    backend = scripted()
    states = rows.step_states(backend, groups=4)  # 4 groups / 2 states = 2 problems
    assert len(states) == 4
    by_problem = Counter(s.problem_id for s in states)
    assert sorted(by_problem.values()) == [2, 2]
    for s in states:
        assert 0 <= s.turn <= 3 and s.summary == ("" if s.turn == 0 else f"S{s.turn}:Q{s.problem_id[1:]}?")
    table = rows.rows(states)
    assert len(table) == 16
    for i, s in enumerate(states):
        group = table[4 * i:4 * i + 4]
        want = render_chat_text(PLAIN_TOKENIZER, reason_prompt(rows.config, f"Q{s.problem_id[1:]}?", s.summary), None)
        assert all(r == {"prompt": want, "problem_id": s.problem_id, "category": SUMMARY if s.turn else EMPTY} for r in group)
    with pytest.raises(ConfigError, match="multiple of 8"):
        rows.step_states(backend, groups=3)


def test_the_buffer_keeps_the_newest_state_and_the_next_epoch_starts_from_it():
    rows = rc_rows(RCSpec(turns=2, states=1), n=2, k=2)
    backend = scripted()
    rows.step_states(backend, groups=2)  # epoch 1: both problems, from the empty summary
    assert rows.epoch == 1 and len(rows.buffer) == 2
    assert {rows.buffer.get(f"p{i}") for i in range(2)} == {RCState(f"p{i}", f"S2:Q{i}?", 2) for i in range(2)}
    backend.prompts.clear()
    states = rows.step_states(backend, groups=2)  # epoch 2 continues at turn 3
    assert rows.epoch == 2
    first_turn = [p for p in backend.prompts if "Write a first-person summary" not in p][:2]
    assert sorted(re.search(r"S\d+:Q\d\?", p).group(0) for p in first_turn) == ["S2:Q0?", "S2:Q1?"]
    # Newest replaces older: turn 4 now, not 2.
    assert {rows.buffer.get(f"p{i}") for i in range(2)} == {RCState(f"p{i}", f"S4:Q{i}?", 4) for i in range(2)}
    # Candidates were empty, the buffered start (turn 2) and the new turns 3, 4.
    assert all(s.turn in (0, 2, 3, 4) for s in states)

    off = rc_rows(RCSpec(turns=2, states=1, buffer=False), n=2, k=2)
    off.step_states(backend, groups=2)
    backend.prompts.clear()
    off.step_states(backend, groups=2)
    assert len(off.buffer) == 0 and not any("S2:" in p for p in backend.prompts if "first-person" not in p)


def test_state_dict_round_trip_continues_identically():
    a = rc_rows(RCSpec(), n=5, k=2, seed=3)
    a.step_states(scripted(), groups=4)
    saved = json.loads(json.dumps(a.state_dict()))
    b = rc_rows(RCSpec(), n=5, k=2, seed=99)
    b.load_state_dict(saved)
    assert a.step_states(scripted(), groups=4) == b.step_states(scripted(), groups=4)
    assert a.buffer.state_dict() == b.buffer.state_dict() and (a.epoch, a.pos) == (b.epoch, b.pos)


def test_reference_candidates_are_the_empty_start_and_all_summaries_but_the_last():
    start = RCState("p", "S2:Q?", 2)
    produced = [RCState("p", f"S{t}:Q?", t) for t in (3, 4, 5)]
    assert candidate_states("p", start, produced, "reference") == [RCState("p", "", 0)] + produced[:2]
    assert candidate_states("p", start, produced) == [RCState("p", "", 0), start] + produced  # strop: also s_T, the start
    rows = rc_rows(RCSpec(turns=3, states=3, candidates="reference"), n=2, k=2)
    for _ in range(3):  # with the buffer on, no draw is ever a rollout's last summary or its start
        states = rows.step_states(scripted(), groups=6)
        last = {pid: max(b["turn"] for b in rows.buffer.state_dict() if b["problem_id"] == pid) for pid in ("p0", "p1")}
        assert all(s.turn == 0 or s.turn < last[s.problem_id] for s in states)
        assert all(s.turn == 0 or s.turn > last[s.problem_id] - 3 for s in states)  # produced by this rollout


def test_keep_all_buffers_every_summary_of_the_latest_rollout_and_starts_from_one_of_them():
    rows = rc_rows(RCSpec(turns=3, states=1, keep="all"), n=1, k=2, seed=1)
    backend = scripted()
    rows.step_states(backend, groups=1)
    assert rows.buffer.state_dict() == [{"problem_id": "p0", "summary": f"S{t}:Q0?", "turn": t} for t in (1, 2, 3)]
    starts = []
    for _ in range(12):
        backend.prompts.clear()
        rows.step_states(backend, groups=1)
        first = next(p for p in backend.prompts if "Write a first-person summary" not in p)
        found = re.findall(r"S(\d+):", first)
        starts.append(int(found[-1]) if found else 0)
        held = [s["turn"] for s in rows.buffer.state_dict()]
        assert held == list(range(starts[-1] + 1, starts[-1] + 4))  # the whole new rollout replaced the old one
    assert len(set(t % 3 for t in starts)) > 1  # not always the newest: a uniform draw among the three
    # round trip of a multi-state buffer, and the old one-state-per-problem format still loads
    copy = rc_rows(RCSpec(turns=3, states=1, keep="all"), n=1, k=2)
    copy.load_state_dict(json.loads(json.dumps(rows.state_dict())))
    assert copy.buffer.state_dict() == rows.buffer.state_dict()
    copy.buffer.load_state_dict([{"problem_id": "p0", "summary": "S9:Q0?", "turn": 9}])
    assert copy.buffer.get("p0") == RCState("p0", "S9:Q0?", 9)


def test_a_seed_file_starts_the_buffer(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"problem_id": "p1", "summary": "S5:Q1?", "turn": 5}\n')
    rows = rc_rows(RCSpec(turns=2, states=1, seed_buffer=str(seed)), n=2, k=2)
    assert rows.buffer.get("p1") == RCState("p1", "S5:Q1?", 5) and rows.buffer.get("p0") is None
    backend = scripted()
    rows.step_states(backend, groups=2)
    first_turns = [p for p in backend.prompts if "Write a first-person summary" not in p][:2]
    assert sum("S5:Q1?" in p for p in first_turns) == 1  # p1 continued from the seeded summary
    seed.write_text('{"problem_id": "nope", "summary": "x"}\n')
    with pytest.raises(ConfigError, match="seed_buffer"):
        rc_rows(RCSpec(turns=2, states=1, seed_buffer=str(seed)))


@pytest.mark.parametrize("body, needle", [
    ({"rc": {"turns": 0}}, "rc.turns"),
    ({"rc": {"states": 5, "turns": 3}}, "cannot exceed"),
    ({"rc": {"states": 4, "turns": 3, "candidates": "reference"}}, "cannot exceed"),
    ({"rc": {"candidates": "theirs"}}, "rc.candidates"),
    ({"rc": {"keep": "some"}}, "rc.keep"),
    ({"rc": {"sumary_tokens": 3}}, "unknown key"),
    ({"rc": {}, "curriculum": {"kind": "sec"}}, "draws its own problems"),
])
def test_bad_rc_sections_are_clear_errors(body, needle):
    with pytest.raises(ConfigError, match=needle):
        recipe_from_dict({"data": {"task": "arithmetic"}, "output": "runs/x", **body})
    ok = recipe_from_dict({"data": {"task": "arithmetic"}, "output": "runs/x", "rc": True})
    assert ok.rc == RCSpec() and ok.curriculum.kind == "none"


# -------------------------------------------------------------- through TRL
from killed_runs import kill_after_first_checkpoint, resume  # noqa: E402
from strop.records import read_records  # noqa: E402
from strop.training.advantages import group_advantages  # noqa: E402
from strop.training.entry import build_trainer, train  # noqa: E402
from strop.training.rc import RC_LOG, RC_STATE  # noqa: E402
from strop.training.run_folder import load_metrics  # noqa: E402
from tiny_lm import build_tiny_lm, script_reward  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    # RC prompts (template + summary) run to ~400 characters of this char-level model.
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "model", seed=0, max_positions=1024)


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "q.jsonl"
    path.write_text("".join(json.dumps({"q": f"Q{i}?", "a": "7"}) + "\n" for i in range(6)))
    return path


def rc_recipe(model: Path, data: Path, out: Path, **grpo) -> dict:
    return {
        "model": {"name": str(model)},
        "data": {"task": "jsonl", "data": str(data), "fields": {"question": "q", "answer": "a"}, "verifier": "number"},
        "rc": {"turns": 3, "states": 2, "summary_tokens": 6},
        "grpo": {"num_generations": 4, "per_device_train_batch_size": 16, "max_completion_length": 6,
                 "learning_rate": 3e-3, "beta": 0.0, "temperature": 1.0, "save_steps": 1000, "seed": 0,
                 "gradient_checkpointing": False, **grpo},
        "output": str(out),
    }


@pytest.mark.slow
def test_trl_trains_each_drawn_state_as_one_group_of_k(tiny_model, questions, tmp_path):
    backend = scripted()
    trainer = build_trainer(recipe_from_dict(rc_recipe(tiny_model, questions, tmp_path / "run", max_steps=3)),
                            quiet=True, rollout_backend=backend)
    seen = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        out = original(inputs)
        if trainer.model.training:
            prompts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
            seen.append((prompts, out["advantages"].detach().cpu().numpy().copy(), list(trainer.round_book),
                         list(trainer.row_source.last_states)))
        return out

    trainer._generate_and_score_completions = spy
    trainer.train()
    assert len(seen) == 3
    for prompts, adv, book, states in seen:
        assert len(states) == 4 and len(prompts) == 16
        rewards = np.array([s for _, s in book])
        np.testing.assert_allclose(adv, group_advantages(rewards, 4), atol=1e-5)  # per state
        for i, s in enumerate(states):
            question = trainer.row_source.problems[s.problem_id].question
            want = render_chat_text(trainer.processing_class, reason_prompt(trainer.row_source.config, question, s.summary), None)
            # What TRL generated from, modulo the char tokenizer's unknown characters.
            want = trainer.processing_class.decode(trainer.processing_class(want)["input_ids"], skip_special_tokens=True)
            assert prompts[4 * i:4 * i + 4] == [want] * 4
    log = read_records(tmp_path / "run" / RC_LOG)
    assert [r["step"] for r in log] == [1, 2, 3]
    assert [[(s["problem_id"], s["summary"], s["turn"]) for s in r["states"]] for r in log] == \
        [[(s.problem_id, s.summary, s.turn) for s in states] for *_, states in seen]
    metrics, _ = load_metrics(tmp_path / "run")
    assert all("rc/buffer" in m and "rc/mean_turn" in m for m in metrics)


@pytest.mark.slow
def test_killed_rc_run_resumes_with_its_buffer(tiny_model, questions, tmp_path):
    """Rollouts by the policy itself: the resumed run must match an uninterrupted one state for state."""
    import yaml

    steps = 9  # 2 problems a step, 6 problems: the buffer is read from epoch 2 on (step 4)
    whole = rc_recipe(tiny_model, questions, tmp_path / "whole", max_steps=steps, save_steps=3)
    train(recipe_from_dict(whole), quiet=True)

    killed = tmp_path / "killed.yaml"
    killed.write_text(yaml.safe_dump(rc_recipe(tiny_model, questions, tmp_path / "killed", max_steps=steps, save_steps=3)))
    ck = kill_after_first_checkpoint(killed, tmp_path / "killed", steps)
    assert json.loads((ck / RC_STATE).read_text())["buffer"]  # the buffer went into the checkpoint
    resume(killed, ck)

    log_whole, log_killed = read_records(tmp_path / "whole" / RC_LOG), read_records(tmp_path / "killed" / RC_LOG)
    assert [r["step"] for r in log_killed] == list(range(1, steps + 1))
    assert log_killed == log_whole  # states drawn, their summaries and rewards, epoch, buffer size
    assert any(s["turn"] > 3 for r in log_whole for s in r["states"]), "no state came from the buffer"
    s_whole = json.loads((tmp_path / "whole" / f"checkpoint-{steps}" / RC_STATE).read_text())
    s_killed = json.loads((tmp_path / "killed" / f"checkpoint-{steps}" / RC_STATE).read_text())
    assert s_killed == s_whole


@pytest.mark.slow
def test_dynamic_sampling_with_rc_rows_keeps_states_with_signal_and_draws_fresh_rollouts(tiny_model, questions, tmp_path):
    """A scripted reward: traces from the empty summary all score 0 (no variance); from a summary they alternate 1, 0.

    Each round rolls RC out for 2 more problems of the epoch order and draws 2
    states of each (at most one of them the empty start), so a round has 2 to 4
    groups with signal and some steps need a second round for the 4 the batch holds.
    """
    recipe = rc_recipe(tiny_model, questions, tmp_path / "run", max_steps=4)
    recipe["dynamic_sampling"] = {"max_rounds": 2}
    trainer = build_trainer(recipe_from_dict(recipe), quiet=True, rollout_backend=scripted())

    script_reward(trainer, lambda i, c: 0.0 if c == EMPTY else i % 2)
    steps = []
    real = trainer._step_batch

    def spy(inputs):
        out = real(inputs)
        prompts = trainer.processing_class.batch_decode(out["prompt_ids"][::4], skip_special_tokens=True)
        steps.append((list(trainer.row_source.step_drawn), prompts, out["advantages"].reshape(4, 4).ne(0).any(1).tolist(),
                      int(out["completion_ids"].shape[0]), int(out["num_items_in_batch"]), int(out["completion_mask"].sum())))
        return out

    trainer._step_batch = spy
    trainer.train()
    metrics, _ = load_metrics(tmp_path / "run")
    log = read_records(tmp_path / "run" / RC_LOG)
    assert len(steps) == 4 and any(len(drawn) > 4 for drawn, *_ in steps)  # some step drew a second round
    problems_seen = []
    for (drawn, prompts, signal, rows, items, mask), m, rec in zip(steps, metrics, log):
        has_signal = [s.summary != "" for s in drawn]
        # rounds of 4 states until 4 of them come from a summary, at most 2 extra rounds
        need = next((r for r in range(3) if sum(has_signal[: 4 * (r + 1)]) >= 4), 2)
        assert len(drawn) == 4 * (need + 1) and m["dynamic/extra_rounds"] == need and m["dynamic/groups_drawn"] == len(drawn)
        assert m["dynamic/groups_with_signal"] == sum(has_signal)
        kept = ([s for s in drawn if s.summary] + [s for s in drawn if not s.summary])[:4]  # signal first, in draw order
        assert signal == [bool(s.summary) for s in kept]
        for s, got in zip(kept, prompts):  # the batch trained on is exactly those states' prompts
            question = trainer.row_source.problems[s.problem_id].question
            want = render_chat_text(trainer.processing_class, reason_prompt(trainer.row_source.config, question, s.summary), None)
            assert got == trainer.processing_class.decode(trainer.processing_class(want)["input_ids"], skip_special_tokens=True)
        assert rows == 16 and items == mask  # a full batch, TRL's token count of the batch trained on
        # the state log holds every state drawn, with its group's mean reward
        assert [(st["problem_id"], st["summary"], st["turn"]) for st in rec["states"]] == [(s.problem_id, s.summary, s.turn) for s in drawn]
        assert [st["reward"] for st in rec["states"]] == [0.5 if s.summary else 0.0 for s in drawn]
        problems_seen += [s.problem_id for s in drawn[::2]]  # 2 states per problem, consecutive
    # every round took the next problems of the epoch order: each epoch visits all 6 problems once
    ids = sorted(trainer.row_source.ids)
    assert len(problems_seen) >= 6 and all(sorted(problems_seen[i:i + 6]) == ids for i in range(0, len(problems_seen) - 5, 6))


# ------------------------------------------------------------- templates and chat switches
def test_a_recipes_prompt_folder_drives_the_rollouts_and_the_trained_rows_alike(tmp_path):
    from strop.methods.rc_prompts import load_prompts
    from strop.training.rc import keep_prompts

    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "reason.txt").write_text("THINK ABOUT {problem} [{summary}]")
    # the scripted summariser recognises strop's phrases; the rest of the wording is this folder's
    (folder / "summarize.txt").write_text("Write a first-person summary of {problem} [{summary}]\nHere is my latest attempt:\n{reasoning}")
    spec = RCSpec(turns=2, states=3, prompts=str(folder))
    rows = rc_rows(spec, n=1, k=2)
    backend = scripted()
    states = rows.step_states(backend, groups=3)
    reasoning = [p for p in backend.prompts if "Write a first-person summary" not in p]
    assert reasoning == ["Question: THINK ABOUT Q0? []\nAnswer:", "Question: THINK ABOUT Q0? [S1:Q0?]\nAnswer:"]
    for s, row in zip(states, rows.rows(states)[::2]):
        assert row["prompt"] == f"Question: THINK ABOUT Q0? [{s.summary}]\nAnswer:"
    # the run folder keeps the templates; a resumed run must train on the same ones
    keep_prompts(tmp_path / "run" / "rc_prompts", rows.config.prompts)
    keep_prompts(tmp_path / "run" / "rc_prompts", rows.config.prompts)
    assert load_prompts(tmp_path / "run" / "rc_prompts") == rows.config.prompts
    with pytest.raises(ConfigError, match="differ from the ones this run started with"):
        keep_prompts(tmp_path / "run" / "rc_prompts", RCConfig().prompts)
    with pytest.raises(ConfigError, match="not a folder"):
        RCSpec(prompts=str(tmp_path / "missing"))


def test_a_recipes_chat_template_switches_reach_the_trained_rows():
    template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
                "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}")
    tok = SimpleNamespace(chat_template=template, bos_token="", eos_token="")
    rows = RCRows(RCSpec(turns=1, states=1), SevenTask(), problems(1), tok, reasoning_tokens=8, temperature=1.0,
                  num_generations=1, seed=0, template_kwargs={"enable_thinking": False})
    (row,) = rows.rows([RCState("p0", "", 0)])
    assert row["prompt"] == "<user>" + reason_prompt(rows.config, "Q0?", "") + "<assistant><think></think>"
    with pytest.raises(ConfigError, match="add_generation_prompt"):
        recipe_from_dict({"data": {"task": "arithmetic"}, "output": "x", "model": {"chat_template_kwargs": {"add_generation_prompt": 1}}})
