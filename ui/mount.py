"""Mounts the browser chat into the FastAPI app, at `/`, on the same port as the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
from fastapi import FastAPI
from starlette.middleware import Middleware

from ui.api_client import ChatstackClient
from ui.handlers import Handlers
from ui.page_policy import PagePolicy
from ui.theme import build_theme, page_script, stylesheet
from ui.wiring import build_blocks

CONCURRENCY_LIMIT: int | None = None
"""Per-event concurrency in Gradio's queue. The UI's handlers only wait on the API, which has its own
limits, so none is set here; Gradio's default of 1 would make every user wait for every other."""


def mount_ui(
    app: FastAPI,
    *,
    api_url: str,
    auth_required: bool,
    stream_read_timeout_s: float = 60.0,
    middleware: Sequence[Middleware] = (),
) -> None:
    """Serve the chat UI at `/` on the same port as the API.

    The UI is a client of the API like any other: it reaches it over HTTP at `api_url`, with each
    signed-in user's own key when `auth_required`, and knows nothing else of the server. A stream
    silent for `stream_read_timeout_s` counts as broken (the API pings more often). `middleware` runs
    in front of every route of the UI (the app's guard, with API keys on). Mount it after the API
    routes: `/` catches every path nothing else claimed.
    """
    client = ChatstackClient(api_url, stream_read_timeout_s=stream_read_timeout_s)
    blocks = build_blocks(Handlers(client, auth_required=auth_required))
    blocks.queue(default_concurrency_limit=CONCURRENCY_LIMIT)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        theme=build_theme(),
        css=stylesheet(),
        js=page_script(),
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        show_error=False,
        app_kwargs={"middleware": [Middleware(PagePolicy), *middleware]},
    )
    _close_with_app(app, client)


def _close_with_app(app: FastAPI, client: ChatstackClient) -> None:
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with inner(app) as state:
            try:
                yield state
            finally:
                await client.aclose()

    app.router.lifespan_context = lifespan
