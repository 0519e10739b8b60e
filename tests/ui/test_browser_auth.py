"""Signing in with API keys, end to end: real Chromium against the app with `CHATSTACK_AUTH=on`.

Users and keys are made with `chatstack users create`, as an operator would. The app's backends
file names a `tools` and a `throughput` backend, so `auto` is offered too. Signed in, the browser
holds the key only in an HttpOnly cookie, out of reach of the page's scripts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from app.ui_guard import COOKIE
from tests.ui.conftest import Stack, screenshot
from tests.ui.pages import (
    LONG,
    conversation_id,
    expect,
    last_answer,
    send,
    sign_in,
    wait_for_run_to_finish,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keys(auth_stack: Stack) -> dict[str, str]:
    return {name: auth_stack.create_user(name) for name in ("alice", "bob")}


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """A fresh browser tab (its own storage, so nobody is signed in) at desktop size."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def stored_key(page: Any) -> str | None:
    """The key the browser keeps for the page, after checking that no script of the page can read it."""
    assert page.evaluate("Object.keys(window.localStorage).filter(k => k.includes('Key'))") == []
    assert COOKIE not in page.evaluate("document.cookie")
    cookies = [c for c in page.context.cookies() if c["name"] == COOKIE]
    for cookie in cookies:
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
    return str(cookies[0]["value"]) if cookies else None


def test_sign_in_survives_a_reload_and_sign_out_forgets_the_key(
    tab: Any, auth_stack: Stack, keys: dict[str, str]
) -> None:
    tab.goto(f"{auth_stack.url}/")
    key_box = tab.locator("#cs-key input")
    expect(key_box).to_be_visible(timeout=LONG)
    expect(key_box).to_have_attribute("type", "password")
    # Nothing of the chat shows before signing in.
    expect(tab.locator("#cs-sidebar")).to_be_hidden()
    expect(tab.locator("#cs-input")).to_be_hidden()
    screenshot(tab, "20-sign-in")

    key_box.fill("cs_not-a-key-anyone-has")
    tab.locator("#cs-sign-in-button").click()
    expect(tab.locator(".cs-sign-in-error")).to_contain_text("That API key was not accepted", timeout=LONG)
    expect(tab.locator("#cs-input")).to_be_hidden()
    assert stored_key(tab) is None
    screenshot(tab, "21-sign-in-wrong-key")

    key_box.fill(keys["alice"])
    key_box.press("Enter")
    expect(tab.locator(".cs-backend-info .cs-health")).to_be_visible(timeout=LONG)
    expect(tab.locator("#cs-sign-in")).to_be_hidden()
    expect(tab.locator("#cs-account")).to_contain_text(keys["alice"][:10])
    send(tab, "remember me after a reload")
    expect(last_answer(tab).locator(".cs-timing")).to_be_visible(timeout=LONG)
    conversation = conversation_id(tab)
    assert stored_key(tab) == keys["alice"]
    screenshot(tab, "22-signed-in")

    tab.reload()
    expect(tab.locator("#cs-title textarea")).to_have_value("remember me after a reload", timeout=LONG)
    expect(tab.locator("#cs-sign-in")).to_be_hidden()
    expect(last_answer(tab)).to_contain_text("Echo: remember me after a reload")
    assert conversation_id(tab) == conversation

    tab.locator("#cs-sign-out").click()
    expect(key_box).to_be_visible(timeout=LONG)
    expect(key_box).to_have_value("")
    expect(tab.locator("#cs-sidebar")).to_be_hidden()
    assert stored_key(tab) is None
    assert "c=" not in tab.url
    tab.reload()
    expect(key_box).to_be_visible(timeout=LONG)
    expect(tab.locator("#cs-input")).to_be_hidden()


def test_each_user_sees_only_their_own_conversations(
    browser: Any, auth_stack: Stack, keys: dict[str, str]
) -> None:
    contexts = [browser.new_context(viewport={"width": 1280, "height": 860}) for _ in range(2)]
    try:
        alice, bob = (context.new_page() for context in contexts)
        sign_in(alice, auth_stack, keys["alice"])
        send(alice, "alice's travel plans")
        sign_in(bob, auth_stack, keys["bob"])
        send(bob, "bob's shopping list")
        for page in (alice, bob):
            expect(last_answer(page).locator(".cs-timing")).to_be_visible(timeout=LONG)
        alices_conversation = conversation_id(alice)

        # Both conversations exist now; each list is read afresh.
        alice.reload()
        expect(alice.locator("#cs-conversations label", has_text="alice's travel plans")).to_be_visible(
            timeout=LONG
        )
        expect(alice.locator("#cs-conversations label", has_text="bob's")).to_have_count(0)
        bob.locator("#cs-new-chat").click()
        expect(bob.locator("#cs-title textarea")).to_have_value("New chat", timeout=LONG)
        expect(bob.locator("#cs-conversations label", has_text="bob's shopping list")).to_be_visible()
        expect(bob.locator("#cs-conversations label", has_text="alice's")).to_have_count(0)
        screenshot(alice, "23-alice")
        screenshot(bob, "23-bob")

        # Alice's link opened by Bob shows him nothing of hers.
        bob.goto(f"{auth_stack.url}/?c={alices_conversation}")
        expect(bob.get_by_text("That conversation no longer exists.")).to_be_visible(timeout=LONG)
        expect(bob.locator("#cs-title textarea")).to_have_value("New chat")
        expect(bob.locator("#cs-chat")).not_to_contain_text("travel plans")
    finally:
        for context in contexts:
            context.close()


def test_a_revoked_key_returns_to_the_sign_in_view(tab: Any, auth_stack: Stack) -> None:
    key = auth_stack.create_user("carol")
    sign_in(tab, auth_stack, key)
    send(tab, "a question before the key is revoked")
    expect(last_answer(tab).locator(".cs-timing")).to_be_visible(timeout=LONG)

    auth_stack.chatstack("users", "revoke", "carol")
    tab.locator("#cs-new-chat").click()
    expect(tab.locator(".cs-sign-in-error")).to_contain_text("no longer accepted", timeout=LONG)
    expect(tab.locator("#cs-key input")).to_be_visible()
    expect(tab.locator("#cs-sidebar")).to_be_hidden()
    assert stored_key(tab) is None
    screenshot(tab, "24-key-revoked")
    # The page does not come back with the old key after a reload either.
    tab.reload()
    expect(tab.locator("#cs-key input")).to_be_visible(timeout=LONG)
    expect(tab.locator("#cs-input")).to_be_hidden()


def test_auto_names_the_backends_that_answered_and_exports_with_the_key(
    tab: Any, auth_stack: Stack, keys: dict[str, str]
) -> None:
    sign_in(tab, auth_stack, keys["alice"])
    tab.locator("#cs-backend input").click()
    tab.get_by_role("option", name="auto (tools: scripted, answers: scripted-fast)").click()
    expect(tab.locator(".cs-backend-info")).to_contain_text(
        "tool steps on scripted · answers on scripted-fast"
    )
    send(tab, "calc: 6*7")
    answer = last_answer(tab)
    expect(answer).to_contain_text("The result is 42", timeout=LONG)
    # The tool step ran on the tools backend, the answer was written by the throughput one.
    timing = answer.locator(".cs-timing")
    expect(timing).to_contain_text("1 tool call · by scripted and scripted-fast", timeout=LONG)
    screenshot(tab, "25-auto-backend")
    conversation = conversation_id(tab)
    detail = wait_for_run_to_finish(auth_stack, conversation, key=keys["alice"])
    assert detail["backend"] == "auto"

    # Reopened, the same line comes from the stored conversation.
    tab.reload()
    expect(last_answer(tab).locator(".cs-timing")).to_contain_text(
        "by scripted and scripted-fast", timeout=LONG
    )
    expect(tab.locator("#cs-backend input")).to_have_value(re.compile(r"^auto \("))

    # Export links cannot carry the key themselves; the session cookie opens them.
    with tab.expect_download() as download:
        tab.get_by_role("link", name="Markdown").click()
    assert download.value.suggested_filename.endswith(".md")
    path = download.value.path()
    assert "The result is 42" in path.read_text(encoding="utf-8")


def test_sign_in_on_a_phone_then_the_chat_has_the_screen(browser: Any, auth_stack: Stack) -> None:
    key = auth_stack.create_user("dave")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        page.goto(f"{auth_stack.url}/")
        expect(page.locator("#cs-key input")).to_be_visible(timeout=LONG)
        box = page.locator("#cs-sign-in").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390
        screenshot(page, "26-phone-sign-in")
        page.locator("#cs-key input").fill(key)
        page.locator("#cs-sign-in-button").click()
        expect(page.locator("#cs-input textarea")).to_be_visible(timeout=LONG)
        # The sidebar appears only now; it must start closed on a phone all the same.
        expect(page.locator("#cs-sidebar")).not_to_have_class(re.compile(r"\bopen\b"), timeout=LONG)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_the_token_budget_left_shows_and_a_refused_message_says_why(tab: Any, auth_stack: Stack) -> None:
    name = "erin"
    key = auth_stack.create_user(name)
    auth_stack.chatstack("users", "set-budget", name, "1")
    sign_in(tab, auth_stack, key)
    budget = tab.locator("#cs-budget")
    expect(budget).to_contain_text("Tokens left today", timeout=LONG)
    expect(budget.locator("strong")).to_have_text("1")
    send(tab, "a question that uses the whole budget")
    expect(last_answer(tab).locator(".cs-timing")).to_be_visible(timeout=LONG)
    # Read again after the answer: all used.
    expect(budget.locator("strong")).to_have_text("0", timeout=LONG)
    expect(budget.locator(".cs-budget-empty")).to_have_count(1)

    send(tab, "one more")
    expect(tab.get_by_text("Not sent: your token budget is used up")).to_be_visible(timeout=LONG)
    expect(tab.locator("#cs-input textarea")).to_have_value("one more")
    screenshot(tab, "27-budget-used-up")
    with auth_stack.api(key) as api:
        usage = api.get("/api/usage").json()
    assert usage["budget"] == 1
    assert usage["remaining"] == 0
    expect(budget).to_contain_text(f"of 1 · resets at {usage['resets_at'][11:16]} UTC")
