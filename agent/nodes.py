"""The graph's nodes: call the model, run the tools, and the routing between them."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from langgraph.runtime import Runtime

from agent import answer_step as answer_step_policy
from agent import prompts
from agent.approval import ApprovalDecision, declined_result, unanswered_calls
from agent.context import AgentContext
from agent.events import ApprovalRequired, AssistantTurn, TextDelta, ToolFinished, ToolStarted, Usage
from agent.messages import ToolCall, assistant_message, new_call_id, tool_calls_of, tool_message
from agent.model import ChatModel, ToolCallDelta
from agent.prompted_tools import MalformedToolCall, StreamFilter, parse_tool_calls, tools_prompt
from agent.render import render_messages
from agent.state import AgentState
from agent.trim import CHARS_PER_TOKEN, trim_history
from tools.base import ToolOutput, error_output

MAX_CORRECTION_ROUNDS = 1
"""On a backend with an answer step, tool rounds allowed to follow a failed call before the answer."""

MALFORMED = ""
"""Name given to a tool call that could not be read, so the tool node answers with a parse error."""


def native_tool_specs(ctx: AgentContext) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in ctx.tools.values()
    ]


async def call_model(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    step = state["steps"] + 1
    history = state["messages"]
    after_tools = answer_step_policy.after_tool_results(history)
    # After a failed call the model keeps its tools for one more round, so it can correct the call (a
    # small model writes `2^20` or names a tool that does not exist): an answer step right away would
    # only explain the error.
    correcting = state["last_round_failed"] and state["failed_rounds"] <= MAX_CORRECTION_ROUNDS
    answer_step = ctx.answer_step != "none" and after_tools and not correcting
    # With a separate answerer (auto routing), the answer after a tool round is its job.
    answerer = ctx.answerer if ctx.answerer is not None and after_tools else None
    final_step = step >= ctx.max_steps or answer_step or answerer is not None
    offer_tools = ctx.offers_tools and not final_step
    model, tool_mode = (answerer.model, answerer.tool_mode) if answerer else (ctx.model, ctx.tool_mode)
    prompted = tool_mode == "prompted"

    system = ctx.system_prompt
    if offer_tools and prompted:
        system = f"{system}\n\n{tools_prompt(list(ctx.tools.values()))}"
    if answer_step:
        history = (
            answer_step_policy.nudge(history)
            if ctx.answer_step == "nudge"
            else answer_step_policy.inline(history)
        )
    elif final_step and step > 1:
        system = f"{system}\n\n{prompts.FINAL_STEP_NOTE}"
    tool_specs_size = sum(len(str(t.parameters)) + len(t.description) for t in ctx.tools.values())
    budget = ctx.history_budget((len(system) + tool_specs_size) // CHARS_PER_TOKEN)
    if budget is not None:
        history = trim_history(history, budget)
    messages = render_messages(system, history, tool_mode)
    native_tools = native_tool_specs(ctx) if offer_tools and not prompted else None

    text, calls, usage = await _stream_reply(ctx, model, messages, native_tools, prompted=prompted)

    if calls and final_step:
        # Out of steps: keep the words, drop the calls, so no tool call is left without a result.
        await ctx.emit(AssistantTurn(text, [], usage, step, model.name))
        return {"messages": [assistant_message(text, [])], "steps": step, "outcome": "step_limit"}
    await ctx.emit(AssistantTurn(text, calls, usage, step, model.name))
    outcome = "running" if calls else "answered"
    return {"messages": [assistant_message(text, calls)], "steps": step, "outcome": outcome}


async def _stream_reply(
    ctx: AgentContext,
    model: ChatModel,
    messages: list[dict[str, Any]],
    native_tools: list[dict[str, Any]] | None,
    *,
    prompted: bool,
) -> tuple[str, list[ToolCall], Usage | None]:
    stream_filter = StreamFilter() if prompted else None
    parts: list[str] = []
    partial_calls: dict[int, ToolCallDelta] = {}
    usage: Usage | None = None
    async for chunk in model.stream(messages, tools=native_tools, max_tokens=ctx.max_tokens):
        if chunk.text:
            parts.append(chunk.text)
            visible = stream_filter.feed(chunk.text) if stream_filter else chunk.text
            if visible:
                await ctx.emit(TextDelta(visible))
        for delta in chunk.tool_calls:
            _merge_delta(partial_calls, delta)
        if chunk.usage:
            usage = chunk.usage
    if stream_filter:
        tail = stream_filter.finish()
        if tail:
            await ctx.emit(TextDelta(tail))
    text = "".join(parts)
    calls = [
        ToolCall(d.id or new_call_id(), d.name or MALFORMED, d.arguments)
        for _, d in sorted(partial_calls.items())
    ]
    if prompted:
        try:
            parsed = parse_tool_calls(text)
            text, calls = parsed.text, calls + parsed.tool_calls
        except MalformedToolCall as exc:
            calls.append(ToolCall(new_call_id(), MALFORMED, str(exc)))
            text = text[: text.find("<tool_call>")].strip() if "<tool_call>" in text else ""
    return text, calls, usage


def _merge_delta(partial: dict[int, ToolCallDelta], delta: ToolCallDelta) -> None:
    current = partial.get(delta.index)
    if current is None:
        partial[delta.index] = ToolCallDelta(delta.index, delta.id, delta.name, delta.arguments)
        return
    current.id = current.id or delta.id
    current.name = (
        (current.name or "") + (delta.name or "")
        if delta.name and current.name != delta.name
        else (current.name or delta.name)
    )
    current.arguments += delta.arguments


async def call_tools(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    # Unanswered rather than all: a resumed run comes back here with the calls that did not wait
    # already answered (agent/approval.py).
    calls = unanswered_calls(state["messages"])
    waiting = [call for call in calls if ctx.approvals.needs_asking(call)]
    for call in waiting:
        await ctx.emit(ApprovalRequired(call, _arguments_or_none(call)))
    running = [call for call in calls if not ctx.approvals.needs_asking(call)]
    outputs = await asyncio.gather(*(_decided_or_run(ctx, call) for call in running))
    failed = any(out.error is not None for out in outputs)
    update: dict[str, Any] = {
        "messages": [tool_message(call, out.content) for call, out in zip(running, outputs, strict=True)],
        "last_round_failed": failed,
        "failed_rounds": state["failed_rounds"] + failed,
    }
    # A resumed run enters with `awaiting_approval` (see route_start); it runs on unless asked again.
    update["outcome"] = "awaiting_approval" if waiting else "running"
    return update


async def _decided_or_run(ctx: AgentContext, call: ToolCall) -> ToolOutput:
    decision = ctx.approvals.decisions.get(call.id)
    if decision is None or decision.approved:
        return await _run_tool(ctx, call)
    return await _declined(ctx, call, decision)


async def _declined(ctx: AgentContext, call: ToolCall, decision: ApprovalDecision) -> ToolOutput:
    """The step of a call the user declined: shown like any tool step, with what the model is told."""
    await ctx.emit(ToolStarted(call, _arguments_or_none(call)))
    reason = f"declined: {decision.reason}" if decision.reason else "declined by the user"
    output = ToolOutput(content=declined_result(decision), error=reason)
    await ctx.emit(ToolFinished(call, output.content, [], output.error, 0.0))
    return output


def _arguments_or_none(call: ToolCall) -> dict[str, Any] | None:
    try:
        return call.parsed_arguments()
    except ValueError:
        return None


async def _run_tool(ctx: AgentContext, call: ToolCall) -> ToolOutput:
    started = time.perf_counter()
    arguments: dict[str, Any] | None = None
    if call.name == MALFORMED:
        output = _malformed(call.arguments)
    else:
        try:
            arguments = call.parsed_arguments()
        except ValueError as exc:
            output = _malformed(f"arguments are not a JSON object: {exc}")
        else:
            output = ToolOutput(content="")
    await ctx.emit(ToolStarted(call, arguments))
    if arguments is not None:
        output = await _invoke(ctx, call.name, arguments)
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    await ctx.emit(
        ToolFinished(call, output.content, output.sources, output.error, duration_ms, output.attachments)
    )
    return output


def _malformed(reason: str) -> ToolOutput:
    return ToolOutput(
        content=prompts.MALFORMED_TOOL_CALL.format(reason=reason), error=f"malformed tool call: {reason}"
    )


async def _invoke(ctx: AgentContext, name: str, arguments: dict[str, Any]) -> ToolOutput:
    tool = ctx.tools.get(name)
    if tool is None:
        available = ", ".join(ctx.tools) or "none"
        return ToolOutput(
            content=prompts.UNKNOWN_TOOL.format(name=name, available=available),
            error=f"unknown tool {name!r}",
        )
    task = asyncio.create_task(tool.run(arguments))
    try:
        done, _ = await asyncio.wait({task}, timeout=ctx.tool_timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        # Not wait_for: it waits for the cancelled tool to wind down, so a tool that ignores or is slow
        # to honour cancellation would hold the run past its timeout. The tool is left to end alone.
        task.cancel()
        task.add_done_callback(_forget)
        return error_output(f"the {name} tool did not answer within {ctx.tool_timeout_s:g} s")
    try:
        return task.result()
    except asyncio.CancelledError:  # the tool cancelled itself: still its failure, not the run's
        return error_output(f"the {name} tool was cancelled")
    except Exception as exc:  # a tool bug must reach the model as an error, not end the run
        return error_output(f"the {name} tool failed: {type(exc).__name__}: {exc}")


def _forget(task: asyncio.Task[ToolOutput]) -> None:
    """Retrieve an abandoned tool's outcome, so that its failure is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()


def route_after_model(state: AgentState) -> Literal["tools", "__end__"]:
    if state["outcome"] == "running" and tool_calls_of(state["messages"][-1]):
        return "tools"
    return "__end__"


def route_after_tools(state: AgentState) -> Literal["model", "__end__"]:
    return "__end__" if state["outcome"] == "awaiting_approval" else "model"


def route_start(state: AgentState) -> Literal["model", "tools"]:
    """A resumed run (`run_agent(..., resume=True)`) starts with the tool calls that waited for
    approval; a new one with the model."""
    return "tools" if state["outcome"] == "awaiting_approval" else "model"
