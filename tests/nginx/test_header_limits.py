"""Request heads nginx refuses itself: an oversized header (431), an overlong request line (414) and a
malformed request (400), each with chatstack's JSON error body instead of nginx's HTML page."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.nginx.support import Front

pytestmark = pytest.mark.slow


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


def raw_request(front: Front, head: bytes) -> bytes:
    """Send `head` as is and read the whole answer (nginx closes after these errors)."""
    address = urlsplit(front.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def logged_with_status(front: Front, status: int, count: int) -> list[dict[str, Any]]:
    """The access log's entries with `status`, once there are `count` (nginx logs after answering)."""
    deadline = time.monotonic() + 10
    while True:
        found = [entry for entry in front.access_log() if entry["status"] == status]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, found
            return found
        time.sleep(0.05)


async def test_oversized_header_gets_431_json(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
        # One line within large_client_header_buffers (8k) still reaches the app.
        fits = await client.get("/api/backends", headers={"X-Padding": "a" * 7000})
        assert fits.status_code == 200
        line = await client.get("/api/backends", headers={"Authorization": "Bearer " + "a" * 20_000})
        assert_json_error(line, 431, "request_header_too_large")
        # Many lines, each small, over the 4 x 8k the head may take in all.
        many = {f"X-Padding-{i}": "a" * 4000 for i in range(12)}
        assert_json_error(await client.get("/api/backends", headers=many), 431, "request_header_too_large")
    refused = logged_with_status(front, 431, count=2)
    assert all(entry["upstream"] == "" for entry in refused), "an oversized head must not reach the app"


async def test_overlong_request_line_gets_414_json(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
        response = await client.get("/api/backends", params={"q": "a" * 20_000})
        assert_json_error(response, 414, "uri_too_long")


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (b"GET /api/backends HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, b"invalid_request"),
        (b"GET /api/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"invalid_request"),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"uri_too_long"),
    ],
)
def test_unreadable_request_gets_json(front: Front, head: bytes, status: int, code: bytes) -> None:
    answer = raw_request(front, head)
    response_head, _, body = answer.partition(b"\r\n\r\n")
    assert response_head.startswith(b"HTTP/1.1 %d" % status), answer[:300]
    assert b"content-type: application/json" in response_head.lower()
    assert b'"code":"' + code + b'"' in body
