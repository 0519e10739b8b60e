"""Which handler each event of the page calls, and how its result reaches the page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import gradio as gr

from ui.api_client import Unauthorized
from ui.handlers import Handlers
from ui.layout import Page, build_page
from ui.page_js import READ_START_JS, SIGN_IN_JS, STORE_KEY_JS, WRITE_URL_JS
from ui.screen import Screen, session_ended

PAGE_TITLE = "chatstack"
REFRESH_BACKENDS_S = 30.0


def build_blocks(handlers: Handlers) -> gr.Blocks:
    """The chat page. Theme and CSS are given where it is mounted (Gradio 6 takes them there)."""
    blocks = gr.Blocks(title=PAGE_TITLE, fill_height=True, analytics_enabled=False)
    with blocks:
        page = build_page(handlers.auth_required)
        _wire(blocks, page, handlers)
    return blocks


def _wire(blocks: gr.Blocks, page: Page, handlers: Handlers) -> None:
    out = page.outputs
    key = page.api_key
    once = once_for(page)

    # One listener follows answers. Navigation cancels it (the answer keeps running on the server,
    # and reopening the conversation follows it again); a new live run restarts it.
    follow = page.live_run.change(
        stream_for(page, handlers.follow),
        inputs=[key, page.live_run, page.conversation_id],
        outputs=out,
        trigger_mode="always_last",
        show_progress="hidden",
    )
    navigation: dict[str, Any] = {"outputs": out, "cancels": [follow], "show_progress": "hidden"}

    blocks.load(once(handlers.start), inputs=[key, page.conversation_id], js=READ_START_JS, **navigation)
    page.conversation_id.change(None, inputs=[page.conversation_id], js=WRITE_URL_JS)
    key.change(None, inputs=[key], js=STORE_KEY_JS)

    sign_in_inputs = [page.key_input, page.conversation_id]
    page.sign_in.click(once(handlers.sign_in), inputs=sign_in_inputs, js=SIGN_IN_JS, **navigation)
    page.key_input.submit(once(handlers.sign_in), inputs=sign_in_inputs, js=SIGN_IN_JS, **navigation)
    page.sign_out.click(once(handlers.sign_out), **navigation)

    page.conversations.input(once(handlers.open), inputs=[key, page.conversations], **navigation)
    page.new_chat.click(once(handlers.new_chat), inputs=[key, page.backend], **navigation)
    page.confirm_delete.click(
        once(handlers.delete), inputs=[key, page.conversation_id, page.backend], **navigation
    )

    send_inputs = [key, page.composer, page.conversation_id, page.backend]
    quiet: dict[str, Any] = {"outputs": out, "show_progress": "hidden"}
    page.composer.submit(once(handlers.send), inputs=send_inputs, **quiet)
    page.send.click(once(handlers.send), inputs=send_inputs, **quiet)
    page.chat.retry(once(handlers.regenerate), inputs=[key, page.conversation_id, page.backend], **quiet)
    page.stop.click(once(handlers.stop), inputs=[key, page.conversation_id], **quiet)

    rename_inputs = [key, page.conversation_id, page.title, page.known_title]
    page.title.submit(once(handlers.rename), inputs=rename_inputs, **quiet)
    page.title.blur(once(handlers.rename), inputs=rename_inputs, **quiet)
    page.backend.input(
        once(handlers.choose_backend), inputs=[key, page.conversation_id, page.backend], **quiet
    )

    page.delete.click(lambda: gr.update(visible=True), outputs=[page.confirm_row], show_progress="hidden")
    page.cancel_delete.click(
        lambda: gr.update(visible=False), outputs=[page.confirm_row], show_progress="hidden"
    )

    gr.Timer(REFRESH_BACKENDS_S).tick(once(handlers.refresh_backends), inputs=[key, page.backend], **quiet)


Handler = Callable[..., Awaitable[Screen]]


def once_for(page: Page) -> Callable[[Handler], Callable[..., Awaitable[list[Any]]]]:
    """Wraps a handler into a Gradio event function: its `Screen` as updates of `page.outputs`,
    and the sign-in view if the API refused the page's key."""

    def once(handler: Handler) -> Callable[..., Awaitable[list[Any]]]:
        async def run(*args: Any) -> list[Any]:
            try:
                screen = await handler(*args)
            except Unauthorized:
                screen = session_ended()
            return page.apply(screen)

        return run

    return once


def stream_for(
    page: Page, handler: Callable[..., AsyncIterator[Screen]]
) -> Callable[..., AsyncIterator[list[Any]]]:
    """`once_for` for a streaming handler."""

    async def run(*args: Any) -> AsyncIterator[list[Any]]:
        updated = False
        try:
            async for screen in handler(*args):
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
