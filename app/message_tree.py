"""A conversation's messages as a tree: the active path and the alternatives at each point. Pure logic
over (id, parent id) pairs; the store reads the pairs.

A message's parent is the message it follows (None for a first message). Alternatives share a parent:
an edited question is a sibling of the original, a regenerated answer a sibling of the first answer.
A child is always written after its parent, so it has the larger id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    parent_id: int | None
    role: str = ""


class MessageTree:
    """The shape of one conversation's messages (not their content)."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes: dict[int, Node] = {}
        self.children: dict[int | None, list[int]] = {}
        for node in sorted(nodes, key=lambda n: n.id):
            self.nodes[node.id] = node
            self.children.setdefault(node.parent_id, []).append(node.id)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.nodes

    def path_to(self, leaf: int | None) -> list[int]:
        """The ids from the first message down to `leaf` (empty for None or an unknown id)."""
        path: list[int] = []
        seen: set[int] = set()
        current = leaf
        while current is not None and current in self.nodes and current not in seen:
            seen.add(current)  # a cycle cannot be written through the store; this only bounds the walk
            path.append(current)
            current = self.nodes[current].parent_id
        path.reverse()
        return path

    def siblings(self, message_id: int) -> list[int]:
        """The alternatives at this message's point, oldest first, itself included."""
        node = self.nodes.get(message_id)
        if node is None:
            return []
        return list(self.children.get(node.parent_id, [message_id]))
