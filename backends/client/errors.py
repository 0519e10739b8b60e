"""Failures talking to a backend, one class per way it fails, so callers can retry, report or fall back.

    BackendError                 a backend could not serve a request      502
      BackendUnavailable         it could not be reached                  502
      BackendTimeout             it did not answer (or stopped) in time   504
      BackendStartTimeout        it scales to zero and did not start      502
                                 within its `cold_start_timeout_s`
      BackendHTTPError           it answered with an error status (or     its own 4xx as
                                 reported an error mid-answer)            `backend_rejected`, else 502
      BackendBadResponse         its answer was broken or cut short       502
      UnknownBackend             no backend has that name                 404 `unknown_backend`

Each class says, in one place, what its failure is called on the wire (`kind`: the metric label, and
`backend_<kind>` as the code of `run.error` and of the API's error body), what a user reads about it
(`user_message`) and how the HTTP API answers it (`http_answer`). `detail` is worded for users, and
bounded: the transport's own error stays in the exception chain (`__cause__`), for the server log.
`BackendStartTimeout` is not a `BackendTimeout`: it is final (the waiting is already done), where
an ordinary timeout is worth one more try.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple


class HttpAnswer(NamedTuple):
    """How the HTTP API answers a backend failure: `{"error": {"code", "message", "type", "backend"}}`."""

    status: int
    code: str
    message: str
    backend: str | None
    """The backend the body names (None: the body names none)."""


class BackendError(Exception):
    """A backend could not serve a request."""

    kind: ClassVar[str] = "error"
    status_code: ClassVar[int] = 502

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"backend {backend!r}: {detail}")
        self.backend = backend
        self.detail = detail

    @property
    def code(self) -> str:
        """The error code clients see (`run.error`, the API's error body, in-band stream errors)."""
        return f"backend_{self.kind}"

    @property
    def user_message(self) -> str:
        """What a user reads when a run failed this way."""
        return f"The backend '{self.backend}' failed: {self.detail}"

    def http_answer(self) -> HttpAnswer:
        return HttpAnswer(self.status_code, self.code, str(self), self.backend)


class BackendUnavailable(BackendError):
    kind = "unavailable"

    @property
    def user_message(self) -> str:
        return f"The backend '{self.backend}' is not reachable. It may be down or still starting."


class BackendTimeout(BackendError):
    kind = "timeout"
    status_code = 504


class BackendStartTimeout(BackendError):
    kind = "start_timeout"

    @property
    def user_message(self) -> str:
        return (
            f"The backend '{self.backend}' was scaled to zero and did not start in time ({self.detail}). "
            "Try again in a minute."
        )


class BackendHTTPError(BackendError):
    """`status` is the backend's HTTP status; None for an error it reported inside its stream."""

    kind = "http_error"

    def __init__(self, backend: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(backend, detail)
        self.status = status

    @classmethod
    def answered(cls, backend: str, status: int, message: str) -> BackendHTTPError:
        """The backend answered `status`, saying `message` (bounded by the caller: it is untrusted)."""
        return cls(backend, f"HTTP {status}: {message}", status=status)

    @property
    def rejected(self) -> bool:
        """The backend refused the request itself (a bad parameter, say): the client's to fix."""
        return self.status is not None and 400 <= self.status < 500

    def http_answer(self) -> HttpAnswer:
        if self.status is not None and self.rejected:
            return HttpAnswer(self.status, "backend_rejected", self.detail, self.backend)
        return super().http_answer()


class BackendBadResponse(BackendError):
    kind = "bad_response"


class UnknownBackend(BackendError):
    kind = "unknown_backend"
    status_code = 404

    @property
    def user_message(self) -> str:
        return f"There is no backend named '{self.backend}'."

    def http_answer(self) -> HttpAnswer:
        return HttpAnswer(self.status_code, self.kind, str(self), None)
