"""Per-request observability as plain ASGI middleware (streams pass through untouched): a request id,
HTTP metrics by route template, one JSON access log line per request, and the JSON 500 for any
exception nothing else handled."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response, internal_error_response
from app.log_context import request_id_var
from app.metrics import Metrics

log = logging.getLogger("chatstack.access")
errors_log = logging.getLogger("chatstack.errors")

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# ASCII digits only (bytes.isdigit agrees, str.isdigit would not) and short enough for int() to be cheap.
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug or an outage (an unwritable database, say). Caught here rather than by an exception
            # handler: Starlette runs those in ServerErrorMiddleware, outside this middleware, so their
            # answer would go out without the request id, and the traceback would be logged without it.
            errors_log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if not response_started:
                await internal_error_response(request_id)(scope, receive, send_with_id)
            # Otherwise part of the answer (a stream) is out: returning lets uvicorn close the connection.
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = getattr(scope.get("route"), "path", None)
            template = (route or "/") if route is not None else "<unmatched>"
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_duration.labels(method, template).observe(elapsed)
            client = scope.get("client")
            log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a JSON 413 before the app reads them.

    `larger` raises the limit for the paths that match a pattern (file uploads), and only for them.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: Sequence[tuple[re.Pattern[str], int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = tuple(larger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = next((size for path, size in self.larger if path.fullmatch(scope["path"])), self.max_bytes)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not _CONTENT_LENGTH.fullmatch(length):
                bad = error_response("invalid_request", "Content-Length must be a number of bytes", 400)
                await bad(scope, receive, send)
                return
            if int(length) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if limit != self.max_bytes:
            # A route for large bodies reads them as they stream: counted on the way, never buffered
            # here (that would hold up to its limit in memory before the caller is even checked).
            await self.app(scope, _counting(receive, limit), send)
            return
        # No declared length (chunked): read at most the limit, then replay what was read.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        message = f"request body is larger than {limit} bytes"
        await error_response("payload_too_large", message, 413)(scope, receive, send)


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive`, raising a 413 (answered by the app's HTTP error handler) once the body passes `limit`."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise HTTPException(413, f"request body is larger than {limit} bytes")
        return message

    return counted
