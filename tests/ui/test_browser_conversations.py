"""Branches, search and attachments in the chat page: real Chromium against the real app and its
scripted backend (which echoes the question it was sent, attached documents included)."""

from __future__ import annotations

import base64
import io
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from pypdf import PdfReader

from tests.support.pdfs import text_pdf
from tests.ui.conftest import Stack, screenshot
from tests.ui.pages import LONG, conversation_id, expect, last_answer, open_app, send, wait_for_run_to_finish

pytestmark = pytest.mark.slow


def user_rows(page: Any) -> Any:
    return page.locator("#cs-chat .message-row.user-row")


def search_for(page: Any, query: str) -> None:
    box = page.locator("#cs-search input")
    box.fill(query)
    box.press("Enter")


def edit_question(page: Any, row: Any, text: str) -> None:
    row.hover()
    row.locator(".cs-edit").click()
    box = row.locator(".cs-editor-text")
    expect(box).to_be_visible()
    box.fill(text)
    box.press("Enter")


def test_edit_a_question_then_switch_back_to_the_first_answer(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    send(page, "first question alpha")
    expect(last_answer(page)).to_contain_text("Echo: first question alpha", timeout=LONG)
    cid = conversation_id(page)
    wait_for_run_to_finish(stack, cid)

    # Escape closes the editor without sending anything.
    row = user_rows(page).first
    row.hover()
    row.locator(".cs-edit").click()
    row.locator(".cs-editor-text").press("Escape")
    expect(row.locator(".cs-editor")).to_have_count(0)

    edit_question(page, user_rows(page).first, "second question beta")
    expect(last_answer(page)).to_contain_text("Echo: second question beta", timeout=LONG)
    expect(user_rows(page).first.locator(".cs-branch-position")).to_have_text("2 / 2", timeout=LONG)
    wait_for_run_to_finish(stack, cid, runs=2)
    screenshot(page, "13-edited")

    user_rows(page).first.get_by_title("Previous version").click()
    expect(last_answer(page)).to_contain_text("Echo: first question alpha", timeout=LONG)
    expect(user_rows(page).first.locator(".cs-branch-position")).to_have_text("1 / 2")
    expect(page.locator("#cs-chat")).not_to_contain_text("second question beta")
    # The server holds the switch: a reload shows the first branch.
    with stack.api() as api:
        detail = api.get(f"/api/conversations/{cid}").json()
    assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == ["first question alpha"]

    # Regenerating keeps the earlier answer one click away.
    with stack.api() as api:
        assert api.post(f"/api/conversations/{cid}/regenerate", json={}).status_code == 202
    wait_for_run_to_finish(stack, cid, runs=3)
    page.reload()
    switcher = page.locator("#cs-chat .cs-answer-branches")
    expect(switcher.locator(".cs-branch-position")).to_have_text("2 / 2", timeout=LONG)
    switcher.get_by_title("Previous answer").click()
    expect(switcher.locator(".cs-branch-position")).to_have_text("1 / 2", timeout=LONG)
    screenshot(page, "13-answer-switcher")


def test_search_a_phrase_then_jump_to_it(page: Any, stack: Stack) -> None:
    word = f"heliotrope{secrets.token_hex(3)}"
    open_app(page, stack)
    send(page, f"the {word} garden party was lovely")
    expect(last_answer(page)).to_contain_text("garden party", timeout=LONG)
    cid = conversation_id(page)
    wait_for_run_to_finish(stack, cid)
    # The sentence then leaves the branch shown: the jump must switch back to it.
    edit_question(page, user_rows(page).first, "a different question")
    expect(last_answer(page)).to_contain_text("Echo: a different question", timeout=LONG)
    wait_for_run_to_finish(stack, cid, runs=2)
    page.locator("#cs-new-chat").click()
    # The new chat must be shown before typing: a question sent sooner goes to the chat shown.
    expect(page.locator("#cs-title textarea")).to_have_value("New chat", timeout=LONG)
    expect(page).not_to_have_url(re.compile(f"c={cid}"))
    send(page, "an unrelated conversation")
    expect(last_answer(page)).to_contain_text("Echo: an unrelated conversation", timeout=LONG)
    assert conversation_id(page) != cid

    search_for(page, f"{word} garden party")
    hit = page.locator("#cs-search-results .cs-hit").first
    expect(hit).to_be_visible(timeout=LONG)
    expect(hit.locator("mark").first).to_contain_text(word)
    expect(hit.locator(".cs-hit-snippet")).to_contain_text("garden party was lovely")
    screenshot(page, "13-search")
    hit.click()
    expect(page).to_have_url(re.compile(f"c={cid}"), timeout=LONG)
    found = page.locator("#cs-chat .cs-found")
    expect(found).to_have_count(1, timeout=LONG)
    expect(found).to_contain_text(word)
    expect(page.locator("#cs-chat")).not_to_contain_text("a different question")


def test_search_as_you_type(page: Any, stack: Stack) -> None:
    word = f"tamarind{secrets.token_hex(3)}"
    open_app(page, stack)
    send(page, f"a {word} chutney recipe")
    expect(last_answer(page)).to_contain_text(word, timeout=LONG)
    wait_for_run_to_finish(stack, conversation_id(page))
    box = page.locator("#cs-search input")
    box.press_sequentially(f"{word} chut", delay=30)  # no Enter
    hit = page.locator("#cs-search-results .cs-hit").first
    expect(hit).to_be_visible(timeout=LONG)
    expect(hit.locator("mark").first).to_contain_text(word)
    # What shows is for the words typed last, not for a prefix typed on the way.
    expect(page.locator("#cs-search-results")).not_to_contain_text("No messages match")
    box.fill("")
    expect(page.locator("#cs-search-results")).to_be_hidden(timeout=LONG)


def test_search_escapes_snippets(page: Any, stack: Stack) -> None:
    word = f"marmalade{secrets.token_hex(3)}"
    open_app(page, stack)
    send(page, f"{word} <img src=x onerror=alert(1)> <b>bold</b>")
    expect(last_answer(page)).to_contain_text(word, timeout=LONG)
    wait_for_run_to_finish(stack, conversation_id(page))
    search_for(page, word)
    hit = page.locator("#cs-search-results .cs-hit").first
    expect(hit.locator(".cs-hit-snippet")).to_contain_text("<img src=x onerror=alert(1)>", timeout=LONG)
    expect(page.locator("#cs-search-results img, #cs-search-results .cs-hit-snippet b")).to_have_count(0)


def _drop(page: Any, name: str, content: bytes, media_type: str) -> None:
    page.evaluate(
        """([name, data, type]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type }));
          const target = document.querySelector("#cs-chat");
          for (const kind of ["dragenter", "dragover", "drop"]) {
            const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
            target.dispatchEvent(new DragEvent(kind, init));
          }
        }""",
        [name, base64.b64encode(content).decode(), media_type],
    )


def test_drop_a_pdf_and_ask_about_it(page: Any, stack: Stack) -> None:
    code = f"PELICAN-{secrets.token_hex(2).upper()}"
    pdf = text_pdf([["Field notes", f"The launch code is {code}."]])
    assert code in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()  # a real PDF, as pypdf reads it

    open_app(page, stack)
    _drop(page, "notes.pdf", pdf, "application/pdf")
    chip = page.locator("#cs-attachments .cs-chip-pending")
    expect(chip).to_contain_text("notes.pdf", timeout=LONG)
    expect(chip.locator(".cs-chip-size")).to_have_text(re.compile(r"^\d+ (B|KB)$"))
    cid = conversation_id(page)  # attaching created the conversation
    screenshot(page, "13-attached")

    # A file that is no document is refused, and says why; the PDF stays attached.
    page.locator("#cs-composer input[type=file]").set_input_files(
        {"name": "tool.bin", "mimeType": "application/octet-stream", "buffer": bytes(range(256)) * 8}
    )
    expect(page.locator("#cs-attachments .cs-attach-error")).to_contain_text("tool.bin", timeout=LONG)
    expect(chip).to_have_count(1)

    send(page, "What is the launch code?")
    expect(last_answer(page)).to_contain_text(code, timeout=LONG)
    expect(page.locator("#cs-attachments .cs-chip-pending")).to_have_count(0)
    sent = page.locator("#cs-chat .cs-chip-sent")
    expect(sent).to_contain_text("notes.pdf")
    href = sent.get_attribute("href")
    assert href is not None
    with stack.api() as api:
        assert api.get(f"/{href}").content == pdf
    wait_for_run_to_finish(stack, cid)


def test_a_chip_is_removed_before_sending(page: Any, stack: Stack) -> None:
    open_app(page, stack)
    page.locator("#cs-composer input[type=file]").set_input_files(
        {"name": "todo.md", "mimeType": "text/markdown", "buffer": b"# Todo\n\n- water the plants\n"}
    )
    chip = page.locator("#cs-attachments .cs-chip-pending")
    expect(chip).to_contain_text("todo.md", timeout=LONG)
    cid = conversation_id(page)
    chip.locator(".cs-chip-remove").click()
    expect(chip).to_have_count(0, timeout=LONG)
    with stack.api() as api:
        assert api.get(f"/api/conversations/{cid}/attachments").json()["items"] == []


@pytest.fixture
def phone(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def _within_screen(page: Any, locator: Any) -> None:
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= 390 + 1, box
    assert box["y"] >= 0, box
    assert box["y"] + box["height"] <= 844 + 1, box
    # Big enough to tap.
    assert box["width"] >= 24, box
    assert box["height"] >= 24, box


def test_phone_sized_screen(phone: Any, stack: Stack) -> None:
    page = phone
    word = f"quince{secrets.token_hex(3)}"
    open_app(page, stack)
    for selector in ("#cs-input textarea", "#cs-send", "#cs-attach"):
        _within_screen(page, page.locator(selector))
    send(page, f"phone question gamma {word}")
    expect(last_answer(page)).to_contain_text("Echo: phone question gamma", timeout=LONG)
    cid = conversation_id(page)
    wait_for_run_to_finish(stack, cid)
    # No hover on a touch screen: the pencil shows, and a tap opens the editor.
    pencil = user_rows(page).first.locator(".cs-edit")
    expect(pencil).to_be_visible()
    assert float(pencil.evaluate("e => getComputedStyle(e).opacity")) == 1.0
    _within_screen(page, pencil)
    pencil.tap()
    editor = user_rows(page).first.locator(".cs-editor-text")
    expect(editor).to_be_visible()
    _within_screen(page, editor)
    editor.fill("phone question delta")
    send_edit = user_rows(page).first.locator(".cs-editor-send")
    _within_screen(page, send_edit)
    send_edit.tap()
    expect(last_answer(page)).to_contain_text("Echo: phone question delta", timeout=LONG)
    wait_for_run_to_finish(stack, cid, runs=2)
    switcher = user_rows(page).first.locator(".cs-branches")
    expect(switcher).to_be_visible(timeout=LONG)
    previous = switcher.get_by_title("Previous version")
    _within_screen(page, previous)
    previous.tap()
    expect(last_answer(page)).to_contain_text("Echo: phone question gamma", timeout=LONG)
    expect(user_rows(page).first.locator(".cs-branch-position")).to_have_text("1 / 2")

    # A file attached on a phone shows as a chip above the composer, which stays on screen.
    page.locator("#cs-composer input[type=file]").set_input_files(
        {"name": "a-rather-long-name-for-a-phone.md", "mimeType": "text/markdown", "buffer": b"# Notes\n"}
    )
    chip = page.locator("#cs-attachments .cs-chip-pending")
    expect(chip).to_contain_text("a-rather-long", timeout=LONG)
    for locator in (chip, chip.locator(".cs-chip-remove")):
        _within_screen(page, locator)
    for selector in ("#cs-input textarea", "#cs-send", "#cs-attach"):
        _within_screen(page, page.locator(selector))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "13-phone")

    # The search box is in the conversation list, which opens over the chat.
    page.locator("#cs-sidebar .toggle-button").tap()
    expect(page.locator("#cs-sidebar")).to_have_class(re.compile(r"\bopen\b"))
    page.wait_for_function("document.querySelector('#cs-sidebar').getBoundingClientRect().left >= 0")
    search = page.locator("#cs-search input")
    expect(search).to_be_visible()
    _within_screen(page, search)
    search.fill(word)
    search.press("Enter")
    hit = page.locator("#cs-search-results .cs-hit").first
    expect(hit).to_be_visible(timeout=LONG)
    _within_screen(page, hit)
    screenshot(page, "13-phone-search")
    # Opening a result closes the list, and the chat shows the message.
    hit.tap()
    expect(page.locator("#cs-sidebar")).not_to_have_class(re.compile(r"\bopen\b"), timeout=LONG)
    found = page.locator("#cs-chat .cs-found")
    expect(found).to_have_count(1, timeout=LONG)
    expect(found).to_contain_text(word)
    _within_screen(page, found)
