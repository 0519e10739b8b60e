"""SSE parsing over arbitrary chunk boundaries."""

from __future__ import annotations

from bench.clients.sse import iter_events


def test_events_split_across_pieces_take_the_time_of_their_last_piece() -> None:
    chunks = [
        (1.0, b"data: one\n"),
        (2.0, b"\ndata: tw"),
        (3.0, b"o\n\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n"),
    ]
    events = list(iter_events(chunks))
    assert [(e.at, e.event, e.data) for e in events] == [
        (2.0, "message", "one"),
        (3.0, "message", "two"),
        (3.0, "x", "a\nb"),
    ]


def test_comments_ids_and_incomplete_tail() -> None:
    events = list(iter_events([(1.0, b": ping\n\nid: 7\nevent: run.started\ndata: {}\n\ndata: never ends")]))
    assert [(e.event, e.id) for e in events] == [("run.started", "7")]


def test_cr_line_ends_and_a_crlf_split_between_pieces() -> None:
    chunks = [(1.0, b"event: a\rdata: 1\r\r"), (2.0, b"data: 2\r\n\r"), (3.0, b"\ndata: 3\r\n\r\n")]
    assert [(e.at, e.event, e.data) for e in iter_events(chunks)] == [
        (1.0, "a", "1"),
        (2.0, "message", "2"),
        (3.0, "message", "3"),
    ]
