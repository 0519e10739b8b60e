"""Attachments end to end for the routes: an upload read, checked, extracted, chunked and stored;
lists, downloads and deletions. Built once by the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from app.attachments.chunking import estimate_tokens, split
from app.attachments.errors import AttachmentLimit
from app.attachments.extraction import extract
from app.attachments.kinds import PDF
from app.attachments.store import AttachmentInfo, AttachmentStore, NewAttachment
from app.attachments.uploads import TooManyFiles, UploadedFile, read_files
from app.errors import InvalidRequest
from app.schemas import AttachmentRef, MessageOut
from app.settings import Settings
from app.store import Store
from tools.worker_pool import WorkerPool

TEXTUAL_CHARSET = "; charset=utf-8"


class Attachments:
    def __init__(self, store: Store, records: AttachmentStore, pool: WorkerPool, settings: Settings) -> None:
        self.store = store
        self.records = records
        self.pool = pool
        self.settings = settings

    async def upload(
        self, conversation_id: str, user_id: str, content_type: str | None, body: AsyncIterator[bytes]
    ) -> list[AttachmentInfo]:
        """Store the upload's files (all, or none: one bad file refuses the upload). The conversation is
        checked before a byte of the body is read."""
        limit = self.settings.attachment_max_files
        await self.store.get_conversation(conversation_id, user_id)
        held = len(await self.records.of_conversation(conversation_id))
        if held >= limit:
            raise AttachmentLimit(f"a conversation may hold {limit} files; delete some first")
        try:
            files = await read_files(
                content_type, body, max_file_bytes=self.settings.attachment_max_bytes, max_files=limit - held
            )
        except TooManyFiles:
            raise AttachmentLimit(
                f"a conversation may hold {limit} files; this one has room for {limit - held} more"
            ) from None
        # One at a time: the reader pool has one worker, and a refused file ends the upload early.
        items = [await self._prepare(file) for file in files]
        return await self.records.add(conversation_id, user_id, items, max_files=limit)

    async def _prepare(self, file: UploadedFile) -> NewAttachment:
        if not file.data:
            raise InvalidRequest(f"{file.name!r} is empty", code="empty_attachment")
        content = bytes(file.data)
        extracted = await extract(
            self.pool,
            content,
            file.name,
            max_pages=self.settings.attachment_max_pages,
            max_chars=self.settings.attachment_max_chars,
            timeout_s=self.settings.attachment_parse_timeout_s,
        )
        # Thousands of passages of a long text: milliseconds, but off the event loop all the same.
        chunks = await asyncio.to_thread(split, extracted.text, extracted.page_offsets)
        return NewAttachment(
            name=file.name,
            media_type=extracted.media_type,
            content=content,
            text=extracted.text,
            tokens=estimate_tokens(extracted.text),
            pages=extracted.pages,
            chunks=chunks,
        )

    async def listed(self, conversation_id: str, user_id: str) -> list[AttachmentInfo]:
        await self.store.get_conversation(conversation_id, user_id)
        return await self.records.of_conversation(conversation_id)

    async def download(
        self, conversation_id: str, user_id: str, attachment_id: str
    ) -> tuple[str, str, bytes]:
        """(name, Content-Type to send, bytes). Texts go out as what they are, with their charset;
        never as HTML (nothing is ever stored as HTML: types come from `kinds`)."""
        name, media_type, content = await self.records.content(conversation_id, user_id, attachment_id)
        return name, media_type if media_type == PDF else media_type + TEXTUAL_CHARSET, content

    async def show_on(self, conversation_id: str, messages: Sequence[MessageOut]) -> None:
        """Fill in the attachments each message references (the caller checked the conversation)."""
        refs = await self.records.refs_by_message(conversation_id)
        for message in messages:
            message.attachments = [
                AttachmentRef(id=a.id, name=a.name, media_type=a.media_type, bytes=a.bytes)
                for a in refs.get(message.id, [])
            ]

    async def delete(self, conversation_id: str, user_id: str, attachment_id: str) -> None:
        await self.records.delete(conversation_id, user_id, attachment_id)
