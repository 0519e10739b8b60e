"""What nginx refuses, and how: too-large bodies (413), too many requests (429), the metrics endpoint
from outside (403), and an app that is down (502), each with a JSON body in chatstack's error shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.nginx.support import BODY_LIMIT, Front, fresh_prefix, proxy_options, running_front
from tests.support.processes import ServerProcess, free_port
from tests.support.sse import new_conversation

pytestmark = pytest.mark.slow

LIMIT_BYTES = int(BODY_LIMIT.removesuffix("k")) * 1024


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


async def test_body_over_the_limit_gets_413_json(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
        cid = await new_conversation(client)
        url = f"/api/conversations/{cid}/messages"
        just_under = await client.post(url, json={"content": "x" * (LIMIT_BYTES - 100)})
        assert just_under.status_code == 202, just_under.text
        await asyncio.sleep(0.5)  # let that short run finish: one answer at a time per conversation
        too_large = await client.post(url, json={"content": "x" * (LIMIT_BYTES + 100)})
        assert_json_error(too_large, 413, "payload_too_large")
        assert BODY_LIMIT in too_large.json()["error"]["message"]


async def test_rate_limit_answers_429_json_with_retry_after(
    chatstack: ServerProcess, nginx_output: Path
) -> None:
    options = proxy_options(chatstack, rate_per_s=2.0, burst=3)
    with running_front(options, fresh_prefix(nginx_output, "front-rate")) as limited:
        async with httpx.AsyncClient(base_url=limited.url, timeout=30) as client:
            burst = await asyncio.gather(*(client.get("/api/backends") for _ in range(20)))
            statuses = [r.status_code for r in burst]
            assert 1 <= statuses.count(200) <= 8, statuses  # the burst (3) and what the rate refilled
            assert statuses.count(429) >= 12, statuses
            refused = next(r for r in burst if r.status_code == 429)
            assert_json_error(refused, 429, "rate_limited")
            retry_after = float(refused.headers["retry-after"])
            assert retry_after >= 1
            await asyncio.sleep(retry_after + 0.2)
            assert (await client.get("/api/backends")).status_code == 200  # Retry-After told the truth
            # Health checks are never limited, whatever the API budget.
            health = await asyncio.gather(*(client.get("/healthz") for _ in range(20)))
            assert {r.status_code for r in health} == {200}
        logged = [line for line in limited.access_log() if line["status"] == 429]
        assert logged
        assert logged[0]["limit_req"] == "REJECTED"


async def test_metrics_only_for_local_tools(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url, timeout=30) as local:
        scraped = await local.get("/metrics")
        assert scraped.status_code == 200
        assert "chatstack_http_requests_total" in scraped.text
    outside = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=front.url, transport=outside, timeout=30) as remote:
        assert_json_error(await remote.get("/metrics"), 403, "forbidden")
        assert (await remote.get("/healthz")).status_code == 200


async def test_app_down_gets_502_json(chatstack: ServerProcess, nginx_output: Path) -> None:
    options = proxy_options(chatstack, upstreams=(f"127.0.0.1:{free_port()}",))
    with running_front(options, fresh_prefix(nginx_output, "front-down")) as orphan:
        async with httpx.AsyncClient(base_url=orphan.url, timeout=30) as client:
            response = await client.get("/api/backends")
    assert_json_error(response, 502, "chatstack_unreachable")
    assert response.headers["retry-after"] == "5"


async def test_attachment_uploads_have_a_limit_of_their_own(
    chatstack: ServerProcess, nginx_output: Path
) -> None:
    options = proxy_options(chatstack, upload_limit="2m")
    with running_front(options, fresh_prefix(nginx_output, "front-uploads")) as front:
        async with httpx.AsyncClient(base_url=front.url, timeout=30) as client:
            cid = await new_conversation(client)
            url = f"/api/conversations/{cid}/attachments"
            # Over the general body limit, within the upload limit: through to the app.
            text = b"a line of notes\n" * (LIMIT_BYTES // 8)
            stored = await client.post(url, files={"file": ("notes.txt", text, "text/plain")})
            assert stored.status_code == 201, stored.text
            assert stored.json()["items"][0]["bytes"] == len(text)
            too_large = await client.post(
                url, files={"file": ("big.txt", b"b" * (3 * 1024 * 1024), "text/plain")}
            )
            assert_json_error(too_large, 413, "payload_too_large")
            # Every other route keeps the general limit.
            message = await client.post(
                f"/api/conversations/{cid}/messages", json={"content": "x" * (LIMIT_BYTES + 100)}
            )
            assert_json_error(message, 413, "payload_too_large")
