"""chatstack's own exceptions and the one place they become HTTP answers.

Every error body has the same shape, which OpenAI clients also understand:
`{"error": {"code": "...", "message": "...", "type": "..."}}`.

    ChatstackError            -> its status_code, code and headers
      NotFound (404), Conflict (409), Unauthorized (401), TooManyRequests (429), InvalidRequest (422)
    BackendError              -> backend_error_response: as its class says (backends/client/errors.py):
                                 404, the backend's own 4xx, 502 or 504
    RequestValidationError    -> 422 invalid_request, with details
    HTTPException             -> its status
    anything else             -> internal_error_response: 500 internal_error, naming the request id
                                 (sent by app.http_middleware.ObservabilityMiddleware, which logs the
                                 traceback under the same id)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backends.client.errors import BackendError
from protocol import openai_wire


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


class InvalidRequest(ChatstackError):
    status_code = 422
    code = "invalid_request"


def error_body(code: str, message: str, status: int, **extra: Any) -> dict[str, Any]:
    return openai_wire.error_body(code, message, openai_wire.error_type(status), **extra)


def error_response(code: str, message: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, status, **extra), status_code=status)


def internal_error_response(request_id: str) -> JSONResponse:
    """The answer to an exception nothing else handled: no detail of it, only the id it is logged under."""
    message = f"internal server error; it is logged under request id {request_id}"
    return error_response("internal_error", message, 500, request_id=request_id)


def backend_error_response(exc: BackendError) -> JSONResponse:
    """The answer each kind of backend failure chose (see `backends.client.errors`)."""
    answer = exc.http_answer()
    extra = {"backend": answer.backend} if answer.backend is not None else {}
    return error_response(answer.code, answer.message, answer.status, **extra)


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
