"""Each kind of backend failure: its code, what a user reads, and how the HTTP API answers it."""

from __future__ import annotations

import pytest

from backends.client.errors import (
    BackendBadResponse,
    BackendError,
    BackendHTTPError,
    BackendStartTimeout,
    BackendTimeout,
    BackendUnavailable,
    HttpAnswer,
    UnknownBackend,
)


@pytest.mark.parametrize(
    ("error", "code", "answer", "user_message"),
    [
        (
            BackendUnavailable("b", "cannot reach http://b/v1"),
            "backend_unavailable",
            HttpAnswer(502, "backend_unavailable", "backend 'b': cannot reach http://b/v1", "b"),
            "The backend 'b' is not reachable. It may be down or still starting.",
        ),
        (
            BackendTimeout("b", "it did not answer in time"),
            "backend_timeout",
            HttpAnswer(504, "backend_timeout", "backend 'b': it did not answer in time", "b"),
            "The backend 'b' failed: it did not answer in time",
        ),
        (
            BackendStartTimeout("b", "the backend did not start within 5 s"),
            "backend_start_timeout",
            HttpAnswer(
                502, "backend_start_timeout", "backend 'b': the backend did not start within 5 s", "b"
            ),
            "The backend 'b' was scaled to zero and did not start in time "
            "(the backend did not start within 5 s). Try again in a minute.",
        ),
        (
            BackendHTTPError.answered("b", 503, "overloaded"),
            "backend_http_error",
            HttpAnswer(502, "backend_http_error", "backend 'b': HTTP 503: overloaded", "b"),
            "The backend 'b' failed: HTTP 503: overloaded",
        ),
        (
            BackendHTTPError.answered("b", 400, "temperature must be below 2"),
            "backend_http_error",
            HttpAnswer(400, "backend_rejected", "HTTP 400: temperature must be below 2", "b"),
            "The backend 'b' failed: HTTP 400: temperature must be below 2",
        ),
        (
            BackendHTTPError("b", "it reported an error mid-answer: oops"),
            "backend_http_error",
            HttpAnswer(502, "backend_http_error", "backend 'b': it reported an error mid-answer: oops", "b"),
            "The backend 'b' failed: it reported an error mid-answer: oops",
        ),
        (
            BackendBadResponse("b", "its answer was not valid JSON"),
            "backend_bad_response",
            HttpAnswer(502, "backend_bad_response", "backend 'b': its answer was not valid JSON", "b"),
            "The backend 'b' failed: its answer was not valid JSON",
        ),
        (
            UnknownBackend("nope", "no backend named 'nope'"),
            "backend_unknown_backend",
            HttpAnswer(404, "unknown_backend", "backend 'nope': no backend named 'nope'", None),
            "There is no backend named 'nope'.",
        ),
    ],
)
def test_each_failure_says_its_code_its_words_and_its_http_answer(
    error: BackendError, code: str, answer: HttpAnswer, user_message: str
) -> None:
    assert error.code == code
    assert error.code == f"backend_{error.kind}"  # the metric label is the kind
    assert error.http_answer() == answer
    assert error.user_message == user_message
