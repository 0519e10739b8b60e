"""The browser chat (Gradio, mounted at `/`) through nginx in Debian's Chromium: the page, its assets and
its queue's event stream all go through the proxy, and an answer streams in.

The screenshot lands in test-output/nginx/ui-through-nginx.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.nginx.support import Front
from tests.support.processes import CHROMIUM, ServerProcess, chromium

pytestmark = pytest.mark.slow

LONG_MS = 30_000
"""Generous: Gradio shows "Loading..." while it starts, and the machine may be busy."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "needs Debian's chromium: apt-get install chromium"
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(LONG_MS)
    yield context.new_page()
    context.close()


def test_gradio_config_answers_through_nginx(front: Front) -> None:
    config = httpx.get(f"{front.url}/config", timeout=30)
    assert config.status_code == 200
    # Gradio builds its own links from the forwarded host: they must point at nginx, not the app.
    assert config.json()["root"] == front.url


def finished_answer(chatstack: ServerProcess, conversation_id: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = httpx.get(f"{chatstack.url}/api/conversations/{conversation_id}", timeout=10).json()
        if detail["active_run_id"] is None:
            return str(detail["messages"][-1]["content"])
        time.sleep(0.2)
    raise AssertionError(f"conversation {conversation_id} still answering after {timeout_s}s")


def test_chat_page_streams_an_answer_through_nginx(
    page: Page, front: Front, chatstack: ServerProcess, nginx_output: Path
) -> None:
    requested: list[str] = []

    def remember(request: Request) -> None:
        requested.append(request.url)

    page.on("request", remember)
    page.goto(f"{front.url}/")
    box = page.locator("#cs-input textarea")
    expect(box).to_be_visible(timeout=LONG_MS)
    box.fill("tokens: 60\ndelay: 100")  # six seconds of streaming
    box.press("Enter")
    expect(page.get_by_text("the quick brown fox").first).to_be_visible(timeout=LONG_MS)
    # Words are on screen while the answer is still running: the stream was not held back by nginx.
    latest = httpx.get(f"{chatstack.url}/api/conversations", timeout=10).json()["items"][0]
    detail = httpx.get(f"{chatstack.url}/api/conversations/{latest['id']}", timeout=10).json()
    assert detail["active_run_id"] is not None
    answer = finished_answer(chatstack, latest["id"])
    assert len(answer.split()) == 60
    expect(page.get_by_text(answer)).to_be_visible(timeout=LONG_MS)  # and the whole answer arrived
    page.screenshot(path=str(nginx_output / "ui-through-nginx.png"))

    # Everything the page asked for went to nginx; nothing bypassed it to the app's own port.
    http_requests = [url for url in requested if url.startswith("http")]
    assert http_requests
    assert [url for url in http_requests if not url.startswith(front.url)] == []
    assert not any(url.startswith(chatstack.url) for url in requested)
    # The UI's queue streamed its updates through nginx (SSE; websockets would show as 101).
    streamed = [line for line in front.access_log() if line["uri"].startswith("/gradio_api/queue/data")]
    assert streamed
    assert {line["status"] for line in streamed} <= {200, 101}
