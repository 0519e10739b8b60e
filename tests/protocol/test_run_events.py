"""The run events as README.md documents them, written and read back."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest

from protocol.run_events import (
    EVENT_TYPES,
    TERMINAL_EVENT,
    InvalidEvent,
    MessageCompleted,
    MessageDelta,
    RunEvent,
    RunFinished,
    Source,
    Timings,
    ToolCall,
    ToolFinished,
    ToolStarted,
    Usage,
    parse_event,
)
from protocol.sse import SseEvent

README = (Path(__file__).parents[2] / "README.md").read_text()


def documented_fields() -> dict[str, list[str]]:
    """The README's table of run events: each type's fields, in order (what is in parentheses or
    after a colon describes them)."""
    table = README.split("Run events (`event:` is the type", 1)[1].split("\n\n", 2)[1]
    fields = {}
    for row in table.splitlines()[2:]:
        _, type_cell, data_cell, _ = row.split("|")
        names = re.sub(r"\([^)]*\)", "", data_cell).split(": ", 1)[0]
        fields[type_cell.strip(" `")] = re.findall(r"`(\w+)`", names)
    return fields


def test_every_documented_event_has_its_class_with_the_documented_fields_in_order() -> None:
    documented = documented_fields()
    assert list(documented) == list(EVENT_TYPES)
    for type_, cls in EVENT_TYPES.items():
        assert list(cls().to_data()) == documented[type_], type_
    assert TERMINAL_EVENT == "run.finished"


def test_the_readme_example_stream_is_written_byte_for_byte() -> None:
    example = README.split("curl -N localhost:8000/api/runs/$run/events\n```\n\n```text\n", 1)[1]
    pairs = re.findall(r"^event: (\S+)\ndata: (.+)$", example.split("```", 1)[0], re.MULTILINE)
    written = 0
    for type_, text in pairs:
        if "{…}" in text:  # elided in the README
            continue
        event = parse_event(type_, text)
        assert event is not None
        assert RunEvent(1, event.TYPE, event.to_data()).data_json() == text
        written += 1
    assert written == 4


def test_to_data_is_the_dataclass_with_every_part_filled() -> None:
    events = [
        MessageCompleted(
            message_id=1,
            content="é",
            status="complete",
            tool_calls=[ToolCall(id="c", name="calculator", arguments='{"expression":"1"}')],
            usage=Usage(prompt_tokens=1, completion_tokens=2),
        ),
        ToolFinished(
            call_id="c", name="web_search", output="o", sources=[Source(title="t", url="u")], duration_ms=1.5
        ),
        ToolStarted(call_id="c", name="web_search", arguments={"query": "q"}),
        RunFinished(
            status="completed",
            timings=Timings(ttft_ms=1.0, total_ms=2.0, llm_calls=1, tool_calls=1),
            usage=Usage(prompt_tokens=3, completion_tokens=4),
        ),
        *(cls() for cls in EVENT_TYPES.values()),
    ]
    for event in events:
        assert event.to_data() == asdict(event)
        assert parse_event(event.TYPE, event.to_data()) == event
        assert parse_event(event.TYPE, RunEvent(1, event.TYPE, event.to_data()).data_json()) == event


def test_readers_take_what_a_server_sends() -> None:
    # A newer server's type is skipped; a field left out takes its default; one added is ignored.
    assert parse_event("run.paused", {"why": "x"}) is None
    completed = parse_event("message.completed", {"content": "hi", "backend": "b"})
    assert completed == MessageCompleted(content="hi")
    finished = parse_event("run.finished", {"status": "failed", "timings": {"total_ms": 9}})
    assert finished == RunFinished(status="failed", timings=Timings(total_ms=9.0))
    for type_, data in [
        ("message.delta", {"text": 5}),
        ("message.delta", "not json"),
        ("tool.finished", {"sources": [{"title": "no url"}]}),
        ("run.finished", []),
    ]:
        with pytest.raises(InvalidEvent, match=type_):
            parse_event(type_, data)  # type: ignore[arg-type]
    assert isinstance(parse_event("tool.started", {"arguments": '{"half'}), ToolStarted)


def test_an_sse_message_as_a_run_event() -> None:
    delta = RunEvent.from_sse(SseEvent("message.delta", '{"text":"a"}', "3"))
    assert delta == RunEvent(3, "message.delta", {"text": "a"})
    assert delta.parsed() == MessageDelta(text="a")
    # Not ours without a position; data that is not an object still counts as the event it names.
    assert RunEvent.from_sse(SseEvent("message.delta", "{}", None)) is None
    assert RunEvent.from_sse(SseEvent("message.delta", "{}", "²")) is None
    assert RunEvent.from_sse(SseEvent("run.finished", "[1]", "9")) == RunEvent(9, "run.finished", {})
