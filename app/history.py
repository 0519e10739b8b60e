"""Stored messages -> the canonical chat history the agent continues from."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from agent.messages import ChatMessage
from app.db.models import Message

UNFINISHED_TOOL_RESULT = "Error: this tool call did not finish (the answer was stopped)."


def to_history(
    rows: Sequence[Message], waiting: Collection[str] = (), attached: Mapping[int, str] | None = None
) -> list[ChatMessage]:
    """Rebuild the conversation for the model.

    Every assistant tool call is followed by a result, even when a run was stopped or the server
    died between the call and its result: backends reject a history with an unanswered tool call,
    which would make the conversation impossible to continue. The exception is `waiting`: the ids of
    the calls a run paused for approval (at the end of the history), left open for it to resume.
    """
    history: list[ChatMessage] = []
    open_calls: list[tuple[str, str]] = []

    def close_open_calls(*, at_end: bool = False) -> None:
        for call_id, name in open_calls:
            if at_end and call_id in waiting:
                continue
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
            # `attached`: user messages as the model reads them, with the documents they reference.
            content = attached.get(row.id, row.content) if attached and row.role == "user" else row.content
            history.append({"role": row.role, "content": content})
    close_open_calls(at_end=True)
    return history
