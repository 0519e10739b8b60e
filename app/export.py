"""A conversation as a downloadable document: JSON (complete) or Markdown (readable)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from urllib.parse import quote

from app.schemas import Conversation, MessageOut


def export_json(conversation: Conversation, messages: Sequence[MessageOut]) -> str:
    document = {
        "conversation": conversation.model_dump(mode="json"),
        "messages": [m.model_dump(mode="json") for m in messages],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


def export_markdown(conversation: Conversation, messages: Sequence[MessageOut]) -> str:
    lines = [
        f"# {conversation.title}",
        "",
        f"_Exported from chatstack; started {conversation.created_at:%Y-%m-%d %H:%M} UTC._",
        "",
    ]
    for message in messages:
        if message.role == "user":
            lines += ["## User", "", message.content, ""]
            if message.attachments:  # names as text: a file name is not Markdown of ours
                names = ", ".join("`" + a.name.replace("`", "'") + "`" for a in message.attachments)
                lines += [f"_Attached: {names}_", ""]
        elif message.role == "assistant":
            if message.content or message.status != "complete":
                marker = "" if message.status == "complete" else f" _({message.status})_"
                lines += [f"## Assistant{marker}", "", message.content, ""]
            for call in message.tool_calls:
                lines += [f"> **Tool call** `{call.name}`: `{call.arguments}`", ""]
        elif message.role == "tool":
            lines += [f"> **{message.name or 'tool'} result**", ">"]
            lines += [f"> {line}" if line else ">" for line in message.content.splitlines()]
            if message.sources:
                lines += [">"] + [f"> - [{s.title or s.url}]({s.url})" for s in message.sources]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_filename(conversation: Conversation, extension: str, *, ascii_only: bool = False) -> str:
    """The document's name from its title, in any script (letters, digits and marks; the rest become
    dashes), or with `ascii_only` transliterated where Unicode can (accents dropped) and otherwise cut."""
    title = unicodedata.normalize("NFC", conversation.title.lower())
    if ascii_only:
        title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    kept = "".join(c if unicodedata.category(c)[0] in "LNM" or c in "-_" else "-" for c in title)
    safe = kept[:40].strip("-")
    return f"{safe or 'conversation'}-{conversation.id[:8]}.{extension}"


# RFC 5987 attr-char: what may stand unescaped in `filename*`.
_ATTR_CHARS = "!#$&+-.^_`|~"


def content_disposition(conversation: Conversation, extension: str) -> str:
    """The export's `Content-Disposition: attachment` value, itself pure ASCII (header values are bytes).

    RFC 6266: `filename*` carries the name in UTF-8 (RFC 5987) for every current browser and client,
    `filename` an ASCII stand-in for the rest.
    """
    name = quote(export_filename(conversation, extension), safe=_ATTR_CHARS)
    fallback = export_filename(conversation, extension, ascii_only=True)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{name}"


def file_disposition(filename: str) -> str:
    """`Content-Disposition: attachment` for a file of any name (an uploaded attachment's), ASCII only:
    `filename*` in UTF-8 (RFC 5987), `filename` transliterated, without quotes or backslashes."""
    encoded = quote(filename, safe=_ATTR_CHARS)
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in ascii_name).strip() or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
