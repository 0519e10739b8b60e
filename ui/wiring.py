"""Which handler each event of the page calls, and how its result reaches the page.

Handlers get the API key of the browser's session as their first argument, from the request's
`Authorization` header: the guard in front of Gradio (app/ui_guard.py) admits only requests that
carry a valid key, in the session cookie or that header, and passes it on in that header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import gradio as gr
from gradio.events import Dependency

from ui.api_client import Unauthorized
from ui.approval_card import clicked_decision
from ui.attachments import removed_attachment
from ui.branches import branch_action
from ui.chat_actions import ChatActions
from ui.handlers import Handlers
from ui.layout import Page, build_page
from ui.page_js import (
    CHECK_SESSION_JS,
    READ_URL_JS,
    SESSION_ENDED_JS,
    SIGN_IN,
    SIGN_IN_JS,
    SIGN_OUT_JS,
    WRITE_URL_JS,
)
from ui.screen import Screen, session_ended
from ui.search_panel import FOCUS_JS, jump_from, typed_query_from
from ui.tools_panel import selection_from

PAGE_TITLE = "chatstack"


def build_blocks(handlers: Handlers) -> gr.Blocks:
    """The chat page. Theme and CSS are given where it is mounted (Gradio 6 takes them there)."""
    blocks = gr.Blocks(title=PAGE_TITLE, fill_height=True, analytics_enabled=False)
    with blocks:
        page = build_page(handlers.auth_required)
        _wire(blocks, page, handlers)
    return blocks


def _wire(blocks: gr.Blocks, page: Page, handlers: Handlers) -> None:
    out = page.outputs
    once = once_for(page)
    guarded = _guarded_for(handlers.auth_required)

    # One listener follows answers. Navigation cancels it (the answer keeps running on the server,
    # and reopening the conversation follows it again); a new live run restarts it.
    follow = guarded(
        page.live_run.change(
            stream_for(page, handlers.follow),
            inputs=[page.live_run, page.conversation_id],
            outputs=out,
            trigger_mode="always_last",
            show_progress="hidden",
        )
    )
    navigation: dict[str, Any] = {"outputs": out, "cancels": [follow], "show_progress": "hidden"}
    page.conversation_id.change(None, inputs=[page.conversation_id], js=WRITE_URL_JS)

    if handlers.auth_required:
        # Nothing may reach Gradio's queue before the browser holds a session: the page's script
        # checks for one (or signs in), and only then sets `page.session`, whose change opens the chat.
        blocks.load(None, js=CHECK_SESSION_JS, outputs=[page.session, page.sign_in_view, page.sign_in_error])
        sign_in: dict[str, Any] = {
            "inputs": [page.key_input, page.session],
            "outputs": [page.session, page.sign_in_error],
            "js": SIGN_IN_JS,
        }
        page.sign_in.click(None, **sign_in)
        page.key_input.submit(None, **sign_in)
        page.sign_out.click(None, js=SIGN_OUT_JS)

        async def enter(key: str, session: str, conversation_id: str) -> Screen:
            handler = handlers.sign_in if session.startswith(SIGN_IN) else handlers.start
            return await handler(key, conversation_id)

        guarded(
            page.session.change(
                once(enter), inputs=[page.session, page.conversation_id], js=READ_URL_JS, **navigation
            )
        )
    else:
        guarded(
            blocks.load(once(handlers.start), inputs=[page.conversation_id], js=READ_URL_JS, **navigation)
        )

    guarded(page.conversations.input(once(handlers.open), inputs=[page.conversations], **navigation))
    guarded(page.new_chat.click(once(handlers.new_chat), inputs=[page.backend], **navigation))
    guarded(
        page.confirm_delete.click(
            once(handlers.delete), inputs=[page.conversation_id, page.backend], **navigation
        )
    )

    send_inputs = [page.composer, page.conversation_id, page.backend, page.draft_tools, page.pending_files]
    quiet: dict[str, Any] = {"outputs": out, "show_progress": "hidden"}
    guarded(page.composer.submit(once(handlers.send), inputs=send_inputs, **quiet))
    guarded(page.send.click(once(handlers.send), inputs=send_inputs, **quiet))
    guarded(page.chat.retry(once(handlers.regenerate), inputs=[page.conversation_id, page.backend], **quiet))
    guarded(page.stop.click(once(handlers.stop), inputs=[page.conversation_id], **quiet))

    rename_inputs = [page.conversation_id, page.title, page.known_title]
    guarded(page.title.submit(once(handlers.rename), inputs=rename_inputs, **quiet))
    guarded(page.title.blur(once(handlers.rename), inputs=rename_inputs, **quiet))
    guarded(
        page.backend.input(
            once(handlers.choose_backend), inputs=[page.conversation_id, page.backend], **quiet
        )
    )

    guarded(
        page.delete.click(lambda: gr.update(visible=True), outputs=[page.confirm_row], show_progress="hidden")
    )
    guarded(
        page.cancel_delete.click(
            lambda: gr.update(visible=False), outputs=[page.confirm_row], show_progress="hidden"
        )
    )

    guarded(page.refresh.tick(once(handlers.refresh_backends), inputs=[page.backend], **quiet))
    guarded(
        page.refresh.tick(
            once(handlers.refresh_tools),
            inputs=[page.conversation_id, page.draft_tools, page.tools_panel],
            **quiet,
        )
    )

    # Both carry what the browser chose as their event's data (see tools_panel.py, approval_card.py).
    with_data = with_data_for(once)
    guarded(
        page.tools_panel.input(
            with_data(handlers.choose_tools, selection_from),
            inputs=[page.conversation_id],
            trigger_mode="always_last",
            **quiet,
        )
    )
    guarded(
        page.approvals.click(with_data(handlers.decide, clicked_decision), inputs=[page.live_run], **quiet)
    )
    _wire_conversation_tools(page, ChatActions(handlers), once, guarded, navigation, quiet)


def _wire_conversation_tools(
    page: Page,
    actions: ChatActions,
    once: Callable[[Handler], Callable[..., Awaitable[list[Any]]]],
    guarded: Callable[[Dependency], Dependency],
    navigation: dict[str, Any],
    quiet: dict[str, Any],
) -> None:
    """Branches, search and attachments (chat_actions.py)."""
    with_data = with_data_for(once)
    guarded(
        page.branch_actions.click(
            with_data(actions.branch, branch_action), inputs=[page.conversation_id, page.backend], **quiet
        )
    )
    guarded(page.search.submit(once(actions.search), inputs=[page.search], **quiet))
    # As the user types, once they pause (search_panel.HITS_JS); the newest query once one is running.
    guarded(
        page.search_results.submit(
            with_data(actions.search_typed, typed_query_from), trigger_mode="always_last", **quiet
        )
    )
    guarded(page.search_results.click(with_data(actions.jump, jump_from), **navigation))
    page.focus.change(None, inputs=[page.focus], js=FOCUS_JS)
    guarded(
        page.attach.upload(
            once(actions.attach),
            inputs=[page.attach, page.conversation_id, page.backend, page.draft_tools, page.pending_files],
            outputs=page.outputs,
            show_progress="minimal",
            show_progress_on=[page.attachments],
        )
    )
    guarded(
        page.attachments.click(
            with_data(actions.unattach, removed_attachment),
            inputs=[page.conversation_id, page.pending_files],
            **quiet,
        )
    )


def _guarded_for(auth_required: bool) -> Callable[[Dependency], Dependency]:
    """With API keys on, an event that fails may have failed because the session ended (the guard
    refused it): then the page's script ends it in the browser too."""

    def guarded(event: Dependency) -> Dependency:
        if auth_required:
            event.failure(None, js=SESSION_ENDED_JS)
        return event

    return guarded


def session_key(request: gr.Request | None) -> str:
    """The API key the guard admitted the request with ("" with API keys off: there is none)."""
    header = request.headers.get("authorization", "") if request is not None else ""
    scheme, _, key = str(header).partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


Handler = Callable[..., Awaitable[Screen]]


def once_for(page: Page) -> Callable[[Handler], Callable[..., Awaitable[list[Any]]]]:
    """Wraps a handler into a Gradio event function: called with the session's key, its `Screen` as
    updates of `page.outputs`, and the sign-in view if the API refused the key."""

    def once(handler: Handler) -> Callable[..., Awaitable[list[Any]]]:
        # Gradio passes the request to a first parameter annotated `gr.Request`.
        async def run(request: gr.Request, *args: Any) -> list[Any]:
            try:
                screen = await handler(session_key(request), *args)
            except Unauthorized:
                screen = session_ended()
            return page.apply(screen)

        return run

    return once


def with_data_for(
    once: Callable[[Handler], Callable[..., Awaitable[list[Any]]]],
) -> Callable[[Handler, Callable[[Any], Any]], Callable[..., Awaitable[list[Any]]]]:
    """`once` for a handler that also takes the data the page's script sent with the event, read by
    `parse` (untrusted: it returns None for anything it does not accept), as its last argument."""

    def with_data(handler: Handler, parse: Callable[[Any], Any]) -> Callable[..., Awaitable[list[Any]]]:
        async def run(request: gr.Request, event: gr.EventData, *args: Any) -> list[Any]:
            return await once(handler)(request, *args, parse(getattr(event, "_data", None)))

        return run

    return with_data


def stream_for(
    page: Page, handler: Callable[..., AsyncIterator[Screen]]
) -> Callable[..., AsyncIterator[list[Any]]]:
    """`once_for` for a streaming handler."""

    async def run(request: gr.Request, *args: Any) -> AsyncIterator[list[Any]]:
        updated = False
        try:
            async for screen in handler(session_key(request), *args):
                updated = True
                yield page.apply(screen)
        except Unauthorized:
            updated = True
            yield page.apply(session_ended())
        if not updated:
            # A generator that yields nothing makes Gradio set every output to None (blank title,
            # empty chat); an update that changes nothing avoids that.
            yield page.apply(Screen())

    return run
