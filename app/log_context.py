"""Structured JSON logs that carry the request id and run id of the work they describe.

Whatever a record holds (a request path, a header, an exception message), the formatters write it
inert: control characters, line and paragraph separators and bidi overrides are escaped, so no value
can start a forged log line or rewrite a terminal, and anything shaped like an API key is redacted.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
run_id_var: ContextVar[str | None] = ContextVar("run_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

# C0 and C1 controls (NEL, U+0085, ends a line for many readers), the Unicode line and paragraph
# separators, and the bidi controls that reorder what a terminal or viewer shows.
_UNSAFE = [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x2028, 0x202F)]
_UNSAFE += [*range(0x2066, 0x206A)]
_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_TEXT_ESCAPES = {c: _SHORT.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
# json.dumps already escapes C0 controls; what it leaves raw gets a JSON escape, valid inside a string.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in _UNSAFE if c >= 0x7F}

# API keys (app.auth.KEY_PREFIX + a urlsafe token) and bearer credentials, wherever they turn up: a
# library's debug line, an exception that quotes a header. Only characters that cannot end a JSON
# string are matched, so redacting never breaks a JSON line.
_SECRET = re.compile(r"\bcs_[A-Za-z0-9_-]{6,}|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]+")


def _redact(text: str) -> str:
    return _SECRET.sub(_redacted, text)


def _redacted(match: re.Match[str]) -> str:
    found = match.group(0)
    return "cs_[redacted]" if found.startswith("cs_") else found.split()[0] + " [redacted]"


def inert(text: str) -> str:
    """`text` on one line, its control characters escaped and anything like an API key redacted."""
    return _redact(text.translate(_TEXT_ESCAPES))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields and the current request and run ids are included."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id, run_id = request_id_var.get(), run_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        if run_id:
            entry["run_id"] = run_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _redact(json.dumps(entry, ensure_ascii=False, default=str).translate(_JSON_ESCAPES))


class TextFormatter(logging.Formatter):
    """`time level logger: message` for people reading a terminal; a traceback follows indented.

    Every physical line a record writes starts with its timestamp or with indentation, so no logged
    value (a path with `%0a` in it, an exception message) can pass for a record of its own.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        lines = [inert(self.formatMessage(record))]
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for text in details:
            lines += ["    " + inert(line) for line in text.splitlines()]
        return "\n".join(lines)


# Libraries whose DEBUG output carries request data: aiosqlite prints every statement with its
# parameters (key hashes, prompts), sse_starlette every event it sends (answers), httpcore and hpack
# headers. They stay at INFO even when chatstack runs at DEBUG. (SQLAlchemy holds its own loggers at
# WARNING unless asked, and its engine hides parameters anyway: app.db.engine.)
_NEVER_DEBUG = ("aiosqlite", "sse_starlette", "httpcore", "hpack")


def configure_logging(level: str, *, json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NEVER_DEBUG:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    # uvicorn's own loggers would print plain text beside ours: route them through the root handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The UI calls the API over HTTP; chatstack's own access log already has those requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)
