"""The event-stream parser: line endings, comments, chunking, and JSON that contains U+2028."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.sse import SseEvent, SseParser, SseTooLarge


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_one_event() -> None:
    assert parse(b'id: 3\nevent: message.delta\ndata: {"text":"hi"}\n\n') == [
        SseEvent("message.delta", '{"text":"hi"}', "3")
    ]


def test_crlf_and_cr_line_endings() -> None:
    expected = [SseEvent("a", "1", "1"), SseEvent("b", "2", "2")]
    assert parse(b"id: 1\r\nevent: a\r\ndata: 1\r\n\r\nid: 2\r\nevent: b\r\ndata: 2\r\n\r\n") == expected
    assert parse(b"id: 1\revent: a\rdata: 1\r\rid: 2\revent: b\rdata: 2\r\r") == expected


def test_cr_lf_split_across_chunks_is_one_line_end() -> None:
    assert parse(b"data: x\r", b"\n\r", b"\n") == [SseEvent("message", "x", None)]
    assert parse(b"data: x\r", b"\n", b"\n") == [SseEvent("message", "x", None)]


def test_an_event_ending_in_cr_is_not_held_back() -> None:
    parser = SseParser()
    assert parser.feed(b"data: x\r\r") == [SseEvent("message", "x", None)]


def test_comments_pings_and_unknown_fields_are_ignored() -> None:
    assert parse(b": ping - 2026-01-01\n\n", b"retry: 10\nfoo: bar\n\n") == []


def test_multi_line_data_and_id_carry_over() -> None:
    events = parse(b"id: 7\ndata: a\ndata: b\n\nevent: x\ndata:c\n\n")
    assert events == [SseEvent("message", "a\nb", "7"), SseEvent("x", "c", "7")]


def test_unicode_line_separators_inside_data_do_not_split_it() -> None:
    text = "line\u2028separator\u2029and\x85next"
    data = json.dumps({"text": text}, ensure_ascii=False)
    [event] = parse(f"id: 1\nevent: message.delta\ndata: {data}\n\n".encode())
    assert json.loads(event.data)["text"] == text


def test_a_character_split_between_chunks_is_whole() -> None:
    stream = 'data: {"text":"né ✓"}\n\n'.encode()
    cut = stream.index("✓".encode()) + 1
    assert parse(stream[:cut], stream[cut:]) == [SseEvent("message", '{"text":"né ✓"}', None)]


def test_an_event_that_never_ends_is_refused_past_the_limit() -> None:
    parser = SseParser(max_event_bytes=100)
    parser.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(SseTooLarge):
        parser.feed(b"data: " + b"x" * 60)
    assert SseParser(max_event_bytes=100).feed(b"data: " + b"x" * 90 + b"\n\n")[0].data == "x" * 90


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8), st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_chunking_gives_the_same_events(cuts: list[int], newline: str) -> None:
    stream = newline.join(
        ["id: 1", "event: a", 'data: {"t":"x\u2028y"}', "", ": ping", "", "id: 2", "data: z", "", ""]
    ).encode()
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert (
        parse(*chunks)
        == parse(stream)
        == [
            SseEvent("a", '{"t":"x\u2028y"}', "1"),
            SseEvent("message", "z", "2"),
        ]
    )
