"""The graph's state: the conversation so far and how far the run has come."""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from agent.messages import ChatMessage

Outcome = Literal["running", "answered", "step_limit", "awaiting_approval"]
"""`awaiting_approval`: stopped before calls that wait for the user (agent/approval.py)."""


class AgentState(TypedDict):
    messages: Annotated[list[ChatMessage], operator.add]
    steps: int
    """Model calls made so far in this run."""
    outcome: Outcome
    failed_rounds: int
    """Tool rounds of this run in which a call failed (the answer step waits for one: see nodes)."""
    last_round_failed: bool
