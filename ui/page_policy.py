"""The Content-Security-Policy of the chat page: what the browser may load and submit, whatever the
page shows.

Everything the chat shows from a model, a tool or a user is rendered inert first (ui/markdown.py);
this is the second line, kept by the browser itself: images and media only from this app (so no
image, from a tag or from CSS, can carry data out to another host), no form submissions, no frames
or plugins, and no `<base>` to redirect the page's relative links. Scripts and styles are left as
Gradio needs them (it evaluates the page's functions and sets styles inline).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = "; ".join(
    [
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "form-action 'none'",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
    ]
)


class PagePolicy:
    """ASGI middleware of the Gradio app: every response carries `POLICY`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"
                ]
                headers.append((b"content-security-policy", POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)
