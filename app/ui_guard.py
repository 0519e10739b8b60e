"""The browser UI with API keys on: its session, and the guard in front of Gradio.

Signing in on the page POSTs the key to `/ui/session`, which checks it like any API request and
answers with an HttpOnly, SameSite=Strict cookie that holds it: the browser then sends the key with
every request of the page, Gradio's included, while no script of the page can read it, and no other
site can make the browser send it.

`UiGuard` sits in front of the Gradio app. Every request to it needs a valid key, from that cookie
or an `Authorization: Bearer` header, and counts against the user's rate limit like an API request;
only the page itself, its configuration and its static files (`PUBLIC_PATHS`, `PUBLIC_PREFIXES`, GET
only) are public, so that the sign-in view loads. The list names what is public rather than what is
guarded, so that a route a later Gradio adds is closed until someone decides otherwise. Refusals are
JSON 401s (or 429s), and nothing behind them runs: no upload is stored, no event is queued. An
admitted request goes on with the key as its `Authorization` header, which the UI's handlers send on
to the API.

With API keys off none of this is installed: the UI stays open, as the API does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import AuthUser, key_prefix
from app.deps import AttachmentsDep, StoreDep, current_user
from app.errors import ChatstackError, Unauthorized, error_body
from app.routes.attachments import download_attachment
from app.routes.conversations import export_conversation
from app.schemas import ExportFormat

COOKIE = "chatstack_session"
SESSION_DAYS = 30
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/config",
        "/config/",
        "/favicon.ico",
        "/manifest.json",
        "/robots.txt",
        "/theme.css",
        "/gradio_api/theme.css",
        # The page's Gradio client reads the API's description once as it connects, before anyone
        # has signed in; without it no event of the page could run. It describes, accepts nothing.
        "/gradio_api/info",
        "/gradio_api/info/",
    }
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
"""Gradio's own files (scripts, styles, fonts, icons), from its package."""


class NotSignedIn(Unauthorized):
    """No session: the browser holds no key (never signed in, signed out, or the cookie expired)."""

    code = "not_signed_in"


class KeyNotAccepted(Unauthorized):
    """The session's key no longer works (revoked, or the user deleted)."""

    code = "key_not_accepted"


router = APIRouter(prefix="/ui", include_in_schema=False)
_bearer = HTTPBearer(auto_error=False)


@router.post("/session")
async def start_session(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Response:
    """Sign in: the key in `Authorization: Bearer`, checked like any API request, becomes the
    session cookie. (A form on another site cannot set that header: no one can sign a browser in
    with their own key behind its user's back.)"""
    user = await current_user(request, credentials)
    key = credentials.credentials.strip() if credentials else ""
    return _with_cookie(_session_body(user, key), request, key)


@router.get("/session")
async def check_session(request: Request) -> Response:
    """The session, checked (and counted) like an API request; its cookie lasts another 30 days."""
    user, key = await session_user(request)
    return _with_cookie(_session_body(user, key), request, key)


@router.delete("/session", status_code=204)
async def end_session() -> Response:
    """Sign out in this browser (the key stays valid: revoking it is its owner's business)."""
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/conversations/{conversation_id}/export")
async def export_with_session(
    conversation_id: str,
    request: Request,
    store: StoreDep,
    attachments: AttachmentsDep,
    format: Annotated[ExportFormat, Query()] = "json",
) -> Response:
    """`GET /api/conversations/{id}/export` for the page's export links, which cannot carry a key."""
    user, _ = await session_user(request)
    return await export_conversation(conversation_id, user, store, attachments, format)


@router.get("/conversations/{conversation_id}/attachments/{attachment_id}")
async def attachment_with_session(
    conversation_id: str, attachment_id: str, request: Request, attachments: AttachmentsDep
) -> Response:
    """An attachment's download for the chips of the page's messages, which cannot carry a key."""
    user, _ = await session_user(request)
    return await download_attachment(conversation_id, attachment_id, user, attachments)


async def session_user(request: Request) -> tuple[AuthUser, str]:
    """The user of the request's session cookie, within their rate limit, and the key."""
    key = request.cookies.get(COOKIE, "").strip()
    if not key:
        raise NotSignedIn("not signed in: sign in on the page, or send 'Authorization: Bearer <key>'")
    try:
        user = await current_user(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=key))
    except Unauthorized as exc:
        ended = KeyNotAccepted(exc.message)
        # The browser may as well forget it.
        ended.headers["set-cookie"] = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
        raise ended from exc
    return user, key


def _session_body(user: AuthUser, key: str) -> dict[str, str]:
    return {"user": user.name, "key_prefix": key_prefix(key)}


def _with_cookie(body: Mapping[str, Any], request: Request, key: str) -> Response:
    response = Response(json.dumps(body), media_type="application/json")
    response.set_cookie(
        COOKIE,
        key,
        max_age=SESSION_DAYS * 24 * 3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


class UiGuard:
    """ASGI middleware of the Gradio app: see the module docstring. `parent` is the app that holds
    the services (the Gradio app is mounted in it)."""

    def __init__(self, app: ASGIApp, parent: FastAPI) -> None:
        self.app = app
        self.parent = parent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_public(scope):
            await self.app(scope, receive, send)
            return
        # The check the API makes (the key, the wrong-key limit per address, the rate limit), on the
        # parent app's services.
        request = Request({**scope, "type": "http", "app": self.parent})
        key = _bearer_key(request) or request.cookies.get(COOKIE, "").strip()
        try:
            if not key:
                raise NotSignedIn("not signed in: sign in on the page first")
            await current_user(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=key))
        except ChatstackError as exc:
            await _refuse(scope, send, exc)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
        headers.append((b"authorization", b"Bearer " + key.encode("latin-1")))
        await self.app({**scope, "headers": headers}, receive, send)


def is_public(scope: Scope) -> bool:
    """Whether a request may reach the Gradio app without a key: a GET (or HEAD) of the page, its
    configuration or a static file."""
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _bearer_key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


async def _refuse(scope: Scope, send: Send, exc: ChatstackError) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting answers the upgrade with a 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    body = error_body(exc.code, exc.message, exc.status_code)
    # Gradio's page shows `detail` of a refused request in its error toast.
    body["detail"] = exc.message
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in exc.headers.items()),
    ]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
