"""A chat with earlier turns, for the methods that answer one question (``rc``, ``self-refine``, ``long``).

These methods build their own prompts from one problem text, so a chat's
messages must become that text, or be refused; nothing may be dropped
without saying so. Two modes (``strop serve --conversation``, per request
``strop.conversation``):

- ``refuse`` (the default): one user message and at most one system message;
  anything more is a 400 that names the way out.
- ``context``: the earlier turns become part of the problem. The last message
  must be the user's (the question); every user and assistant message before
  it is written out above it, in order, as

  .. code-block:: text

      Earlier in this conversation:

      User: <first user message>

      Assistant: <reply>

      Question: <last user message>

  and that whole text is RC's ``{problem}`` (every reasoning turn and summary
  sees it). A single question is passed on as is, in both modes.

In both modes a system (or developer) message is the system message of every
prompt the method builds; more than one, or a ``tool`` message, is a 400.
"""

from __future__ import annotations

from collections.abc import Sequence

from strop.backends.chat import Message

MODES = ("refuse", "context")


class Refused(ValueError):
    """Why a chat cannot be one problem; the server answers 400 with it (``param`` = messages)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def as_problem(messages: Sequence[Message], method: str, mode: str) -> tuple[str, str | None]:
    """(the problem text, the system message or None) of a chat for a method that answers one question.

    ``messages`` have roles system / user / assistant / tool (a developer
    message is a system message by now). Raises ``Refused``.
    """
    if mode not in MODES:
        raise Refused(f"strop.conversation must be one of {', '.join(MODES)}, got {mode!r}", "invalid_conversation_mode")
    systems = [m["content"] for m in messages if m["role"] == "system"]
    if len(systems) > 1:
        raise Refused(f"method {method!r} takes at most one system message, got {len(systems)}", "conversation_not_supported")
    tools = [i for i, m in enumerate(messages) if m["role"] == "tool"]
    if tools:
        raise Refused(f"method {method!r} cannot read tool messages (messages[{tools[0]}])", "conversation_not_supported")
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    if not any(m["role"] == "user" for m in turns):
        raise Refused(f"method {method!r} needs a user message (the problem)", "missing_question")
    system = systems[0] if systems else None
    if len(turns) == 1:
        return turns[0]["content"], system
    if mode == "refuse":
        raise Refused(f"method {method!r} answers one question and does not support earlier turns by default: this "
                      f"conversation has {len(turns) - 1} earlier user/assistant message(s), which it would otherwise drop. "
                      f"Send one user message (and at most one system message), or set strop.conversation to 'context' "
                      f"(or run strop serve --conversation context) to make the earlier turns part of the problem",
                      "conversation_not_supported")
    if turns[-1]["role"] != "user":
        raise Refused(f"with strop.conversation 'context' the last message must be the user's question, got a "
                      f"{turns[-1]['role']} message", "conversation_not_supported")
    earlier = "\n\n".join(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in turns[:-1])
    return f"Earlier in this conversation:\n\n{earlier}\n\nQuestion: {turns[-1]['content']}", system
