"""What a file is, decided from its bytes: a PDF, UTF-8 text of some kind, or refused.

The name a client gives (and its Content-Type) never decides whether bytes are text: a `.txt` full of
NULs is refused, a PDF named `notes.md` is read as a PDF. Among texts, JSON and CSV must parse as such
to be called so; Markdown and code are recognised by their marks, and only when the content shows no
kind of its own does the name's extension pick between plain text, Markdown and code (a label for
people; the text is the same). Nothing here is ever called `text/html`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

PDF_MAGIC = b"%PDF-"
PDF = "application/pdf"
PLAIN, MARKDOWN, CSV, JSON = "text/plain", "text/markdown", "text/csv", "application/json"
CODE = "text/x-source"

_CODE_TYPES = {
    ".py": "text/x-python",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".ts": "text/x-typescript",
    ".tsx": "text/x-typescript",
    ".jsx": "text/javascript",
    ".java": "text/x-java",
    ".c": "text/x-c",
    ".h": "text/x-c",
    ".cc": "text/x-c++",
    ".cpp": "text/x-c++",
    ".hpp": "text/x-c++",
    ".cs": "text/x-csharp",
    ".go": "text/x-go",
    ".rs": "text/x-rust",
    ".rb": "text/x-ruby",
    ".php": "text/x-php",
    ".sh": "text/x-shellscript",
    ".sql": "text/x-sql",
    ".kt": "text/x-kotlin",
    ".swift": "text/x-swift",
    ".yaml": "text/x-yaml",
    ".yml": "text/x-yaml",
    ".toml": "text/x-toml",
}
_MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown"}

_STRAY_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
"""Control characters other than those real text files carry (tab, line ends, form feed, ESC)."""
MAX_CONTROL_SHARE = 0.001
"""Beyond this share of other control characters, "text" is binary in disguise."""

_SAMPLE_CHARS = 64 * 1024
_MD_MARKS = [
    re.compile(r"^#{1,6}\s+\S", re.MULTILINE),
    re.compile(r"^\s*```", re.MULTILINE),
    re.compile(r"^\s*[-*+]\s+\S", re.MULTILINE),
    re.compile(r"^\s*\d+\.\s+\S", re.MULTILINE),
    re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"),
    re.compile(r"^>\s", re.MULTILINE),
    re.compile(r"\*\*[^*\n]+\*\*"),
    re.compile(r"^\|.*\|\s*$", re.MULTILINE),
]
_CODE_LINE = re.compile(
    r"^\s*(?:(?:def|class|import|from\s+\S+\s+import|function|const|let|var|return|public|private|"
    r"protected|static|package|fn|func|pub|use|using|namespace|struct|enum|interface|impl|if|for|while|"
    r"elif|else|try|except|catch|switch|case)\b|#include\b|#!/)"
    r"|[;{}]\s*$"
)


class NotText(ValueError):
    """The bytes are not UTF-8 text."""


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: Literal["pdf", "text"]


def sniff(data: bytes) -> Sniffed:
    """PDF by its magic number; anything else is a candidate for text (checked by `decode_text`)."""
    return Sniffed("pdf" if data.startswith(PDF_MAGIC) else "text")


def decode_text(data: bytes) -> str:
    """The bytes as text: strict UTF-8 (a BOM is dropped), no NUL, almost no other control characters.

    Raises NotText otherwise. The few stray control characters tolerated are removed: they could hide
    text from a person reading what the model read.
    """
    if b"\x00" in data:
        raise NotText("it contains NUL bytes: it is a binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotText(f"it is not UTF-8 text (invalid byte at offset {exc.start})") from None
    # A regular expression, not a loop over characters: a 10 MB text is scanned in milliseconds.
    cleaned, strays = _STRAY_CONTROL.subn("", text)
    if strays > max(2, MAX_CONTROL_SHARE * len(text)):
        raise NotText("it contains control characters: it is a binary file, not text")
    return cleaned


def clean_extracted(text: str) -> str:
    """Text extracted from a document, without the control characters (NUL included) it may hold."""
    return _STRAY_CONTROL.sub("", text)


def text_media_type(text: str, name: str) -> str:
    """The kind of a text (see the module docstring)."""
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and _is_json(stripped):
        return JSON
    sample = text[:_SAMPLE_CHARS]
    if _is_csv(sample):
        return CSV
    extension = PurePosixPath(name.lower()).suffix
    code_share = _code_share(sample)
    markdown = sum(1 for mark in _MD_MARKS if mark.search(sample))
    if code_share >= 0.3 and markdown < 3:
        return _CODE_TYPES.get(extension, CODE)
    if markdown >= 2:
        return MARKDOWN
    if code_share >= 0.15:
        return _CODE_TYPES.get(extension, CODE)
    if extension in _MARKDOWN_EXTENSIONS:
        return MARKDOWN
    return _CODE_TYPES.get(extension, PLAIN)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _is_csv(sample: str) -> bool:
    """At least two lines, every line with the same number (two or more) of fields for one delimiter."""
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    if len(sample) >= _SAMPLE_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the sample may cut the last line short
    if len(lines) < 2:
        return False
    for delimiter in (",", ";", "\t", "|"):
        if not all(delimiter in line for line in lines):
            continue
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(widths) == 1 and widths.pop() >= 2:
            return True
    return False


def _code_share(sample: str) -> float:
    # Code inside Markdown fences is Markdown's, not evidence of a source file.
    outside = re.sub(r"^\s*```.*?^\s*```", "", sample, flags=re.MULTILINE | re.DOTALL)
    lines = [line for line in outside.splitlines() if line.strip()]
    if len(lines) < 2:
        return 0.0
    return sum(1 for line in lines if _CODE_LINE.search(line)) / len(lines)


def is_textual(media_type: str) -> bool:
    return media_type != PDF
