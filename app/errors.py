"""chatstack's own exceptions and the one place they become HTTP answers.

Every error body has the same shape, which OpenAI clients also understand:
`{"error": {"code": "...", "message": "...", "type": "..."}}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backends.errors import BackendError


class ChatstackError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if code:
            self.code = code


class NotFound(ChatstackError):
    status_code = 404
    code = "not_found"


class Conflict(ChatstackError):
    status_code = 409
    code = "conflict"


class Unauthorized(ChatstackError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class TooManyRequests(ChatstackError):
    status_code = 429
    code = "rate_limited"


class PayloadTooLarge(ChatstackError):
    status_code = 413
    code = "payload_too_large"


class InvalidRequest(ChatstackError):
    status_code = 422
    code = "invalid_request"


def error_body(code: str, message: str, status: int, **extra: Any) -> dict[str, Any]:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return {"error": {"code": code, "message": message, "type": kind, **extra}}


def error_response(code: str, message: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, status, **extra), status_code=status)


def backend_error_response(exc: BackendError) -> JSONResponse:
    if exc.kind == "unknown_backend":
        return error_response("unknown_backend", str(exc), 404)
    # A backend's own 4xx (a bad parameter, say) is the client's to fix; anything else is a bad gateway.
    if exc.kind == "http_error" and exc.status is not None and 400 <= exc.status < 500:
        return error_response("backend_rejected", exc.detail, exc.status, backend=exc.backend)
    status = 504 if exc.kind == "timeout" else 502
    return error_response(f"backend_{exc.kind}", str(exc), status, backend=exc.backend)


def install_error_handlers(app: FastAPI) -> None:
    async def on_chatstack_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ChatstackError)
        response = error_response(exc.code, exc.message, exc.status_code)
        response.headers.update(exc.headers)
        return response

    async def on_backend_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BackendError)
        return backend_error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:5])
        return error_response("invalid_request", f"invalid request: {summary}", 422, details=details)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {
            400: "invalid_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        response = error_response(code, str(exc.detail), exc.status_code)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    app.add_exception_handler(ChatstackError, on_chatstack_error)
    app.add_exception_handler(BackendError, on_backend_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
