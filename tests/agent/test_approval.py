"""Pausing before a tool call that waits for the user, and resuming with the decision."""

from __future__ import annotations

from agent.approval import ApprovalDecision, ApprovalPolicy, unanswered_calls
from agent.context import AgentContext
from agent.events import ApprovalRequired, ToolFinished, ToolStarted, Usage
from agent.graph import run_agent
from agent.model import ModelChunk, ToolCallDelta
from tests.agent.fakes import EchoTool, Recorder, ScriptedModel, native_call, text

USER = [{"role": "user", "content": "hi"}]


def two_calls() -> list[ModelChunk]:
    """One turn calling `guarded` (asks first) and `echo` (runs at once)."""
    return [
        ModelChunk(tool_calls=[ToolCallDelta(0, "call_ask", "guarded", '{"text": "a"}')]),
        ModelChunk(tool_calls=[ToolCallDelta(1, "call_auto", "echo", '{"text": "b"}')]),
        ModelChunk(usage=Usage(10, 5)),
    ]


def context(
    model: ScriptedModel, rec: Recorder, guarded: EchoTool, echo: EchoTool, **policy: object
) -> AgentContext:
    return AgentContext(
        model=model,
        tool_mode="native",
        tools={"guarded": guarded, "echo": echo},
        emit=rec,
        system_prompt="SYSTEM",
        approvals=ApprovalPolicy(ask=frozenset({"guarded"}), **policy),  # type: ignore[arg-type]
    )


async def test_an_ask_call_pauses_the_run_after_the_auto_calls_ran() -> None:
    guarded, echo = EchoTool(name="guarded"), EchoTool()
    model, rec = ScriptedModel([two_calls()]), Recorder()
    result = await run_agent(context(model, rec, guarded, echo), USER)
    assert result.outcome == "awaiting_approval"
    assert [e.call.id for e in rec.of(ApprovalRequired)] == ["call_ask"]
    assert rec.of(ApprovalRequired)[0].arguments == {"text": "a"}
    assert guarded.calls == []
    assert echo.calls == [{"text": "b"}]
    assert len(model.requests) == 1  # the model is not called again while the call waits
    assert [m["role"] for m in result.messages] == ["assistant", "tool"]
    assert [c.id for c in unanswered_calls(USER + result.messages)] == ["call_ask"]


async def paused_history() -> list[dict[str, object]]:
    guarded, echo = EchoTool(name="guarded"), EchoTool()
    result = await run_agent(context(ScriptedModel([two_calls()]), Recorder(), guarded, echo), USER)
    return USER + result.messages


async def test_approved_call_runs_on_resume_and_the_model_answers() -> None:
    history = await paused_history()
    guarded, echo = EchoTool(name="guarded"), EchoTool()
    model, rec = ScriptedModel([text("done")]), Recorder()
    decisions = {"call_ask": ApprovalDecision(True)}
    ctx = context(model, rec, guarded, echo, decisions=decisions)
    result = await run_agent(ctx, history, resume=True, steps=1)
    assert result.outcome == "answered"
    assert result.answer == "done"
    assert guarded.calls == [{"text": "a"}]
    assert echo.calls == []
    assert [e.call.id for e in rec.of(ToolStarted)] == ["call_ask"]
    sent = model.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_ask", "name": "guarded", "content": "echo: a"}
    assert not rec.of(ApprovalRequired)


async def test_declined_call_is_told_to_the_model_with_the_reason() -> None:
    history = await paused_history()
    guarded, echo = EchoTool(name="guarded"), EchoTool()
    model, rec = ScriptedModel([text("ok, without it")]), Recorder()
    ctx = context(model, rec, guarded, echo, decisions={"call_ask": ApprovalDecision(False, "timed out")})
    result = await run_agent(ctx, history, resume=True, steps=1)
    assert result.answer == "ok, without it"
    assert guarded.calls == []
    finished = rec.of(ToolFinished)[0]
    assert finished.error == "declined: timed out"
    assert "declined" in finished.content
    assert "timed out" in finished.content
    assert model.requests[0]["messages"][-1]["content"] == finished.content


async def test_a_resumed_run_keeps_its_step_count() -> None:
    history = await paused_history()
    guarded, echo = EchoTool(name="guarded"), EchoTool()
    # Steps 1 of 2 used before the pause: the model's next call is the last, made without tools.
    model, rec = ScriptedModel([text("final")]), Recorder()
    ctx = AgentContext(
        model=model,
        tool_mode="native",
        tools={"guarded": guarded, "echo": echo},
        emit=rec,
        system_prompt="SYSTEM",
        max_steps=2,
        approvals=ApprovalPolicy(frozenset({"guarded"}), {"call_ask": ApprovalDecision(True)}),
    )
    result = await run_agent(ctx, history, resume=True, steps=1)
    assert result.steps == 2
    assert model.requests[0]["tools"] is None


async def test_without_ask_tools_a_call_runs_at_once() -> None:
    echo = EchoTool()
    model, rec = ScriptedModel([native_call("echo", '{"text": "x"}'), text("fine")]), Recorder()
    ctx = AgentContext(model=model, tool_mode="native", tools={"echo": echo}, emit=rec, system_prompt="S")
    result = await run_agent(ctx, USER)
    assert result.outcome == "answered"
    assert echo.calls == [{"text": "x"}]
    assert not rec.of(ApprovalRequired)
