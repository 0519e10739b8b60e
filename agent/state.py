"""The graph's state: the conversation so far and how far the run has come."""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from agent.messages import ChatMessage

Outcome = Literal["running", "answered", "step_limit"]


class AgentState(TypedDict):
    messages: Annotated[list[ChatMessage], operator.add]
    steps: int
    """Model calls made so far in this run."""
    outcome: Outcome
    tool_errors: bool
    """Whether any call of the last tool round failed (the answer step then waits: see nodes)."""
