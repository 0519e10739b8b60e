"""The page's wiring that needs no browser: every update lines up with its component, a refused key
anywhere shows the sign-in view, handlers get the key the guard admitted, and no script of the page
holds a key."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui import page_js
from ui.api_client import Unauthorized
from ui.layout import Page, build_page
from ui.screen import KEY_NO_LONGER_ACCEPTED, Screen
from ui.theme import page_script
from ui.wiring import once_for, session_key, stream_for


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

    updates = await once_for(shown)(action)(admitted("cs_revoked"))
    assert update_of(shown.sign_in_view, shown, updates)["visible"] is True
    assert update_of(shown.main, shown, updates)["visible"] is False
    assert update_of(shown.refresh, shown, updates)["active"] is False
    assert KEY_NO_LONGER_ACCEPTED in update_of(shown.sign_in_error, shown, updates)


async def test_a_key_refused_while_following_an_answer_shows_the_sign_in_view() -> None:
    shown = page()

    async def follow(*args: Any) -> Any:
        yield Screen(chat=[])
        raise Unauthorized("revoked")

    runs = [u async for u in stream_for(shown, follow)(admitted("cs_key"), "r1", "c1")]
    assert len(runs) == 2
    assert update_of(shown.sidebar, shown, runs[-1])["visible"] is False


def admitted(key: str) -> gr.Request:
    """A request as the guard passes it on: with the session's key in `Authorization`."""
    return gr.Request(headers={"authorization": f"Bearer {key}"})


async def test_handlers_get_the_key_the_guard_admitted_the_request_with() -> None:
    shown = page()
    seen: list[str] = []

    async def action(key: str, conversation_id: str) -> Screen:
        seen.append(key)
        return Screen()

    await once_for(shown)(action)(admitted("cs_alice"), "c1")
    await once_for(shown)(action)(gr.Request(headers={}), "c1")
    assert seen == ["cs_alice", ""]
    assert session_key(gr.Request(headers={"authorization": "Basic cs_alice"})) == ""


def test_no_script_of_the_page_holds_a_key() -> None:
    scripts = [page_script()] + [v for v in vars(page_js).values() if isinstance(v, str) and "=>" in v]
    for script in scripts:
        assert "localStorage.getItem" not in script
        assert "localStorage.setItem" not in script
    # Earlier versions kept the key there: the page load removes it.
    assert f'localStorage.removeItem("{page_js.LEGACY_KEY_STORAGE}")' in page_js.CHECK_SESSION_JS


def test_the_periodic_refresh_waits_for_a_session() -> None:
    assert page(auth_required=True).refresh.active is False
    assert page(auth_required=False).refresh.active is True
    signed_in = page()
    assert update_of(signed_in.refresh, signed_in, signed_in.apply(Screen(signed_in=True)))["active"] is True
