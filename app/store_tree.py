"""The SQL side of the message tree, for `Store` (with it, the only modules that query SQL): reading a
conversation's shape, appending messages at its active leaf, and moving that leaf.

Every message is appended at its conversation's active leaf and becomes the new leaf: a run's answer,
tool steps and results form a chain under the question they answer. While a run is running no client
may move the leaf (`Conflict`), so the leaf is always the running answer's latest message.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Conversation, Message
from app.errors import Conflict, NotFound
from app.message_tree import MessageTree, Node


class _ActiveLeaf(enum.Enum):
    ACTIVE_LEAF = "active_leaf"


ACTIVE_LEAF: Literal[_ActiveLeaf.ACTIVE_LEAF] = _ActiveLeaf.ACTIVE_LEAF
"""Where a new message goes when the client names no parent: after the active leaf."""
ParentChoice = int | None | Literal[_ActiveLeaf.ACTIVE_LEAF]
"""A message id, None for a new first message, or `ACTIVE_LEAF`."""


async def load_tree(session: AsyncSession, conversation_id: str) -> MessageTree:
    rows = await session.execute(
        select(Message.id, Message.parent_id, Message.role).where(Message.conversation_id == conversation_id)
    )
    return MessageTree(Node(id, parent_id, role) for id, parent_id, role in rows.all())


def current_leaf(tree: MessageTree, stored: int | None) -> int | None:
    """The stored active leaf, or the newest message if none is stored (a message written without the
    tree, or a leaf pointing elsewhere, never hides the conversation)."""
    if stored is not None and stored in tree:
        return stored
    return max(tree.nodes, default=None)


async def active_path(session: AsyncSession, conversation_id: str) -> tuple[list[Message], MessageTree]:
    """The messages from the first one down to the active leaf, and the conversation's tree."""
    stored = await session.scalar(
        select(Conversation.active_leaf_id).where(Conversation.id == conversation_id)
    )
    # Every message in one query, as before branches: most conversations are one branch, where this is
    # the least work; the alternatives' content is the price for the others (a tree-only query plus the
    # path's rows measured slower on a linear conversation).
    rows = (await session.scalars(select(Message).where(Message.conversation_id == conversation_id))).all()
    tree = MessageTree(Node(row.id, row.parent_id, row.role) for row in rows)
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in tree.path_to(current_leaf(tree, stored))], tree


async def _lock_leaf(session: AsyncSession, conversation_id: str) -> int | None:
    """The conversation's active leaf, read after locking its row: a write first takes SQLite's write
    lock on a current snapshot and PostgreSQL's row lock, so no other writer appends meanwhile."""
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(active_leaf_id=Conversation.active_leaf_id)
        .returning(Conversation.active_leaf_id)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return await _leaf_or_newest(session, conversation_id, row[0] if row is not None else None)


async def _leaf_or_newest(session: AsyncSession, conversation_id: str, stored: int | None) -> int | None:
    """The stored leaf (the store only ever sets its own messages), or if none is stored yet, the newest
    message: messages written without the tree continue after the newest."""
    if stored is not None:
        return int(stored)
    return await session.scalar(
        select(func.max(Message.id)).where(Message.conversation_id == conversation_id)
    )


async def append_messages(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Message]:
    """Store messages (column values) in order, each after its conversation's active leaf, which moves
    to it. A row that names its `parent_id` keeps it (and still becomes the leaf)."""
    leaves: dict[str, int | None] = {}
    stored: list[Message] = []
    for fields in rows:
        conversation_id = fields["conversation_id"]
        if conversation_id not in leaves:
            leaves[conversation_id] = await _lock_leaf(session, conversation_id)
        row = Message(**{"parent_id": leaves[conversation_id], **fields})
        session.add(row)
        await session.flush()  # one at a time: ids follow the order given, and the next row's parent
        leaves[conversation_id] = row.id
        stored.append(row)
    for conversation_id, leaf in leaves.items():
        await session.execute(
            update(Conversation).where(Conversation.id == conversation_id).values(active_leaf_id=leaf)
        )
    return stored


async def resolve_parent(
    session: AsyncSession, conversation: Conversation, parent: ParentChoice
) -> int | None:
    """The parent of a new question: the active leaf by default, else the named message of this
    conversation (`NotFound` for any other id, whoever's it is)."""
    if parent is ACTIVE_LEAF:
        return await _leaf_or_newest(session, conversation.id, conversation.active_leaf_id)
    if parent is None:
        return None
    found = await session.scalar(
        select(Message.id).where(Message.id == parent, Message.conversation_id == conversation.id)
    )
    if found is None:
        raise NotFound(f"message {parent} not found in conversation {conversation.id}")
    return parent


async def question_to_answer_again(session: AsyncSession, conversation: Conversation) -> Message:
    """The last question on the active path, which becomes the leaf: a new answer goes beside the old."""
    # Up from the leaf, one primary-key read per step: an answer is a few messages long.
    current = await _leaf_or_newest(session, conversation.id, conversation.active_leaf_id)
    question: Message | None = None
    while current is not None:
        message = await session.get(Message, current)
        if message is None or message.conversation_id != conversation.id:
            break
        if message.role == "user":
            question = message
            break
        current = message.parent_id
    if question is None:
        raise Conflict("there is no question to answer again yet", code="nothing_to_regenerate")
    conversation.active_leaf_id = question.id
    return question


async def select_branch(
    session: AsyncSession, conversation: Conversation, message_id: int, running: bool
) -> None:
    """Show the branch through `message_id`: the leaf becomes the newest message at or below it."""
    found = await session.scalar(
        select(Message.id).where(Message.id == message_id, Message.conversation_id == conversation.id)
    )
    if found is None:
        raise NotFound(f"message {message_id} not found in conversation {conversation.id}")
    if running:
        raise Conflict(
            f"conversation {conversation.id} has a running answer; wait for it or cancel it before "
            "switching branch",
            code="run_in_progress",
        )
    # The subtree only, down the parent_id index (a child always has a larger id than its parent, so
    # the newest message below is a leaf).
    below = select(Message.id).where(Message.id == message_id).cte("below", recursive=True)
    below = below.union_all(select(Message.id).join(below, Message.parent_id == below.c.id))
    conversation.active_leaf_id = await session.scalar(select(func.max(below.c.id)))
