"""The agent's tool timeout holds even for a tool that ignores cancellation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from agent.context import AgentContext
from agent.events import ToolFinished
from agent.graph import run_agent
from tests.agent.fakes import Recorder, ScriptedModel, native_call, text
from tools.base import ToolOutput


@dataclass
class StubbornTool:
    """Keeps working after being cancelled, as a tool stuck in a blocking call's cleanup would."""

    name: str = "stubborn"
    description: str = "Ignores cancellation."
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False

    async def run(self, arguments: dict[str, Any]) -> ToolOutput:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            await self.release.wait()  # swallows the cancellation and carries on
        finally:
            self.ended = True
        return ToolOutput(content="too late")


async def test_a_tool_that_ignores_cancellation_does_not_hold_the_run() -> None:
    tool = StubbornTool()
    model = ScriptedModel([native_call("stubborn", "{}"), text("answered anyway")])
    recorder = Recorder()
    ctx = AgentContext(
        model=model,
        tool_mode="native",
        tools={tool.name: tool},
        emit=recorder,
        system_prompt="SYSTEM",
        tool_timeout_s=0.05,
    )
    result = await run_agent(ctx, [{"role": "user", "content": "hi"}])
    assert result.answer == "answered anyway"
    assert "did not answer within 0.05 s" in (recorder.of(ToolFinished)[0].error or "")
    assert not tool.ended  # the run did not wait for the tool to give up
    tool.release.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert tool.ended
