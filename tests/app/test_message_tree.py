"""The message tree's pure logic: the active path and the alternatives at each point."""

from __future__ import annotations

from app.message_tree import MessageTree, Node


def tree() -> MessageTree:
    # 1 user -> 2 answer -> 3 user -> 4 answer
    #                    -> 5 user (edit of 3) -> 6 answer -> 8 answer (regenerated; 7 was the first)
    #                                          -> 7 answer
    # 9 user (edit of the first question)
    return MessageTree(
        [
            Node(9, None, "user"),
            Node(1, None, "user"),
            Node(2, 1, "assistant"),
            Node(3, 2, "user"),
            Node(4, 3, "assistant"),
            Node(5, 2, "user"),
            Node(6, 5, "assistant"),
            Node(7, 5, "assistant"),
            Node(8, 6, "tool"),
        ]
    )


def test_path_runs_from_the_first_message_to_the_leaf() -> None:
    t = tree()
    assert t.path_to(8) == [1, 2, 5, 6, 8]
    assert t.path_to(4) == [1, 2, 3, 4]
    assert t.path_to(None) == []
    assert t.path_to(404) == []


def test_siblings_are_the_alternatives_in_order_including_itself() -> None:
    t = tree()
    assert t.siblings(3) == [3, 5]
    assert t.siblings(5) == [3, 5]
    assert t.siblings(6) == [6, 7]
    assert t.siblings(1) == [1, 9]  # first messages are alternatives too
    assert t.siblings(2) == [2]
    assert t.siblings(404) == []


def test_a_cycle_in_bad_data_does_not_hang() -> None:
    t = MessageTree([Node(1, 2, "user"), Node(2, 1, "assistant")])
    assert t.path_to(2) == [1, 2]
