"""The agent's logic with a scripted chat model: routing, tools, limits and failures."""

from __future__ import annotations

import time

import pytest

from agent.context import AgentContext
from agent.events import AssistantTurn, TextDelta, ToolFinished, ToolStarted
from agent.graph import build_graph, run_agent
from agent.prompts import FINAL_STEP_NOTE
from backends.client.config import ToolMode
from tests.agent.fakes import EchoTool, Recorder, ScriptedModel, native_call, text

USER = [{"role": "user", "content": "hi"}]


def context(
    model: ScriptedModel, recorder: Recorder, *, mode: ToolMode = "native", **kw: object
) -> AgentContext:
    tool = kw.pop("tool", EchoTool())
    return AgentContext(
        model=model,
        tool_mode=mode,
        tools={tool.name: tool},  # type: ignore[attr-defined]
        emit=recorder,
        system_prompt="SYSTEM",
        **kw,  # type: ignore[arg-type]
    )


def test_graph_reads_like_its_diagram() -> None:
    graph = build_graph().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    assert {("__start__", "model"), ("model", "tools"), ("tools", "model"), ("model", "__end__")} <= edges


async def test_plain_answer_streams_and_ends() -> None:
    model, rec = ScriptedModel([text("Hel", "lo")]), Recorder()
    result = await run_agent(context(model, rec), USER)
    assert result.outcome == "answered"
    assert result.answer == "Hello"
    assert [e.text for e in rec.of(TextDelta)] == ["Hel", "lo"]
    assert rec.of(AssistantTurn)[0].usage.completion_tokens == 2
    # Native mode: tools are offered as OpenAI function specs, the system prompt comes first.
    request = model.requests[0]
    assert request["tools"][0]["function"]["name"] == "echo"
    assert request["messages"][0] == {"role": "system", "content": "SYSTEM"}


async def test_native_tool_call_then_answer() -> None:
    model = ScriptedModel([native_call("echo", '{"text": "ping"}'), text("Got ping")])
    rec = Recorder()
    result = await run_agent(context(model, rec), USER)
    assert result.answer == "Got ping"
    assert [m["role"] for m in result.messages] == ["assistant", "tool", "assistant"]
    assert result.messages[1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "name": "echo",
        "content": "echo: ping",
    }
    started, finished = rec.of(ToolStarted)[0], rec.of(ToolFinished)[0]
    assert started.arguments == {"text": "ping"}
    assert finished.content == "echo: ping"
    assert finished.error is None
    # The second model call sees the tool result.
    assert model.requests[1]["messages"][-1]["role"] == "tool"


async def test_prompted_tool_call_is_parsed_from_text_and_never_shown() -> None:
    block = '<tool_call>\n{"name": "echo", "arguments": {"text": "x"}}\n</tool_call>'
    model = ScriptedModel([text(block[:9], block[9:30], block[30:]), text("Done")])
    rec = Recorder()
    result = await run_agent(context(model, rec, mode="prompted"), USER)
    assert result.answer == "Done"
    assert [e.text for e in rec.of(TextDelta)] == ["Done"]
    first, second = model.requests
    assert first["tools"] is None
    assert "<tool_call>" in first["messages"][0]["content"]  # tools described in the system prompt
    assert "- echo: Echo the text back." in first["messages"][0]["content"]
    # The tool result goes back as a user turn in a tool_result block.
    assert second["messages"][-1]["role"] == "user"
    assert second["messages"][-1]["content"].startswith('<tool_result name="echo"')


@pytest.mark.parametrize(
    "reply",
    [
        '{"name": "echo", "arguments": {"text": "x"}}',
        '```json\n{"name": "echo", "arguments": {"text": "x"}}\n```',
        '{"name": "echo", "parameters": {"text": "x"}}',
        'Let me check.\n<tool_call>{"name": "echo", "arguments": "{\\"text\\": \\"x\\"}"}</tool_call>',
    ],
)
async def test_prompted_mode_accepts_the_forms_models_write(reply: str) -> None:
    tool = EchoTool()
    model, rec = ScriptedModel([text(reply), text("ok")]), Recorder()
    await run_agent(context(model, rec, mode="prompted", tool=tool), USER)
    assert tool.calls == [{"text": "x"}]


async def test_malformed_arguments_become_an_error_for_the_model() -> None:
    tool = EchoTool()
    model = ScriptedModel([native_call("echo", '{"text": '), text("Sorry")])
    rec = Recorder()
    result = await run_agent(context(model, rec, tool=tool), USER)
    assert tool.calls == []
    finished = rec.of(ToolFinished)[0]
    assert finished.error is not None
    assert finished.error.startswith("malformed tool call")
    assert "could not be parsed" in result.messages[1]["content"]
    assert result.answer == "Sorry"


async def test_malformed_prompted_block_is_reported_to_the_model() -> None:
    model = ScriptedModel([text("<tool_call>{not json</tool_call>"), text("Sorry")])
    rec = Recorder()
    result = await run_agent(context(model, rec, mode="prompted"), USER)
    assert rec.of(ToolFinished)[0].error.startswith("malformed tool call")
    assert result.outcome == "answered"
    assert rec.of(TextDelta)[-1].text == "Sorry"


async def test_unknown_tool_and_failing_tool_are_fed_back() -> None:
    model = ScriptedModel(
        [native_call("nope", "{}", "c1"), native_call("echo", '{"text": "a"}', "c2"), text("fine")]
    )
    rec = Recorder()
    result = await run_agent(context(model, rec, tool=EchoTool(fail=True)), USER)
    errors = [f.error for f in rec.of(ToolFinished)]
    assert errors[0] == "unknown tool 'nope'"
    assert "tool bug" in errors[1]
    assert "no tool named 'nope'" in result.messages[1]["content"]
    assert result.answer == "fine"


async def test_tool_timeout_is_an_error_not_a_hang() -> None:
    model = ScriptedModel([native_call("echo", '{"text": "a"}'), text("late")])
    rec = Recorder()
    ctx = context(model, rec, tool=EchoTool(delay_s=5), tool_timeout_s=0.05)
    result = await run_agent(ctx, USER)
    assert "did not answer within" in rec.of(ToolFinished)[0].error
    assert result.answer == "late"


async def test_step_limit_last_call_has_no_tools_and_answers() -> None:
    model = ScriptedModel(
        [
            native_call("echo", '{"text": "1"}', "c1"),
            native_call("echo", '{"text": "2"}', "c2"),
            text("final"),
        ]
    )
    rec = Recorder()
    result = await run_agent(context(model, rec, max_steps=3), USER)
    assert result.outcome == "answered"
    assert result.steps == 3
    assert model.requests[2]["tools"] is None
    assert FINAL_STEP_NOTE in model.requests[2]["messages"][0]["content"]


async def test_step_limit_reached_drops_dangling_calls() -> None:
    model = ScriptedModel(
        [native_call("echo", '{"text": "1"}', "c1"), native_call("echo", '{"text": "2"}', "c2")]
    )
    rec = Recorder()
    result = await run_agent(context(model, rec, max_steps=2), USER)
    assert result.outcome == "step_limit"
    # The last assistant message carries no tool call without a result.
    assert "tool_calls" not in result.messages[-1]
    assert rec.of(AssistantTurn)[-1].tool_calls == []


async def test_tool_less_mode_offers_no_tools() -> None:
    model, rec = ScriptedModel([text("plain")]), Recorder()
    await run_agent(context(model, rec, mode="none"), USER)
    assert model.requests[0]["tools"] is None
    assert "<tool_call>" not in model.requests[0]["messages"][0]["content"]


async def test_two_tool_calls_run_concurrently() -> None:
    tool = EchoTool(delay_s=0.2)
    chunks = native_call("echo", '{"text": "a"}', "c1", 0)[:2] + native_call("echo", '{"text": "b"}', "c2", 1)
    model = ScriptedModel([chunks, text("both")])
    rec = Recorder()
    started = time.perf_counter()
    await run_agent(context(model, rec, tool=tool), USER)
    assert time.perf_counter() - started < 0.35
    assert sorted(c["text"] for c in tool.calls) == ["a", "b"]


async def test_answer_step_nudge_answers_after_one_tool_round() -> None:
    model = ScriptedModel([native_call("echo", '{"text": "a"}'), text("It is a.")])
    rec = Recorder()
    result = await run_agent(context(model, rec, answer_step="nudge"), USER)
    assert result.outcome == "answered"
    second = model.requests[1]
    assert second["tools"] is None
    assert second["messages"][-1] == {"role": "user", "content": "Now answer my question in plain words."}
    assert second["messages"][-2]["role"] == "tool"


async def test_answer_step_inline_puts_question_and_results_in_one_message() -> None:
    model = ScriptedModel([native_call("echo", '{"text": "a"}'), text("It is a.")])
    rec = Recorder()
    history = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "What does echo say?"},
    ]
    await run_agent(context(model, rec, answer_step="inline"), history)
    second = model.requests[1]
    assert second["tools"] is None
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    last = second["messages"][-1]["content"]
    assert last.startswith("Question: What does echo say?")
    assert '- echo({"text": "a"}) returned: echo: a' in last


async def test_answer_step_waits_until_a_tool_round_succeeds() -> None:
    # The model misnames the tool first: it keeps its tools to correct the call, and the answer step
    # comes only after a round without errors.
    model = ScriptedModel(
        [native_call("ecko", '{"text": "a"}'), native_call("echo", '{"text": "a"}', "call_2"), text("a")]
    )
    rec = Recorder()
    result = await run_agent(context(model, rec, answer_step="nudge"), USER)
    assert result.outcome == "answered"
    assert [r["tools"] is not None for r in model.requests] == [True, True, False]
    assert "no tool named 'ecko'" in model.requests[1]["messages"][-1]["content"]
    assert model.requests[2]["messages"][-1]["content"] == "Now answer my question in plain words."
    assert [e.error is not None for e in rec.of(ToolFinished)] == [True, False]


async def test_answer_step_follows_a_second_failed_round() -> None:
    # One correction round only: a model that keeps failing is asked for its answer, without the errors.
    model = ScriptedModel(
        [native_call("ecko", "{}"), native_call("ecko", "{}", "call_2"), text("I do not know.")]
    )
    history = [{"role": "user", "content": "What does echo say?"}]
    result = await run_agent(context(model, Recorder(), answer_step="inline"), history)
    assert result.outcome == "answered"
    assert [r["tools"] is not None for r in model.requests] == [True, True, False]
    assert model.requests[2]["messages"][-1] == {
        "role": "user",
        "content": "Question: What does echo say?\n\nAnswer the question in plain words.",
    }


async def test_inline_answer_step_shows_only_the_calls_that_worked() -> None:
    chunks = native_call("ecko", "{}", "c1", 0)[:2] + native_call("echo", '{"text": "b"}', "c2", 1)
    model = ScriptedModel([chunks, native_call("echo", '{"text": "a"}', "c3"), text("a and b")])
    history = [{"role": "user", "content": "What does echo say?"}]
    await run_agent(context(model, Recorder(), answer_step="inline"), history)
    # The first round had a failure, so the model corrected it; then the answer step.
    last = model.requests[2]["messages"][-1]["content"]
    assert "ecko" not in last
    assert "Error" not in last
    assert '- echo({"text": "b"}) returned: echo: b' in last
    assert '- echo({"text": "a"}) returned: echo: a' in last


async def test_answer_step_does_not_change_the_first_call() -> None:
    model = ScriptedModel([text("direct")])
    await run_agent(context(model, Recorder(), answer_step="nudge"), USER)
    assert model.requests[0]["tools"] is not None


async def test_answerer_writes_the_answer_after_a_tool_round() -> None:
    from agent.context import Answerer

    tools_model = ScriptedModel([native_call("echo", '{"text": "a"}')], name="tools-backend")
    answer_model = ScriptedModel([text("From the throughput backend.")], name="throughput-backend")
    rec = Recorder()
    ctx = context(tools_model, rec, mode="native", answerer=Answerer(answer_model, "prompted"))
    result = await run_agent(ctx, USER)
    assert result.answer == "From the throughput backend."
    assert [t.backend for t in rec.of(AssistantTurn)] == ["tools-backend", "throughput-backend"]
    request = answer_model.requests[0]
    assert request["tools"] is None
    # Rendered for the answerer's own tool mode: the result arrives as a tool_result text block.
    assert request["messages"][-1]["content"].startswith('<tool_result name="echo"')


async def test_answerer_is_not_used_when_no_tool_ran() -> None:
    from agent.context import Answerer

    tools_model = ScriptedModel([text("direct")])
    answer_model = ScriptedModel([])
    await run_agent(context(tools_model, Recorder(), answerer=Answerer(answer_model, "none")), USER)
    assert answer_model.requests == []
