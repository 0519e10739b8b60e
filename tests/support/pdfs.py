"""Small real PDFs written byte by byte, honest and hostile, for the attachment tests."""

from __future__ import annotations

import zlib
from collections.abc import Sequence


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page_stream(lines: Sequence[str]) -> bytes:
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 760 Td"]
    for line in lines:
        ops.append(f"({_escape(line)}) Tj T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def build_pdf(pages: Sequence[Sequence[str]], *, streams: Sequence[bytes] | None = None) -> bytes:
    """A PDF with one page per entry of `pages` (lines of Helvetica text), and a valid xref table.

    `streams`, if given, replaces the pages' content streams (already encoded; FlateDecode'd when
    they start with the zlib header), for hostile files.
    """
    contents = list(streams) if streams is not None else [_page_stream(lines) for lines in pages]
    count = len(contents)
    # Objects: 1 catalog, 2 page tree, 3 font, then per page: the page and its content stream.
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, stream in enumerate(contents):
        page = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objects.append(page.encode())
        flate = stream[:1] == b"\x78"
        head = f"<< /Length {len(stream)}{' /Filter /FlateDecode' if flate else ''} >>\nstream\n"
        objects.append(head.encode() + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_pdf(pages: Sequence[Sequence[str]]) -> bytes:
    return build_pdf(pages)


def many_pages_pdf(count: int) -> bytes:
    return build_pdf([[f"Page {i + 1}"] for i in range(count)])


def bomb_pdf(inflated_mb: int = 200) -> bytes:
    """One page whose content stream is a few hundred KB compressed and `inflated_mb` MB inflated."""
    chunk = b"0 0 m " * (1024 * 1024 // 6)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(chunk) for _ in range(inflated_mb)) + compressor.flush()
    return build_pdf([[]], streams=[body])
