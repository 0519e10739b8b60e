"""What the scripted backend answers, decided from the request alone (a pure function, easy to test).

The convention: directives in the latest user message pick the behaviour.

| directive              | behaviour                                                               |
|------------------------|-------------------------------------------------------------------------|
| `calc: <expression>`   | calls `calculator` with the expression, then answers with its result     |
| `search: <query>`      | calls `web_search`, then answers citing the first result                 |
| `calc+search: <q>`     | calls both tools at once, then answers                                  |
| `docs: <query>`        | calls `search_documents` (attached files), then quotes the best passage  |
| `loop`                 | calls `calculator` at every step, even unasked, never answers (limits)  |
| `badargs`              | a tool call whose arguments are not JSON (malformed tool-call tests)    |
| `tokens: N`            | answers with N words                                                    |
| `delay: MS`            | waits MS milliseconds between streamed tokens                           |
| `fail: before`         | answers HTTP 500 before streaming                                       |
| `fail: midstream`      | streams a few tokens, then drops the connection                         |
| `fail: garbage`        | streams a few tokens, then a line that is not JSON                      |
| `fail: nodone`         | ends the stream without `[DONE]`                                        |
| `hang`                 | streams one token, then stalls (cancel tests)                           |
| `tool: NAME {json}`    | calls the tool NAME (any tool, MCP ones included) with those arguments  |
| `history`              | answers `History: ` and every user and assistant text it was sent, ` | ` |
|                        | between them (what the model sees of a conversation)                    |
| anything else          | answers `Echo: <the message>`                                           |

Tool calls are native `tool_calls` when the request offers `tools`, or `<tool_call>` text blocks when
the system prompt describes tools in text (prompted mode); without either, the reply is plain text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_DIRECTIVE = re.compile(
    r"^\s*(calc\+search|calc|search|docs|tool|tokens|delay|fail)\s*:\s*(.+?)\s*$", re.MULTILINE
)
_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "streaming",
    "tokens",
    "arrive",
    "one",
    "by",
    "one",
]


@dataclass(slots=True)
class Reply:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    """(tool name, arguments object, or raw argument text when deliberately malformed)."""
    prompted: bool = False
    delay_ms: float | None = None
    failure: str | None = None
    hang: bool = False

    def tokens(self) -> list[str]:
        """The text split into stream chunks: words with their leading space."""
        return re.findall(r"\s*\S+", self.text) or ([self.text] if self.text else [])


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _split(messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The latest real user message, and the tool results that came after it."""
    results: list[str] = []
    for message in reversed(messages):
        role, text = message.get("role"), _content(message)
        if role == "tool":
            results.append(text)
        elif role == "user" and "<tool_result" in text:
            results.extend(re.findall(r"<tool_result[^>]*>\s*(.*?)\s*</tool_result>", text, re.DOTALL))
        elif role == "user":
            return text, list(reversed(results))
    return "", list(reversed(results))


def decide(request: dict[str, Any]) -> Reply:
    messages = request.get("messages") or []
    system = " ".join(_content(m) for m in messages if m.get("role") == "system")
    native = bool(request.get("tools"))
    prompted = not native and "<tool_call>" in system
    user, results = _split(messages)
    directives = {k: v for k, v in _DIRECTIVE.findall(user)}
    reply = Reply(prompted=prompted)
    if "delay" in directives:
        reply.delay_ms = float(directives["delay"])
    if "fail" in directives:
        reply.failure = directives["fail"]
    can_call = native or prompted
    stripped = user.strip()

    if stripped == "hang":
        reply.hang = True
        reply.text = "Thinking"
    elif stripped == "history":
        seen = [f"{m.get('role')}={_content(m)}" for m in messages if m.get("role") in ("user", "assistant")]
        reply.text = "History: " + " | ".join(seen)
    elif stripped == "loop":  # insists on tools even when none are offered, as a stubborn model would
        reply.tool_calls = [("calculator", {"expression": f"{len(results) + 1}+1"})]
    elif stripped == "badargs" and can_call and not results:
        reply.tool_calls = [("calculator", '{"expression": "1+')]
    elif results and stripped != "loop":
        reply.text = _answer_from(results)
    elif can_call and "tool" in directives:
        name, _, raw = directives["tool"].partition(" ")
        try:
            arguments: dict[str, Any] | str = json.loads(raw) if raw.strip() else {}
        except ValueError:
            arguments = raw  # sent as written: a malformed call
        reply.tool_calls = [(name, arguments)]
    elif can_call and "docs" in directives:
        reply.tool_calls = [("search_documents", {"query": directives["docs"]})]
    elif can_call and ("calc" in directives or "search" in directives or "calc+search" in directives):
        if "calc+search" in directives:
            query = directives["calc+search"]
            reply.tool_calls = [("calculator", {"expression": query}), ("web_search", {"query": query})]
        elif "calc" in directives:
            reply.tool_calls = [("calculator", {"expression": directives["calc"]})]
        else:
            reply.tool_calls = [("web_search", {"query": directives["search"]})]
    elif "tokens" in directives:
        count = max(1, min(int(directives["tokens"]), 100_000))
        reply.text = " ".join(_WORDS[i % len(_WORDS)] for i in range(count))
    else:
        reply.text = f"Echo: {user}" if user else "Hello! Ask me anything."
    return reply


def _answer_from(results: list[str]) -> str:
    parts = []
    for result in results:
        if result.startswith("Error"):
            parts.append(f"The tool reported a problem: {result}")
            continue
        passage = re.search(r"^\[1\] (.+):\n(.+)$", result, re.MULTILINE)
        if passage and "<document_passages>" in result:
            parts.append(f"According to {passage.group(1)}: {passage.group(2)[:300]}")
            continue
        url = re.search(r"https?://\S+", result)
        first = result.strip().splitlines()[0] if result.strip() else ""
        if url and "<search_results" in result:
            parts.append(f"According to [{url.group(0)}]({url.group(0)}), here is what I found.")
        else:
            parts.append(f"The result is {first}.")
    return " ".join(parts)


def prompted_call_text(tool_calls: list[tuple[str, dict[str, Any] | str]]) -> str:
    blocks = []
    for name, arguments in tool_calls:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        blocks.append(f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>')
    return "\n".join(blocks)


def count_tokens(request: dict[str, Any]) -> int:
    """A rough prompt token count (words), enough for usage reporting in tests."""
    return sum(len(_content(m).split()) for m in request.get("messages") or [])
