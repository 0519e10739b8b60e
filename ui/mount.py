"""Mounts the browser chat into the FastAPI app, at `/`, on the same port as the API."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import gradio as gr
from fastapi import FastAPI

from app.settings import Settings
from ui.api_client import ChatstackClient
from ui.handlers import Handlers
from ui.theme import build_theme, page_script, stylesheet
from ui.wiring import build_blocks

CONCURRENCY_LIMIT: int | None = None
"""Per-event concurrency in Gradio's queue. The UI's handlers only wait on the API, which has its own
limits, so none is set here; Gradio's default of 1 would make every user wait for every other."""


def api_base_url(settings: Settings) -> str:
    """Where this app's API answers, seen from inside the process."""
    host = settings.host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{settings.port}"
    if address.is_unspecified:  # 0.0.0.0 or :: listen everywhere, loopback included
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return (
        f"http://[{address}]:{settings.port}" if address.version == 6 else f"http://{address}:{settings.port}"
    )


def mount_ui(app: FastAPI, settings: Settings, *, api_url: str | None = None) -> None:
    """Serve the chat UI at `/` on the same port as the API.

    The UI reaches the API over HTTP at `api_url` (default: this app's own host and port from
    `settings`), with each signed-in user's own key when `settings.auth_enabled`. Mount it after the
    API routes: `/` catches every path nothing else claimed.
    """
    client = ChatstackClient(
        api_url or api_base_url(settings),
        stream_read_timeout_s=max(60.0, settings.sse_ping_s * 4),
    )
    blocks = build_blocks(Handlers(client, auth_required=settings.auth_enabled))
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
