"""Tool calls that wait for the user: which tools ask first, what the user decided, and where a paused
run picks up again.

A run that meets a call of an `ask` tool stops before it (outcome `awaiting_approval`) with the call
left without a result. The app stores the pause; once the user decides, it runs the agent again on
the same history with the decisions in `ApprovalPolicy.decisions`: the graph starts at the tool node,
which runs the approved calls and answers the declined ones with `declined_result`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.messages import ChatMessage, ToolCall, tool_calls_of

DECLINED_RESULT = "Error: the user declined this tool call{reason}. Answer without it."
TIMED_OUT_REASON = "timed out"


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    approved: bool
    reason: str | None = None
    """The user's words (or `timed out`), passed on to the model when the call is declined."""


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    ask: frozenset[str] = frozenset()
    """Names of the offered tools whose every call waits for the user's approval."""
    decisions: Mapping[str, ApprovalDecision] = field(default_factory=dict)
    """What the user decided, by call id, for the calls a paused run waited on."""

    def needs_asking(self, call: ToolCall) -> bool:
        return call.name in self.ask and call.id not in self.decisions


def declined_result(decision: ApprovalDecision) -> str:
    """The tool result the model reads for a call the user declined (or let time out)."""
    reason = f" ({' '.join(decision.reason.split())[:200]})" if decision.reason else ""
    return DECLINED_RESULT.format(reason=reason)


def unanswered_calls(messages: list[ChatMessage]) -> list[ToolCall]:
    """The tool calls of the latest assistant message that no tool message after it answers yet: all
    of them right after the model asked, the ones that waited for approval when a run resumes."""
    answered: set[str] = set()
    for message in reversed(messages):
        if message["role"] == "tool":
            answered.add(str(message.get("tool_call_id")))
            continue
        if message["role"] == "assistant":
            return [call for call in tool_calls_of(message) if call.id not in answered]
        return []
    return []
