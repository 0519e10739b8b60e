"""The server's side of reading an upload: hands the bytes to a worker process (`reader.read_file`),
with a deadline and a memory bound, and turns what went wrong into a clear 4xx.

The attachments have a worker pool of their own rather than sharing the tools' one: a PDF may hold
a worker for up to CHATSTACK_ATTACHMENT_PARSE_TIMEOUT_S (20 s) where a calculation takes
milliseconds, so sharing would stall every run's calculator behind an upload; parsing needs a larger
memory bound than a calculation (768 MiB against 256); and each pool's allow-list stays its own (a
tool worker cannot be asked to read files, nor this one to evaluate). One worker: parsing is
CPU-bound, and a second parse at once would take the last core from the server on small machines;
uploads queue behind each other instead (at most MAX_WAITING, then 503). It starts on the first upload.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.attachments.errors import ExtractionBusy, UnreadableAttachment, UnsupportedAttachment
from app.errors import ChatstackError
from tools.worker_pool import (
    PoolClosed,
    PoolSaturated,
    WorkerFailed,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
)

log = logging.getLogger(__name__)

WORKER_MODULES = ("app.attachments.reader",)
READ_FUNCTION = "app.attachments.reader:read_file"
WORKERS = 1
MAX_WAITING = 8


def build_reader_pool(memory_mib: int) -> WorkerPool:
    return WorkerPool(WORKER_MODULES, size=WORKERS, max_waiting=MAX_WAITING, memory_mib=memory_mib)


@dataclass(frozen=True, slots=True)
class Extracted:
    media_type: str
    text: str
    pages: int | None
    page_offsets: list[int]


_REFUSALS: dict[str, tuple[type[ChatstackError], str]] = {
    "binary": (UnsupportedAttachment, "unsupported_attachment"),
    "too_long": (UnreadableAttachment, "too_much_text"),
    "pages": (UnreadableAttachment, "too_many_pages"),
    "encrypted": (UnreadableAttachment, "encrypted_pdf"),
    "invalid": (UnreadableAttachment, "invalid_pdf"),
    "too_complex": (UnreadableAttachment, "pdf_too_complex"),
}


async def extract(
    pool: WorkerPool, data: bytes, name: str, *, max_pages: int, max_chars: int, timeout_s: float
) -> Extracted:
    """The file's kind and text, read in a worker process. Raises a ChatstackError naming the file."""
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="chatstack-upload-")
    try:
        source, target = Path(folder) / "upload", Path(folder) / "text"
        await asyncio.to_thread(source.write_bytes, data)
        try:
            result = await pool.call(
                READ_FUNCTION, str(source), str(target), name, max_pages, max_chars, timeout_s=timeout_s
            )
        except WorkerTimeout:
            raise UnreadableAttachment(
                f"{name!r} could not be read within {timeout_s:g} s; it is too complex a document",
                code="pdf_too_complex",
            ) from None
        except WorkerOutOfMemory:
            raise UnreadableAttachment(
                f"{name!r} needs more memory to read than a document may", code="pdf_too_complex"
            ) from None
        except (PoolSaturated, PoolClosed):
            raise ExtractionBusy("too many files are being read right now; try again in a moment") from None
        except WorkerFailed as exc:
            log.warning("reading an upload failed in its worker: %s", exc)
            raise UnreadableAttachment(f"{name!r} could not be read", code="unreadable_attachment") from None
        refusal = _refusal(result)
        if refusal is not None:
            kind, code = _REFUSALS.get(refusal[0], (UnreadableAttachment, "unreadable_attachment"))
            raise kind(f"{name!r} was refused: {refusal[1]}", code=code)
        text = await asyncio.to_thread(target.read_text, encoding="utf-8")
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    return Extracted(
        media_type=str(result["media_type"]),
        text=text,
        pages=result.get("pages"),
        page_offsets=[int(o) for o in result.get("page_offsets") or []],
    )


def _refusal(result: Any) -> tuple[str, str] | None:
    if not isinstance(result, dict):
        return ("invalid", "the reader gave no answer")
    if "refused" in result:
        return str(result["refused"]), str(result.get("message", ""))
    return None
