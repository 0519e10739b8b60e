"""What the browser tests do on the chat page, in the words of a user (Playwright's sync API)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.ui.conftest import Stack

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

LONG = 30_000
"""Generous: the machine may be busy (2 cores), and Gradio shows "Loading..." while it starts."""


def open_app(page: Any, stack: Stack, conversation_id: str = "") -> None:
    page.goto(f"{stack.url}/" + (f"?c={conversation_id}" if conversation_id else ""))
    expect(page.locator("#cs-input textarea")).to_be_visible(timeout=LONG)
    # The page's load handler has run once the backend status is shown.
    expect(page.locator(".cs-backend-info .cs-health")).to_be_visible(timeout=LONG)


def send(page: Any, text: str) -> None:
    box = page.locator("#cs-input textarea")
    box.fill(text)
    box.press("Enter")


def answers(page: Any) -> Any:
    return page.locator("#cs-chat .message-row.bot-row")


def last_answer(page: Any) -> Any:
    return answers(page).last


def conversation_id(page: Any) -> str:
    match = re.search(r"[?&]c=([0-9a-f]+)", page.url)
    assert match, f"no conversation id in {page.url}"
    return match.group(1)


def expand_step(answer: Any, title: str, shows: Any) -> None:
    """Open a tool step (Gradio collapses a step once it is done) and wait for `shows` in it."""
    header = answer.locator(".thought-group .title", has_text=title).first
    if "expanded" not in (header.get_attribute("class") or "").split():
        header.click()
    expect(header).to_have_class(re.compile(r"\bexpanded\b"))
    expect(shows).to_be_visible()


def sign_in(page: Any, stack: Stack, key: str) -> None:
    """Load the page and sign in with `key` (on an app that requires API keys)."""
    page.goto(f"{stack.url}/")
    box = page.locator("#cs-key input")
    expect(box).to_be_visible(timeout=LONG)
    box.fill(key)
    page.locator("#cs-sign-in-button").click()
    expect(page.locator(".cs-backend-info .cs-health")).to_be_visible(timeout=LONG)


def wait_for_run_to_finish(
    stack: Stack,
    conversation: str,
    timeout_s: float = 30,
    key: str | None = None,
    runs: int = 1,
) -> dict[str, Any]:
    """Wait until the conversation has at least `runs` runs and none of them is running.

    Counting runs matters after a click: the browser's request may not have reached the server yet,
    and the conversation then still looks finished.
    """
    with stack.api(key) as api:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            detail: dict[str, Any] = api.get(f"/api/conversations/{conversation}").json()
            if detail["active_run_id"] is None and len(detail["runs"]) >= runs:
                return detail
            time.sleep(0.2)
    raise AssertionError(f"conversation {conversation} still has a running answer")
