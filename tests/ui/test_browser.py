"""The chat page end to end: real Chromium against the real app and its scripted backend.

Screenshots land in test-output/ui/. The scripted backend's directives (see backends/scripted/script.py)
pick each answer: `tokens: N` + `delay: MS` for a long streamed answer, `search:` and `calc:` for
tool calls, anything else is echoed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.ui.conftest import Stack, screenshot
from tests.ui.pages import (
    LONG,
    answers,
    conversation_id,
    expand_step,
    expect,
    last_answer,
    open_app,
    send,
    wait_for_run_to_finish,
)

pytestmark = pytest.mark.slow


def test_page_and_api_share_the_port(page: Any, stack: Stack) -> None:
    with stack.api() as api:
        assert api.get("/healthz").status_code == 200
        assert api.get("/api/backends").json()["default"] == "scripted"
        assert api.get("/docs").status_code == 200
    open_app(page, stack)
    expect(page).to_have_title("chatstack")
    # Each backend shows its name, health and whether it can use tools.
    screenshot(page, "01-empty-chat")
    page.locator("#cs-backend input").click()
    expect(page.get_by_role("option", name="scripted · up · tools")).to_be_visible()
    expect(page.get_by_role("option", name="offline · down · no tools")).to_be_visible()
    screenshot(page, "01-backend-menu")
    page.keyboard.press("Escape")


def test_answer_streams_in_and_shows_timings(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "tokens: 120\ndelay: 40")
    answer = last_answer(page)
    # Words arrive while the answer is still running: Stop is offered and no timing line yet.
    expect(answer).to_contain_text("the quick brown fox", timeout=LONG)
    expect(page.locator("#cs-stop")).to_be_visible()
    expect(answer.locator(".cs-timing")).to_have_count(0)
    screenshot(page, "02-streaming")

    expect(answer.locator(".cs-timing")).to_contain_text("first token", timeout=LONG)
    expect(answer.locator(".cs-timing")).to_contain_text("no tool calls")
    expect(page.locator("#cs-send")).to_be_visible()
    # The first message titled the conversation; it is listed and kept in the URL.
    expect(page.locator("#cs-conversations label.selected")).to_contain_text("tokens: 120 delay: 40")
    assert conversation_id(page)
    screenshot(page, "03-answered")


def test_markdown_code_and_tables_render(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "Here:\n\n| city | people |\n|---|---|\n| Oslo | 700k |\n\n```python\nprint('hi')\n```")
    answer = last_answer(page)
    expect(answer.locator("table")).to_contain_text("Oslo", timeout=LONG)
    expect(answer.locator("pre code")).to_contain_text("print('hi')")


def test_tool_steps_show_while_running_with_sources(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "search: slow gradio streaming")
    answer = last_answer(page)
    # The search takes a moment: its step is on screen, pending, before the answer.
    expect(answer).to_contain_text("Searching the web: slow gradio streaming", timeout=LONG)
    screenshot(page, "04-tool-running")

    expect(answer).to_contain_text("According to", timeout=LONG)
    expect(answer.locator(".cs-timing")).to_contain_text("1 tool call", timeout=LONG)
    expect(answer).to_contain_text("Searched the web: slow gradio streaming")
    link = answer.get_by_role("link", name="Guide to slow gradio streaming")
    expand_step(answer, "Searched the web", link)
    expect(link).to_have_attribute("href", "https://docs.example.com/slow-gradio-streaming")

    send(page, "calc: 6*7")
    calc = last_answer(page)
    expect(calc).to_contain_text("The result is 42", timeout=LONG)
    expect(calc.locator(".cs-timing")).to_be_visible(timeout=LONG)
    expect(calc).to_contain_text("Calculated: 6*7")
    expand_step(calc, "Calculated", calc.get_by_text("6*7 = 42"))
    screenshot(page, "05-tool-steps")


def test_stop_keeps_the_partial_answer(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "tokens: 400\ndelay: 30")
    answer = last_answer(page)
    expect(answer).to_contain_text("the quick brown fox", timeout=LONG)
    page.locator("#cs-stop").click()
    expect(answer.locator(".cs-badge")).to_have_text("Stopped", timeout=LONG)
    expect(page.locator("#cs-send")).to_be_visible()
    screenshot(page, "06-stopped")

    # The server really stopped: the run is cancelled and the partial text is stored.
    detail = wait_for_run_to_finish(stack, conversation_id(page))
    last = [m for m in detail["messages"] if m["role"] == "assistant"][-1]
    assert last["status"] == "cancelled"
    assert last["content"].startswith("the quick brown fox")
    assert len(last["content"].split()) < 400
    with stack.api() as api:
        assert api.get(f"/api/runs/{last['run_id']}").json()["status"] == "cancelled"


def test_reload_during_an_answer_resumes_it(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "tokens: 250\ndelay: 40")
    expect(last_answer(page)).to_contain_text("the quick brown fox", timeout=LONG)
    conversation = conversation_id(page)

    page.reload()
    expect(page.locator("#cs-input textarea")).to_be_visible(timeout=LONG)
    # Same conversation, the partial answer, and it keeps going to the end.
    expect(page.locator("#cs-title textarea")).to_have_value("tokens: 250 delay: 40", timeout=LONG)
    expect(page.locator("#cs-chat .user-row")).to_contain_text("tokens: 250")
    expect(last_answer(page)).to_contain_text("the quick brown fox", timeout=LONG)
    expect(page.locator("#cs-stop")).to_be_visible()
    screenshot(page, "07-resumed-after-reload")
    expect(last_answer(page).locator(".cs-timing")).to_be_visible(timeout=LONG)
    assert conversation_id(page) == conversation
    detail = wait_for_run_to_finish(stack, conversation)
    words = [m for m in detail["messages"] if m["role"] == "assistant"][-1]["content"].split()
    assert len(words) == 250
    expect(last_answer(page)).to_contain_text(" ".join(words[-6:]))


def test_open_an_old_conversation_with_its_tool_steps(page: Any, stack: Stack) -> None:
    with stack.api() as api:
        conversation = api.post("/api/conversations", json={}).json()["id"]
        api.post(f"/api/conversations/{conversation}/messages", json={"content": "calc: 12*12"})
    wait_for_run_to_finish(stack, conversation)
    open_app(page, stack)
    page.locator("#cs-conversations label", has_text="calc: 12*12").first.click()
    answer = last_answer(page)
    expect(answer).to_contain_text("Calculated: 12*12", timeout=LONG)
    expect(answer).to_contain_text("The result is 144")
    # Timings and the step's duration come with the stored conversation.
    expect(answer.locator(".cs-timing")).to_contain_text("1 tool call")
    expect(answer.locator(".thought-group .duration")).to_have_text(re.compile(r"\(\d"))
    assert conversation_id(page) == conversation


def test_regenerate_replaces_the_answer(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "tokens: 12")
    expect(last_answer(page).locator(".cs-timing")).to_be_visible(timeout=LONG)
    conversation = conversation_id(page)
    with stack.api() as api:
        first = api.get(f"/api/conversations/{conversation}").json()["runs"][-1]["id"]
    page.locator("#cs-chat button[aria-label='Retry']").click()
    # A new run answers the same question: asked once, answered once (the old answer is gone).
    detail = wait_for_run_to_finish(stack, conversation, runs=2)
    assert detail["runs"][0]["id"] == first
    assert len(detail["runs"]) == 2
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][1]["run_id"] == detail["runs"][1]["id"]
    expect(page.locator("#cs-send")).to_be_visible(timeout=LONG)
    expect(page.locator("#cs-chat .user-row")).to_have_count(1)
    expect(answers(page)).to_have_count(1)
    expect(last_answer(page).locator(".cs-timing")).to_have_count(1)
    expect(last_answer(page)).to_contain_text("the quick brown fox")


def test_backend_down_gets_a_friendly_message(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    page.locator("#cs-backend input").click()
    page.get_by_role("option", name="offline · down · no tools").click()
    expect(page.locator(".cs-backend-info")).to_contain_text("Offline")
    send(page, "is anyone there?")
    answer = last_answer(page)
    expect(answer).to_contain_text("The model backend is not reachable", timeout=LONG)
    expect(answer).to_contain_text("Pick another backend")
    expect(answer.locator(".cs-badge")).to_have_text("Failed")
    screenshot(page, "08-backend-down")
    # The choice is remembered with the conversation.
    with stack.api() as api:
        assert api.get(f"/api/conversations/{conversation_id(page)}").json()["backend"] == "offline"


def test_a_backend_starting_from_zero_is_explained_while_it_starts(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    page.locator("#cs-backend input").click()
    page.get_by_role("option", name="serverless · up · tools").click()
    send(page, "tokens: 8")
    answer = last_answer(page)
    expect(answer).to_contain_text("Starting serverless: it was scaled to zero", timeout=LONG)
    expect(answer).to_contain_text("up to 2 min")
    screenshot(page, "08-backend-starting")
    expect(answer).to_contain_text("the quick brown fox", timeout=LONG)
    expect(answer).not_to_contain_text("Starting serverless")
    expect(answer.locator(".cs-timing")).to_be_visible(timeout=LONG)


def test_rename_export_and_delete(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "a chat to rename")
    expect(last_answer(page).locator(".cs-timing")).to_be_visible(timeout=LONG)
    conversation = conversation_id(page)

    title = page.locator("#cs-title textarea")
    expect(title).to_have_value("a chat to rename")
    title.fill("Trip planning")
    title.press("Enter")
    expect(page.locator("#cs-conversations label.selected")).to_have_text("Trip planning", timeout=LONG)
    with stack.api() as api:
        assert api.get(f"/api/conversations/{conversation}").json()["title"] == "Trip planning"

    markdown = page.get_by_role("link", name="Markdown")
    with page.expect_download() as download:
        markdown.click()
    assert download.value.suggested_filename.endswith(".md")
    expect(page.get_by_role("link", name="JSON")).to_have_attribute(
        "href", f"api/conversations/{conversation}/export?format=json"
    )

    page.locator("#cs-delete").click()
    expect(page.locator("#cs-confirm")).to_be_visible()
    screenshot(page, "09-confirm-delete")
    page.locator("#cs-cancel-delete").click()
    expect(page.locator("#cs-confirm")).to_be_hidden()
    page.locator("#cs-delete").click()
    page.locator("#cs-confirm-delete").click()
    expect(page.locator("#cs-conversations label", has_text="Trip planning")).to_have_count(0, timeout=LONG)
    expect(page.locator("#cs-title textarea")).to_have_value("New chat")
    assert "c=" not in page.url
    with stack.api() as api:
        assert api.get(f"/api/conversations/{conversation}").status_code == 404


def test_phone_width(browser: Any, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        open_app(page, stack)
        # The conversation list starts closed on a phone, so the chat has the whole width.
        expect(page.locator("#cs-sidebar")).not_to_have_class(re.compile(r"\bopen\b"), timeout=LONG)
        send(page, "calc: 2+2")
        expect(last_answer(page)).to_contain_text("The result is 4", timeout=LONG)
        expect(last_answer(page).locator(".cs-timing")).to_be_visible(timeout=LONG)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for selector in ("#cs-input", "#cs-send", "#cs-title", "#cs-backend"):
            box = page.locator(selector).bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0, selector
            assert box["x"] + box["width"] <= 390, selector
        screenshot(page, "10-phone")

        page.locator("#cs-sidebar .toggle-button").click()
        expect(page.locator("#cs-sidebar")).to_have_class(re.compile(r"\bopen\b"))
        page.wait_for_function("document.querySelector('#cs-sidebar').getBoundingClientRect().left >= 0")
        expect(page.locator("#cs-conversations label", has_text="calc: 2+2").first).to_be_in_viewport()
        screenshot(page, "11-phone-conversations")
        page.locator("#cs-new-chat").click()
        expect(page.locator("#cs-sidebar")).not_to_have_class(re.compile(r"\bopen\b"))
        expect(page.locator("#cs-title textarea")).to_have_value("New chat")
    finally:
        context.close()


def test_copy_gives_the_answer_as_it_reads(page: Any, stack: Stack) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    open_app(page, stack)
    send(page, "calc: 6*7")
    answer = last_answer(page)
    expect(answer.locator(".cs-timing")).to_contain_text("1 tool call", timeout=LONG)
    answer.locator(".cs-copy-answer").click()
    expect(answer.locator(".cs-copy-answer")).to_have_text("Copied")
    # The text, without the tool step, the footer or any markup.
    assert page.evaluate("navigator.clipboard.readText()") == "The result is 42."
    # The Chatbot's own copy button, which would copy the HTML, is not offered.
    expect(page.locator('#cs-chat button[aria-label="Copy message"]')).to_have_count(0)
