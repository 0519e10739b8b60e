"""Reads and writes of attachments, their links to messages and their searchable chunks.

The attachments' own tables, on the main store's sessions (and, on SQLite, its queue of writes).
Every read and write is scoped to a conversation of the caller: another user's ids are not found.
Searches use the full-text indexes migration 0008 made: FTS5 `attachment_chunks_fts` on SQLite, the
GIN-indexed stored `search_vector` on PostgreSQL, with the query compiled by
`app.search_query` exactly as message search compiles it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import case, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.attachments.chunking import Chunk
from app.attachments.errors import AttachmentLimit
from app.db.models import Attachment, AttachmentChunk, Conversation, MessageAttachment
from app.errors import InvalidRequest, NotFound
from app.search_query import Term, compile_fts5, compile_tsquery

if TYPE_CHECKING:
    from app.store import Store  # which imports `link_attachments` from here

MAX_REFERENCED = 20
"""Attachments one message may reference."""
CHUNK_BATCH = 500


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: str
    conversation_id: str
    name: str
    media_type: str
    bytes: int
    tokens: int
    pages: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewAttachment:
    name: str
    media_type: str
    content: bytes
    text: str
    tokens: int
    pages: int | None
    chunks: list[Chunk]


@dataclass(frozen=True, slots=True)
class AttachedDocument:
    """An attachment a message references, as the model's context needs it."""

    id: str
    name: str
    media_type: str
    tokens: int
    pages: int | None
    text: str | None
    """None when it is too long to go into the context whole (then it is searched instead)."""


@dataclass(frozen=True, slots=True)
class ChunkHit:
    attachment_id: str
    name: str
    seq: int
    location: str
    text: str


_INFO_COLUMNS = (
    Attachment.id,
    Attachment.conversation_id,
    Attachment.name,
    Attachment.media_type,
    Attachment.size,
    Attachment.tokens,
    Attachment.pages,
    Attachment.created_at,
)

_SQLITE_SEARCH = text(
    """
    SELECT c.attachment_id, a.name, c.seq, c.location, c.text
    FROM attachment_chunks_fts
    JOIN attachment_chunks c ON c.id = attachment_chunks_fts.rowid
    JOIN attachments a ON a.id = c.attachment_id
    WHERE attachment_chunks_fts MATCH :match AND c.conversation_id = :conversation_id
    ORDER BY bm25(attachment_chunks_fts), c.id
    LIMIT :limit
    """
)
# `search_vector` is the passages' stored tsvector, GIN-indexed (migration 0008).
_PG_SEARCH = text(
    """
    WITH q AS (SELECT to_tsquery('simple'::regconfig, :tsquery) AS query)
    SELECT c.attachment_id, a.name, c.seq, c.location, c.text
    FROM attachment_chunks c
    JOIN attachments a ON a.id = c.attachment_id, q
    WHERE c.conversation_id = :conversation_id AND c.search_vector @@ q.query
    ORDER BY ts_rank(c.search_vector, q.query, 1) DESC, c.id
    LIMIT :limit
    """
)


def _info(row: object) -> AttachmentInfo:
    return AttachmentInfo(*row)  # type: ignore[misc]


class AttachmentStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(
        self, conversation_id: str, user_id: str, items: Sequence[NewAttachment], *, max_files: int
    ) -> list[AttachmentInfo]:
        """Store the files and their chunks in one transaction: all of them, or none.

        Raises NotFound for a conversation not the user's, AttachmentLimit when the conversation
        would hold more than `max_files` (counted under the conversation's lock, so concurrent
        uploads cannot pass it together)."""
        async with self._store.writing() as session:
            conversation = await session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None or conversation.user_id != user_id:
                raise NotFound(f"conversation {conversation_id} not found")
            held = await session.scalar(
                select(func.count())
                .select_from(Attachment)
                .where(Attachment.conversation_id == conversation_id)
            )
            if (held or 0) + len(items) > max_files:
                raise AttachmentLimit(
                    f"a conversation may hold {max_files} files; this one holds {held or 0}: "
                    "delete some first"
                )
            rows = []
            for item in items:
                row = Attachment(
                    conversation_id=conversation_id,
                    name=item.name,
                    media_type=item.media_type,
                    size=len(item.content),
                    tokens=item.tokens,
                    pages=item.pages,
                    content=item.content,
                    text=item.text,
                )
                session.add(row)
                rows.append((row, item))
            await session.flush()
            chunks = [
                {
                    "attachment_id": row.id,
                    "conversation_id": conversation_id,
                    "seq": chunk.seq,
                    "location": chunk.location,
                    "text": chunk.text,
                }
                for row, item in rows
                for chunk in item.chunks
            ]
            # In batches: thousands of rows encoded at once would hold the event loop for 100+ ms.
            for start in range(0, len(chunks), CHUNK_BATCH):
                await session.execute(insert(AttachmentChunk), chunks[start : start + CHUNK_BATCH])
            return [
                AttachmentInfo(
                    r.id, r.conversation_id, r.name, r.media_type, r.size, r.tokens, r.pages, r.created_at
                )
                for r, _ in rows
            ]

    async def of_conversation(self, conversation_id: str) -> list[AttachmentInfo]:
        """The conversation's attachments, oldest first (the caller checked the conversation is theirs)."""
        async with self._store.reading() as session:
            rows = await session.execute(
                select(*_INFO_COLUMNS)
                .where(Attachment.conversation_id == conversation_id)
                .order_by(Attachment.created_at, Attachment.id)
            )
            return [_info(r) for r in rows.all()]

    async def content(self, conversation_id: str, user_id: str, attachment_id: str) -> tuple[str, str, bytes]:
        """(name, media type, bytes) of the user's attachment."""
        async with self._store.reading() as session:
            row = (
                await session.execute(
                    select(Attachment.name, Attachment.media_type, Attachment.content)
                    .join(Conversation, Conversation.id == Attachment.conversation_id)
                    .where(
                        Attachment.id == attachment_id,
                        Attachment.conversation_id == conversation_id,
                        Conversation.user_id == user_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"attachment {attachment_id} not found")
        return row[0], row[1], row[2]

    async def delete(self, conversation_id: str, user_id: str, attachment_id: str) -> None:
        """Delete the attachment, its chunks and its links to messages (the messages stay)."""
        owned = select(Conversation.id).where(
            Conversation.id == conversation_id, Conversation.user_id == user_id
        )
        async with self._store.writing() as session:
            result = await session.execute(
                delete(Attachment).where(
                    Attachment.id == attachment_id,
                    Attachment.conversation_id == conversation_id,
                    Attachment.conversation_id.in_(owned),
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"attachment {attachment_id} not found")

    async def refs_by_message(self, conversation_id: str) -> dict[int, list[AttachmentInfo]]:
        """For each message of the conversation that references attachments: them, in order."""
        async with self._store.reading() as session:
            rows = await session.execute(
                select(MessageAttachment.message_id, *_INFO_COLUMNS)
                .join(Attachment, Attachment.id == MessageAttachment.attachment_id)
                .where(Attachment.conversation_id == conversation_id)
                .order_by(MessageAttachment.message_id, MessageAttachment.position)
            )
            found: dict[int, list[AttachmentInfo]] = {}
            for row in rows.all():
                found.setdefault(row[0], []).append(_info(row[1:]))
            return found

    async def documents_by_message(
        self, conversation_id: str, whole_up_to_tokens: int
    ) -> dict[int, list[AttachedDocument]]:
        """The documents each message references, with their text when it has at most
        `whole_up_to_tokens` tokens (longer texts are not read: they are searched)."""
        short_text = case((Attachment.tokens <= whole_up_to_tokens, Attachment.text), else_=None)
        async with self._store.reading() as session:
            rows = await session.execute(
                select(
                    MessageAttachment.message_id,
                    Attachment.id,
                    Attachment.name,
                    Attachment.media_type,
                    Attachment.tokens,
                    Attachment.pages,
                    short_text,
                )
                .join(Attachment, Attachment.id == MessageAttachment.attachment_id)
                .where(Attachment.conversation_id == conversation_id)
                .order_by(MessageAttachment.message_id, MessageAttachment.position)
            )
            found: dict[int, list[AttachedDocument]] = {}
            for message_id, *fields in rows.all():
                found.setdefault(message_id, []).append(AttachedDocument(*fields))
            return found

    async def has_any(self, conversation_id: str) -> bool:
        async with self._store.reading() as session:
            first = await session.scalar(
                select(Attachment.id).where(Attachment.conversation_id == conversation_id).limit(1)
            )
        return first is not None

    async def search(self, conversation_id: str, terms: Sequence[Term], limit: int) -> list[ChunkHit]:
        """The conversation's passages that best match: every term if any passage has them all, else
        any of them (a model's question seldom has all its words in one passage), best first."""
        async with self._store.reading() as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            hits = await self._search(session, conversation_id, tuple(terms), limit, postgres, every=True)
            if not hits and len(terms) > 1:
                hits = await self._search(
                    session, conversation_id, tuple(terms), limit, postgres, every=False
                )
            return hits

    @staticmethod
    async def _search(
        session: AsyncSession,
        conversation_id: str,
        terms: tuple[Term, ...],
        limit: int,
        postgres: bool,
        *,
        every: bool,
    ) -> list[ChunkHit]:
        if postgres:
            query = compile_tsquery(terms) if every else " | ".join(compile_tsquery((t,)) for t in terms)
            params = {"tsquery": query}
            statement = _PG_SEARCH
        else:
            match = compile_fts5(terms) if every else " OR ".join(compile_fts5((t,)) for t in terms)
            params = {"match": match}
            statement = _SQLITE_SEARCH
        rows = await session.execute(
            statement, {**params, "conversation_id": conversation_id, "limit": limit}
        )
        return [ChunkHit(*row) for row in rows.all()]


async def link_attachments(
    session: AsyncSession, conversation_id: str, message_id: int, attachment_ids: Sequence[str]
) -> None:
    """Record that the message references these attachments (in the caller's transaction).

    Raises InvalidRequest (422) when one is not an attachment of the conversation."""
    wanted = list(dict.fromkeys(attachment_ids))
    if not wanted:
        return
    if len(wanted) > MAX_REFERENCED:
        raise InvalidRequest(f"a message may reference at most {MAX_REFERENCED} attachments")
    found = set(
        (
            await session.scalars(
                select(Attachment.id).where(
                    Attachment.id.in_(wanted), Attachment.conversation_id == conversation_id
                )
            )
        ).all()
    )
    missing = [a for a in wanted if a not in found]
    if missing:
        raise InvalidRequest(
            f"attachment {missing[0]} is not in this conversation; upload it first", code="unknown_attachment"
        )
    await session.execute(
        insert(MessageAttachment),
        [{"message_id": message_id, "attachment_id": a, "position": i} for i, a in enumerate(wanted)],
    )
