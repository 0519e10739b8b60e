"""Failures talking to a backend, classified so callers can decide to retry, report or fall back."""

from __future__ import annotations

from typing import Literal

BackendErrorKind = Literal[
    "unavailable", "timeout", "start_timeout", "http_error", "bad_response", "unknown_backend"
]
"""`start_timeout`: a backend that scales to zero did not start within its `cold_start_timeout_s`."""


class BackendError(Exception):
    """A backend could not serve a request."""

    def __init__(
        self, backend: str, kind: BackendErrorKind, message: str, *, status: int | None = None
    ) -> None:
        super().__init__(f"backend {backend!r}: {message}")
        self.backend = backend
        self.kind = kind
        self.detail = message
        self.status = status
