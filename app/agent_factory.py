"""Builds the agent's run context for a backend, from settings, in one place for every entry point."""

from __future__ import annotations

from collections.abc import Mapping

from agent.context import AgentContext, Answerer
from agent.events import EventSink
from agent.model import BackendChatModel
from agent.prompts import SYSTEM_PROMPT
from app.settings import Settings
from backends.client.http_client import BackendClient
from backends.client.registry import BackendRegistry
from tools.base import Tool


def agent_context(
    registry: BackendRegistry,
    client: BackendClient,
    answerer: BackendClient | None,
    tools: Mapping[str, Tool],
    settings: Settings,
    emit: EventSink,
    *,
    extra_instructions: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> AgentContext:
    system = settings.system_prompt or SYSTEM_PROMPT
    if extra_instructions:
        system = f"{system}\n\n{extra_instructions}"
    config = client.config
    return AgentContext(
        model=BackendChatModel(
            client, temperature=temperature, fallback=registry.fallback_of(client), emit=emit
        ),
        tool_mode=config.tool_mode,
        tools=tools,
        emit=emit,
        system_prompt=system,
        max_steps=settings.agent_max_steps,
        tool_timeout_s=settings.tool_timeout_s,
        max_tokens=max_tokens or config.max_tokens,
        answer_step=config.answer_step,
        context_length=config.context_length,
        answerer=Answerer(
            BackendChatModel(
                answerer, temperature=temperature, fallback=registry.fallback_of(answerer), emit=emit
            ),
            answerer.config.tool_mode,
        )
        if answerer
        else None,
    )
