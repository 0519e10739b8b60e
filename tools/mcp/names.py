"""Names MCP tools are offered under: valid OpenAI function names, unique across every server.

A server's tool names are untrusted: any length, any characters, and possibly the same as a built-in's
or another server's. The scheme, applied to the whole catalog at once so that it does not depend on
which server answered first:

1. Sanitize: every character outside `[A-Za-z0-9_-]` becomes `_`, and the name is cut to 64 characters
   (`get.weather` -> `get_weather`; an empty name becomes `tool`).
2. A sanitized name that no other tool has is offered as is (`get_current_time`).
3. Names that clash (with a built-in, or between servers) are prefixed with their server's name and a
   double underscore (`time__get_current_time`); built-ins are never renamed.
4. A prefixed name longer than 64 characters, or one that still clashes, is cut and given a short hash
   of (server, original name), so it stays unique and stable across restarts.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

MAX_NAME_CHARS = 64
"""OpenAI's limit for function names (`^[a-zA-Z0-9_-]{1,64}$`)."""

SEPARATOR = "__"
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HASH_CHARS = 8


def is_valid_name(name: str) -> bool:
    return bool(_VALID.match(name))


def sanitize(raw: str) -> str:
    """`raw` as a valid function name (at most 64 characters, no character outside [A-Za-z0-9_-])."""
    # Cut before substituting: a megabyte-long name costs what a short one does.
    name = _INVALID.sub("_", raw[:MAX_NAME_CHARS])
    return name or "tool"


def _hashed(base: str, server: str, raw: str) -> str:
    digest = hashlib.sha256(f"{server}\0{raw}".encode()).hexdigest()[:_HASH_CHARS]
    return f"{base[: MAX_NAME_CHARS - _HASH_CHARS - 1]}_{digest}"


def assign_names(builtin: Iterable[str], mcp_tools: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The offered name of each (server, raw tool name), unique among themselves and the built-ins."""
    pairs = list(dict.fromkeys(mcp_tools))
    reserved = set(builtin)
    counts = Counter(sanitize(raw) for _, raw in pairs)
    names: dict[tuple[str, str], str] = {}
    taken = set(reserved)
    for server, raw in pairs:
        plain = sanitize(raw)
        if counts[plain] == 1 and plain not in reserved:
            names[(server, raw)] = plain
            taken.add(plain)
    for server, raw in pairs:
        if (server, raw) in names:
            continue
        candidate = f"{server}{SEPARATOR}{sanitize(raw)}"
        if len(candidate) > MAX_NAME_CHARS or candidate in taken:
            candidate = _hashed(candidate, server, raw)
        names[(server, raw)] = candidate
        taken.add(candidate)
    return names
