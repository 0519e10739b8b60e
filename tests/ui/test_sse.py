"""The event-stream parser: line endings, comments, chunking, and JSON that contains U+2028."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ui.sse import SseMessage, SseParser


def parse(*chunks: str) -> list[SseMessage]:
    parser = SseParser()
    return [message for chunk in chunks for message in parser.feed(chunk)]


def test_one_event() -> None:
    assert parse('id: 3\nevent: message.delta\ndata: {"text":"hi"}\n\n') == [
        SseMessage("message.delta", '{"text":"hi"}', "3")
    ]


def test_crlf_and_cr_line_endings() -> None:
    expected = [SseMessage("a", "1", "1"), SseMessage("b", "2", "2")]
    assert parse("id: 1\r\nevent: a\r\ndata: 1\r\n\r\nid: 2\r\nevent: b\r\ndata: 2\r\n\r\n") == expected
    assert parse("id: 1\revent: a\rdata: 1\r\rid: 2\revent: b\rdata: 2\r\r") == expected


def test_cr_lf_split_across_chunks_is_one_line_end() -> None:
    assert parse("data: x\r", "\n\r", "\n") == [SseMessage("message", "x", None)]
    assert parse("data: x\r", "\n", "\n") == [SseMessage("message", "x", None)]


def test_an_event_ending_in_cr_is_not_held_back() -> None:
    parser = SseParser()
    assert parser.feed("data: x\r\r") == [SseMessage("message", "x", None)]


def test_comments_pings_and_unknown_fields_are_ignored() -> None:
    assert parse(": ping - 2026-01-01\n\n", "retry: 10\nfoo: bar\n\n") == []


def test_multi_line_data_and_id_carry_over() -> None:
    messages = parse("id: 7\ndata: a\ndata: b\n\nevent: x\ndata:c\n\n")
    assert messages == [SseMessage("message", "a\nb", "7"), SseMessage("x", "c", "7")]


def test_unicode_line_separators_inside_data_do_not_split_it() -> None:
    text = "line\u2028separator\u2029and\x85next"
    data = json.dumps({"text": text}, ensure_ascii=False)
    [message] = parse(f"id: 1\nevent: message.delta\ndata: {data}\n\n")
    assert json.loads(message.data)["text"] == text


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8), st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_chunking_gives_the_same_messages(cuts: list[int], newline: str) -> None:
    stream = newline.join(
        ["id: 1", "event: a", 'data: {"t":"x\u2028y"}', "", ": ping", "", "id: 2", "data: z", "", ""]
    )
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert (
        parse(*chunks)
        == parse(stream)
        == [
            SseMessage("a", '{"t":"x\u2028y"}', "1"),
            SseMessage("message", "z", "2"),
        ]
    )
