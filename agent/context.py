"""Everything a run needs that is not state: the model, the tools, the limits and where events go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.approval import ApprovalPolicy
from agent.events import EventSink
from agent.model import ChatModel
from backends.client.config import AnswerStep, ToolMode
from tools.base import Tool


@dataclass(frozen=True, slots=True)
class Answerer:
    """A second model that writes the answer once tools have run (`auto` routing)."""

    model: ChatModel
    tool_mode: ToolMode


@dataclass(frozen=True, slots=True)
class AgentContext:
    model: ChatModel
    tool_mode: ToolMode
    tools: Mapping[str, Tool]
    emit: EventSink
    system_prompt: str
    max_steps: int = 6
    tool_timeout_s: float = 30.0
    max_tokens: int | None = None
    answer_step: AnswerStep = "none"
    answerer: Answerer | None = None
    context_length: int | None = None
    """The backend's context window in tokens; the history is trimmed to fit it."""
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    """Which tools ask the user first, and the decisions a resumed run carries out."""

    def history_budget(self, system_tokens: int) -> int | None:
        """Tokens left for the conversation after the system prompt and a reserve for the answer."""
        if self.context_length is None:
            return None
        reserve = self.max_tokens or min(1024, self.context_length // 4)
        return max(256, self.context_length - reserve - system_tokens)

    @property
    def offers_tools(self) -> bool:
        return self.tool_mode != "none" and bool(self.tools)
