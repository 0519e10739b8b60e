"""Reads an uploaded file's text. Runs inside a worker process of `tools.worker_pool` (never in the
server): every byte here is attacker-controlled, and a PDF can be built to take minutes or gigabytes
to parse. The pool kills the worker past its deadline or memory bound; the limits below make most
hostile files fail fast and clearly before that.

Files go in and text comes out through temporary files named by the caller: the pool's frames carry
small JSON (`tools.worker_protocol.MAX_FRAME_BYTES`), and a document's text can be megabytes.
"""

from __future__ import annotations

import io
from typing import Any

# Imported with the module, so that a warm worker has pypdf loaded before the first PDF arrives.
from pypdf import PdfReader, apply_configuration
from pypdf.errors import FileNotDecryptedError, LimitReachedError

from app.attachments import kinds

PDF_LIMITS: dict[str, Any] = {
    # pypdf's own bounds (pypdf.Configuration), tighter than its defaults of 75 MB per stream: a 10 MB
    # upload has no honest reason to inflate a single stream past this.
    "zlib_maximum_output_length": 32_000_000,
    "lzw_maximum_output_length": 32_000_000,
    "run_length_maximum_output_length": 32_000_000,
    "brotli_maximum_output_length": 32_000_000,
    "array_based_stream_maximum_output_length": 32_000_000,
    "image_maximum_buffer_size": 32_000_000,
    "stream_decoding_work_maximum_length": 100_000_000,
    "jbig2dec_binary": None,  # never run an external decoder on an upload
}
PAGE_SEPARATOR = "\n\n"


def read_file(path: str, out_path: str, name: str, max_pages: int, max_chars: int) -> dict[str, Any]:
    """Read the file at `path`; write its text (UTF-8) to `out_path`.

    Returns `{"media_type", "pages", "page_offsets"}` (offsets: where each page's text starts), or
    `{"refused": reason, "message": ...}` with reason `binary`, `too_long`, `pages`, `encrypted`,
    `invalid` or `too_complex`.
    """
    with open(path, "rb") as source:
        data = source.read()
    if kinds.sniff(data).kind == "pdf":
        return _read_pdf(data, out_path, max_pages, max_chars)
    try:
        text = kinds.decode_text(data)
    except kinds.NotText as exc:
        return _refused("binary", f"it is neither UTF-8 text nor a PDF: {exc}")
    if len(text) > max_chars:
        return _refused("too_long", f"it holds {len(text):,} characters of text; the limit is {max_chars:,}")
    _write(out_path, text)
    return {"media_type": kinds.text_media_type(text, name), "pages": None, "page_offsets": []}


def _read_pdf(data: bytes, out_path: str, max_pages: int, max_chars: int) -> dict[str, Any]:
    try:
        with apply_configuration(**PDF_LIMITS):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                return _refused("encrypted", "it is an encrypted PDF; attach a copy without a password")
            count = len(reader.pages)
            if count > max_pages:
                return _refused("pages", f"it has {count:,} pages; the limit is {max_pages:,}")
            texts: list[str] = []
            offsets: list[int] = []
            total = 0
            for page in reader.pages:
                text = kinds.clean_extracted(page.extract_text() or "")
                offsets.append(total)
                total += len(text) + len(PAGE_SEPARATOR)
                if total > max_chars:
                    return _refused("too_long", f"its text is longer than {max_chars:,} characters")
                texts.append(text)
    except LimitReachedError:
        return _refused("too_complex", "it decompresses to more data than a document of its size may")
    except FileNotDecryptedError:
        return _refused("encrypted", "it is an encrypted PDF; attach a copy without a password")
    except RecursionError:
        return _refused("invalid", "its structure is nested too deeply to read")
    except MemoryError:
        raise  # the pool reports it, and replaces this worker
    except Exception:  # pypdf raises many kinds on malformed input; their text is the file's
        return _refused("invalid", "it is not a readable PDF")
    _write(out_path, PAGE_SEPARATOR.join(texts))
    return {"media_type": kinds.PDF, "pages": count, "page_offsets": offsets}


def _write(path: str, text: str) -> None:
    # `replace`: a PDF's text may hold lone surrogates, which UTF-8 cannot carry.
    with open(path, "w", encoding="utf-8", errors="replace") as out:
        out.write(text)


def _refused(reason: str, message: str) -> dict[str, Any]:
    return {"refused": reason, "message": message}
