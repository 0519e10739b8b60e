"""The page's wiring that needs no browser: every update lines up with its component, a refused key
anywhere shows the sign-in view, and the page script finds the key where the page keeps it."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.api_client import Unauthorized
from ui.layout import Page, build_page
from ui.page_js import KEY_STORAGE
from ui.screen import KEY_NO_LONGER_ACCEPTED, Screen
from ui.theme import page_script
from ui.wiring import once_for, stream_for


def page(auth_required: bool = True) -> Page:
    with gr.Blocks():
        return build_page(auth_required)


def update_of(target: Any, page: Page, updates: list[Any]) -> Any:
    return updates[page.outputs.index(target)]


def test_every_output_gets_an_update() -> None:
    shown = page()
    assert len(shown.apply(Screen())) == len(shown.outputs) == len(set(map(id, shown.outputs)))
    assert all(isinstance(u, dict) and u.get("__type__") == "update" for u in shown.apply(Screen()))


async def test_a_refused_key_in_any_action_shows_the_sign_in_view() -> None:
    shown = page()

    async def action(*args: Any) -> Screen:
        raise Unauthorized("this API key is not valid")

    updates = await once_for(shown)(action)("cs_revoked")
    assert update_of(shown.sign_in_view, shown, updates)["visible"] is True
    assert update_of(shown.main, shown, updates)["visible"] is False
    assert update_of(shown.api_key, shown, updates) == ""
    assert KEY_NO_LONGER_ACCEPTED in update_of(shown.sign_in_error, shown, updates)


async def test_a_key_refused_while_following_an_answer_shows_the_sign_in_view() -> None:
    shown = page()

    async def follow(*args: Any) -> Any:
        yield Screen(chat=[])
        raise Unauthorized("revoked")

    runs = [u async for u in stream_for(shown, follow)("cs_key", "r1", "c1")]
    assert len(runs) == 2
    assert update_of(shown.sidebar, shown, runs[-1])["visible"] is False


def test_the_page_script_reads_the_key_where_the_page_keeps_it() -> None:
    assert f'const KEY_STORAGE = "{KEY_STORAGE}";' in page_script()
