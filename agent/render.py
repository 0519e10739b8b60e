"""Turn the canonical conversation into the messages a particular backend understands."""

from __future__ import annotations

import json
from typing import Any

from agent import prompts
from agent.messages import ChatMessage, tool_calls_of
from backends.client.config import ToolMode


def _call_block(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        args = arguments
    return (
        "<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "\n</tool_call>"
    )


def render_messages(system: str, history: list[ChatMessage], tool_mode: ToolMode) -> list[ChatMessage]:
    """Messages for one model call.

    Native backends get OpenAI tool messages as they are. Prompted and tool-less backends get tool
    calls as text blocks and tool results as user turns, and consecutive turns of one role are merged,
    because many chat templates without tool support insist on alternating roles.
    """
    out: list[ChatMessage] = [{"role": "system", "content": system}]
    if tool_mode == "native":
        for message in history:
            out.append(_native(message))
        return out
    for message in history:
        role = message["role"]
        if role == "tool":
            text = prompts.TOOL_RESULT_BLOCK.format(
                name=message.get("name") or "tool",
                call_id=message.get("tool_call_id") or "",
                content=message.get("content") or "",
            )
            _append(out, "user", text)
        elif role == "assistant":
            parts = [message.get("content") or ""]
            parts += [_call_block(c.name, c.arguments) for c in tool_calls_of(message)]
            _append(out, "assistant", "\n".join(p for p in parts if p))
        else:
            _append(out, role, message.get("content") or "")
    return out


def _native(message: ChatMessage) -> ChatMessage:
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    clean = {k: message[k] for k in keep if message.get(k) is not None}
    if clean["role"] == "assistant" and "tool_calls" in clean and not clean.get("content"):
        clean["content"] = None
    clean.setdefault("content", "")
    if clean["role"] != "tool":
        clean.pop("name", None)
    return clean


def _append(out: list[ChatMessage], role: str, text: str) -> None:
    if not text:
        return
    if out and out[-1]["role"] == role and role != "system":
        out[-1] = {"role": role, "content": f"{out[-1]['content']}\n\n{text}"}
    else:
        out.append({"role": role, "content": text})
