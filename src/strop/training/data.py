"""Training problems from strop tasks: held-out removal, curriculum arms, and prompt rows.

Training and evaluation must pose a problem identically, or a gain measured by
``strop eval`` could come from a prompt change rather than from training; so
prompts are rendered here with the same chat renderer ``strop eval`` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from strop.errors import ConfigError
from strop.tasks import Problem, Task, resolve_task
from strop.training.recipe import DataSpec

log = logging.getLogger(__name__)

# The arm of problems that have no category.
UNCATEGORISED = "all"


def category_of(problem: Problem) -> str:
    return problem.category or UNCATEGORISED


def training_problems(spec: DataSpec) -> tuple[Task, list[Problem]]:
    """The task and its training problems: held-out questions removed, categories filtered, limit applied."""
    task = resolve_task(spec.task, spec.fields, spec.verifier, spec.data)
    problems = task.load(spec.data, seed=spec.seed)
    if spec.holdout_seed is not None or spec.holdout_data is not None:
        held = task.load(spec.holdout_data, seed=spec.holdout_seed if spec.holdout_seed is not None else 0)
        held_q = {p.question.strip() for p in held}
        before = len(problems)
        problems = [p for p in problems if p.question.strip() not in held_q]
        log.info("removed %d training problems that appear in the held-out set", before - len(problems))
    if spec.categories is not None:
        wanted = set(spec.categories)
        problems = [p for p in problems if category_of(p) in wanted]
        missing = wanted - {category_of(p) for p in problems}
        if missing:
            raise ConfigError(f"no training problems in categories {sorted(missing)} of task '{task.name}'")
    if spec.limit is not None:
        problems = problems[: spec.limit]
    if not problems:
        raise ConfigError(f"no training problems left for task '{task.name}'")
    return task, problems


def arms_of(spec: DataSpec, problems: Sequence[Problem]) -> list[str]:
    """Curriculum arms: the recipe's categories in its order, else the sorted category names."""
    if spec.categories is not None:
        return list(spec.categories)
    return sorted({category_of(p) for p in problems})


def render_chat_text(tokenizer: Any, text: str, system: str | None, template_kwargs: Mapping[str, Any] | None = None) -> str:
    """A user message as prompt text, exactly as strop's backends render it (the model's chat template via strop's renderer).

    ``template_kwargs``: chat-template variables (a recipe's ``model.chat_template_kwargs``), as the backends' ``chat_prompt`` takes them.
    """
    from strop.backends.chat import render_chat, user_turn

    return render_chat(
        getattr(tokenizer, "chat_template", None), user_turn(text, system),
        bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "", template_kwargs=template_kwargs,
    )


def prompt_token_ids(tokenizer: Any, prompt: str, system: str | None,
                     template_kwargs: Mapping[str, Any] | None = None) -> list[int] | None:
    """The ids to train on for a row's ``prompt`` (``render_chat_text(tokenizer, text, system)``): message text stays text.

    TRL tokenises a text prompt whole, control tokens parsed, so a problem or an
    RC summary holding ``<|im_end|>`` would become a control token. This finds
    the user text inside the rendered prompt and tokenises the chat as strop's
    backends do (``strop.backends.text.chat_ids``), with the special tokens TRL
    adds (a BOS, for tokenizers that add one) around it. For a prompt whose
    text holds no control-token text the ids are TRL's own. None when
    ``prompt`` is not such a rendering (TRL then tokenises it as usual).
    """
    from strop.backends.chat import user_turn
    from strop.backends.text import HFText, chat_ids, check_text

    check_text(prompt, "a training prompt")
    mark = "[[strop-user-text]]"
    if mark in prompt:
        return None
    pre, sep, post = render_chat_text(tokenizer, mark, system, template_kwargs).partition(mark)
    if not sep or mark in post or len(prompt) < len(pre) + len(post) or not (prompt.startswith(pre) and prompt.endswith(post)):
        return None
    text = prompt[len(pre):len(prompt) - len(post)]
    if render_chat_text(tokenizer, text, system, template_kwargs) != prompt:
        return None
    whole = list(tokenizer(text=prompt)["input_ids"])
    plain = list(tokenizer(text=prompt, add_special_tokens=False)["input_ids"])
    ids = chat_ids(HFText(tokenizer), user_turn(text, system), template_kwargs=template_kwargs)
    if ids == plain:
        return whole
    k = next((i for i in range(len(whole) - len(plain) + 1) if whole[i:i + len(plain)] == plain), None)
    if k is None:
        return None
    return whole[:k] + ids + whole[k + len(plain):]


def render_prompt(tokenizer: Any, task: Task, problem: Problem, system: str | None,
                  template_kwargs: Mapping[str, Any] | None = None) -> str:
    """The task's prompt for ``problem`` exactly as ``strop eval`` builds it."""
    return render_chat_text(tokenizer, task.prompt(problem), system, template_kwargs)


def prompt_rows(tokenizer: Any, task: Task, problems: Sequence[Problem], arms: Sequence[str],
                system: str | None = None, template_kwargs: Mapping[str, Any] | None = None) -> tuple[list[dict], dict[str, list[dict]]]:
    """Dataset rows (prompt, problem_id, category) and the same rows grouped by arm.

    The reward looks a problem up by ``problem_id`` rather than trusting
    anything else in the row, so a row cannot carry its own answer key.
    """
    rows = [{"prompt": render_prompt(tokenizer, task, p, system, template_kwargs), "problem_id": p.id, "category": category_of(p)}
            for p in problems]
    pool: dict[str, list[dict]] = {a: [] for a in arms}
    for r in rows:
        if r["category"] in pool:
            pool[r["category"]].append(r)
    empty = [a for a, v in pool.items() if not v]
    if empty:
        raise ConfigError(f"curriculum arms with no problems: {empty}")
    return rows, pool
