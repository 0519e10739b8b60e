"""`Screen`: a partial update of the page, as handlers describe it (layout.py maps it onto Gradio)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from ui.render import ChatItem

NEW_CHAT_TITLE = "New chat"
KEY_SHOWN_CHARS = 10
"""As much of a key as `chatstack users list` shows, so a user can tell which key a page uses."""


@dataclass(slots=True)
class Screen:
    """A partial update of the page; None leaves a part as it is."""

    chat: list[ChatItem] | None = None
    conversation_id: str | None = None
    """"" for a new chat that has no conversation on the server yet."""
    live_run: str | None = None
    """The run whose answer the page follows ("" for none); setting it starts following."""
    conversations: list[tuple[str, str]] | None = None
    """(title, id), newest first."""
    title: str | None = None
    backends: list[tuple[str, str]] | None = None
    backend: str | None = None
    backend_info: str | None = None
    exports: str | None = None
    busy: bool | None = None
    """An answer is running in the open conversation: Stop is offered instead of Send."""
    composer: str | None = None
    confirm_delete: bool | None = None
    notice: str | None = None
    """A short message shown as a toast."""
    warning: str | None = None
    """A short message shown as a warning toast: something the user asked for was refused."""
    budget: str | None = None
    """The token budget in the sidebar (HTML; "" hides it: no budget is set)."""
    tools_panel: str | None = None
    """The open conversation's tools panel (HTML, see tools_panel.py; "" hides it)."""
    draft_tools: str | None = None
    """A new chat's tool selection until its first message creates it (`tools_panel.draft_text`)."""
    pending_files: list[dict[str, Any]] | None = None
    """The files uploaded for the next question (attachments.pending_state; [] for none)."""
    attachments: str | None = None
    """The chips of those files on the composer, and why an upload failed (HTML)."""
    search_results: str | None = None
    """The results under the search box (HTML; "" hides them)."""
    focus: str | None = None
    """A message to scroll to and highlight once the chat is drawn (search_panel.focus_value)."""

    # signing in (only with authentication on)
    signed_in: bool | None = None
    """True shows the chat, False the sign-in view."""
    account: str | None = None
    """Who is signed in, for the sidebar (HTML)."""
    key_input: str | None = None
    """What the sign-in field holds ("" clears it)."""
    sign_in_error: str | None = None
    """Why the last sign-in failed, or why the page was signed out ("" for nothing) (HTML)."""


KEY_REFUSED = (
    "That API key was not accepted. Check that you pasted all of it (keys start with cs_), "
    "or ask whoever runs chatstack for a new one."
)
KEY_NO_LONGER_ACCEPTED = "Your API key is no longer accepted (it may have been revoked). Sign in again."
NO_KEY_ENTERED = "Paste your API key, then sign in."


def session_ended() -> Screen:
    """What any action shows when the API refuses the session's key. (The guard refuses it first,
    usually: then the page's script shows the sign-in view, see page_js.py.)"""
    return signed_out(KEY_NO_LONGER_ACCEPTED)


def signed_out(reason: str = "", *, keep_conversation: bool = False) -> Screen:
    """The sign-in view, with the previous user's chat and list cleared from the page.

    `keep_conversation` leaves the conversation in the page URL alone, so that signing in opens it
    (a page loaded from a link before its user signed in).
    """
    return Screen(
        chat=[],
        conversation_id=None if keep_conversation else "",
        live_run="",
        conversations=[],
        title=NEW_CHAT_TITLE,
        exports="",
        busy=False,
        composer="",
        confirm_delete=False,
        signed_in=False,
        budget="",
        tools_panel="",
        draft_tools="",
        account="",
        key_input="",
        sign_in_error=sign_in_message(reason),
    )


def sign_in_message(text: str) -> str:
    return f'<div class="cs-sign-in-error" role="alert">{html.escape(text)}</div>' if text else ""


def account_html(api_key: str) -> str:
    shown = html.escape(api_key[:KEY_SHOWN_CHARS])
    return (
        f'<div class="cs-account" title="Signed in with the API key {shown}…">'
        f"Signed in <code>{shown}…</code></div>"
    )
