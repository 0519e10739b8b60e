"""Reads the files of a `multipart/form-data` upload as the body streams in, within limits.

python-multipart's streaming parser, driven here rather than through FastAPI's `UploadFile`
parameters: those parse the whole body (onto disk) before the route runs, so before the caller is
authenticated and before any per-file limit could apply. Here the body is read only after the route
checked the caller and the conversation, and reading stops at the first byte over the limit of a
file: the answer (413) goes out without the rest. The request as a whole is bounded beforehand by
the app's body limit for this route (`app.http_middleware.BodyLimitMiddleware`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from app.attachments.errors import AttachmentTooLarge
from app.errors import InvalidRequest

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_NAME_CHARS = 200
MAX_FIELD_BYTES = 1024
"""Form fields besides files are not used; a few small ones (some clients add them) are tolerated."""
MAX_FIELDS = 16
_SPACES = re.compile(r"\s+")


class TooManyFiles(InvalidRequest):
    """More files than `read_files` was told to take."""


@dataclass(slots=True)
class UploadedFile:
    name: str
    data: bytearray = field(default_factory=bytearray)


def clean_name(raw: str) -> str:
    """A file name fit to show, store and send back: the last path part, without control or
    formatting characters (which could hide or reorder text), spaces collapsed, at most 200 characters."""
    base = PureWindowsPath(raw.replace("/", "\\")).name  # `C:\\x\\y.txt` and `a/b/y.txt` both end as y.txt
    kept = "".join(c for c in base if not unicodedata.category(c).startswith("C"))
    name = _SPACES.sub(" ", kept).strip(" .")
    return name[:MAX_NAME_CHARS] or "attachment"


class _Collector:
    """The parser's callbacks: collects file parts, refusing any over `max_file_bytes`."""

    def __init__(self, max_file_bytes: int, max_files: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.files: list[UploadedFile] = []
        self.fields = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._current: UploadedFile | None = None
        self._field_bytes = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }

    def on_part_begin(self) -> None:
        self._disposition, self._current, self._field_bytes = b"", None, 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"filename" not in options:
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise InvalidRequest(f"an upload may have at most {MAX_FIELDS} form fields besides files")
            return
        if len(self.files) >= self.max_files:
            raise TooManyFiles(f"an upload may carry at most {self.max_files} files", code="too_many_files")
        # Browsers send the name as UTF-8 bytes; the parser hands them over as Latin-1.
        name = options[b"filename"].decode("utf-8", errors="replace")
        self._current = UploadedFile(clean_name(name))
        self.files.append(self._current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if current is None:
            self._field_bytes += end - start
            if self._field_bytes > MAX_FIELD_BYTES:
                raise InvalidRequest(f"form fields besides files may hold at most {MAX_FIELD_BYTES} bytes")
            return
        if len(current.data) + (end - start) > self.max_file_bytes:
            raise AttachmentTooLarge(
                f"{current.name!r} is larger than {self.max_file_bytes:,} bytes, the limit for a file"
            )
        current.data += data[start:end]


async def read_files(
    content_type: str | None, body: AsyncIterator[bytes], *, max_file_bytes: int, max_files: int
) -> list[UploadedFile]:
    """The files of the upload, in order. Raises InvalidRequest (422) for a body that is not
    multipart or has no file, AttachmentTooLarge (413) past a limit."""
    media_type, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "send the files as multipart/form-data (e.g. curl -F file=@notes.pdf)", code="not_multipart"
        )
    collector = _Collector(max_file_bytes, max_files)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest(f"the multipart body is malformed: {exc}", code="invalid_multipart") from None
    if not collector.files:
        raise InvalidRequest("the upload holds no file", code="no_files")
    return collector.files
