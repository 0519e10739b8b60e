"""Stored messages -> the canonical chat history the agent continues from."""

from __future__ import annotations

from collections.abc import Sequence

from agent.messages import ChatMessage
from app.db.models import Message

UNFINISHED_TOOL_RESULT = "Error: this tool call did not finish (the answer was stopped)."


def to_history(rows: Sequence[Message]) -> list[ChatMessage]:
    """Rebuild the conversation for the model.

    Every assistant tool call is followed by a result, even when a run was stopped or the server
    died between the call and its result: backends reject a history with an unanswered tool call,
    which would make the conversation impossible to continue.
    """
    history: list[ChatMessage] = []
    open_calls: list[tuple[str, str]] = []

    def close_open_calls() -> None:
        for call_id, name in open_calls:
            history.append(
                {"role": "tool", "tool_call_id": call_id, "name": name, "content": UNFINISHED_TOOL_RESULT}
            )
        open_calls.clear()

    for row in rows:
        if row.role == "tool":
            if any(call_id == row.tool_call_id for call_id, _ in open_calls):
                open_calls[:] = [c for c in open_calls if c[0] != row.tool_call_id]
                history.append(
                    {
                        "role": "tool",
                        "tool_call_id": row.tool_call_id,
                        "name": row.name or "",
                        "content": row.content,
                    }
                )
            continue  # a result whose call is not in the history would be rejected too
        close_open_calls()
        if row.role == "assistant":
            if not row.content and not row.tool_calls:
                continue  # a failed answer that produced nothing
            message: ChatMessage = {"role": "assistant", "content": row.content}
            if row.tool_calls:
                message["tool_calls"] = row.tool_calls
                open_calls.extend(
                    (str(c.get("id")), str((c.get("function") or {}).get("name", ""))) for c in row.tool_calls
                )
            history.append(message)
        elif row.role in ("user", "system"):
            history.append({"role": row.role, "content": row.content})
    close_open_calls()
    return history
