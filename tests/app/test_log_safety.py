"""Log records stay inert, whatever they hold: one line per record (or indented continuations), no raw
control characters, no API keys; and exceptions nothing handled answer JSON and log once, with the id."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.auth import new_api_key
from app.http_middleware import ObservabilityMiddleware
from app.log_context import JsonFormatter, TextFormatter, configure_logging, inert
from app.metrics import Metrics

HOSTILE = [
    "line\nINFO chatstack.access: GET /admin 200",
    "carriage\rreturn",
    "crlf\r\n2030-01-01 00:00:00,000 INFO forged",
    "nel\x85next",
    "separators\u2028line\u2029paragraph",
    "vertical\x0btab\x0cfeed\x1cfile",
    "escape\x1b[2J\x1b[31mred",
    "bidi\u202eevil\u2066isolate",
    "nul\x00byte\x7fdel\x9bcsi",
]
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def record(
    message: str, *args: object, exc: BaseException | None = None, **extra: object
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    entry = logging.LogRecord("chatstack.test", logging.ERROR, __file__, 1, message, args, exc_info)
    entry.__dict__.update(extra)
    return entry


def raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@pytest.mark.parametrize("value", HOSTILE)
def test_text_lines_cannot_be_forged(value: str) -> None:
    entry = record("GET %s", value, exc=raised(value))
    entry.stack_info = f"Stack (most recent call last):\n  {value}"
    output = TextFormatter().format(entry)
    lines = output.splitlines()  # every separator Python knows, not only \n
    assert TEXT_LINE.match(lines[0])
    assert all(line.startswith("    ") for line in lines[1:]), lines
    assert not UNSAFE.search(output.replace("\n", ""))
    assert lines[0].endswith(f"GET {inert(value)}"), "the value is kept, escaped"


@pytest.mark.parametrize("value", HOSTILE)
def test_json_lines_keep_values_exactly_on_one_line(value: str) -> None:
    entry = record("GET %s", value, exc=raised(value), path=value)
    output = JsonFormatter().format(entry)
    assert len(output.splitlines()) == 1
    assert not UNSAFE.search(output)
    parsed = json.loads(output)
    assert parsed["msg"] == f"GET {value}"
    assert parsed["path"] == value
    assert value in parsed["exc"]


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_api_keys_are_redacted_wherever_they_turn_up(formatter: logging.Formatter) -> None:
    key = new_api_key()
    entry = record(
        "headers %s",
        {"authorization": f"Bearer {key}"},
        exc=raised(f"bad key {key}"),
        header=f"bearer {key[3:]}",
    )
    output = formatter.format(entry)
    assert key not in output
    assert key[3:] not in output
    assert key[:10] not in output
    assert "[redacted]" in output
    if isinstance(formatter, JsonFormatter):
        assert json.loads(output)["header"] == "bearer [redacted]"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {
        name: logging.getLogger(name).level for name in ("aiosqlite", "sse_starlette", "httpcore", "hpack")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in loggers.items():
        logging.getLogger(name).setLevel(saved)


@pytest.mark.usefixtures("restore_logging")
def test_libraries_that_log_request_data_stay_quiet_at_debug() -> None:
    configure_logging("DEBUG", json_logs=False)
    assert logging.getLogger("chatstack").isEnabledFor(logging.DEBUG)
    for name in ("aiosqlite", "sse_starlette.sse", "httpcore.http11", "hpack.hpack"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    configure_logging("WARNING")
    assert not logging.getLogger("aiosqlite").isEnabledFor(logging.INFO)


# The catch-all: ObservabilityMiddleware turns what nothing handled into the JSON 500.


async def broken(_: Request) -> Response:
    raise RuntimeError("database on fire")


async def broken_midway(_: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        await asyncio.sleep(0)
        raise RuntimeError("stream on fire")

    return StreamingResponse(body(), media_type="text/event-stream")


class FormattedAtEmit(logging.Handler):
    """Formats each record as it is logged, while the request's context (its id) is still current."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def logged() -> Iterator[list[dict[str, object]]]:
    handler = FormattedAtEmit()
    logger = logging.getLogger("chatstack")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def app() -> Starlette:
    routes = [Route("/broken", broken), Route("/broken-midway", broken_midway)]
    application = Starlette(routes=routes)
    application.add_middleware(ObservabilityMiddleware, metrics=Metrics())
    return application


async def test_unhandled_errors_answer_json_500_and_log_once(
    app: Starlette, logged: list[dict[str, object]]
) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/broken", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-500"
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal server error; it is logged under request id trace-500",
            "type": "server_error",
            "request_id": "trace-500",
        }
    }
    assert "database on fire" not in response.text
    failures = [line for line in logged if "exc" in line]
    assert len(failures) == 1, "one traceback"
    assert failures[0]["logger"] == "chatstack.errors"
    assert failures[0]["request_id"] == "trace-500"
    assert "database on fire" in str(failures[0]["exc"])
    access = [line for line in logged if line["logger"] == "chatstack.access"]
    assert access[0]["status"] == 500


async def test_an_error_after_the_answer_started_is_logged_not_raised(
    app: Starlette, logged: list[dict[str, object]]
) -> None:
    # Called as a server would (httpx's ASGI transport insists on complete answers).
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/broken-midway",
        "raw_path": b"/broken-midway",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    requested = False

    async def receive() -> dict[str, object]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never goes away by itself
        raise AssertionError("unreachable")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # returns: uvicorn then closes the connection
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    assert [m for m in sent if m["type"] == "http.response.start"] == [sent[0]], "no second answer"
    failures = [line for line in logged if "exc" in line]
    assert len(failures) == 1
    assert failures[0]["logger"] == "chatstack.errors"
    assert "stream on fire" in str(failures[0]["exc"])
