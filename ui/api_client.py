"""A typed async client for chatstack's HTTP API: the only way the UI reaches the service."""

from __future__ import annotations

import asyncio
import copy
import urllib.request
from collections.abc import AsyncIterator, Sequence
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from protocol.run_events import TERMINAL_EVENT, RunEvent
from protocol.sse import SseParser
from ui.api_models import (
    LIVE_RUN_STATUSES,
    ApprovalResult,
    AttachmentList,
    BackendList,
    Conversation,
    ConversationDetail,
    ConversationList,
    ErrorBody,
    Run,
    RunStarted,
    SearchResults,
    ToolList,
    Usage,
)

ExportFormat = Literal["markdown", "json"]
_Model = TypeVar("_Model", bound=BaseModel)


class ApiError(Exception):
    """The API answered with an error (`status`, and the `code` and `message` from its body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiUnreachable(ApiError):
    """The API did not answer at all (connection refused, reset, or timed out)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "unreachable", detail)


class Unauthorized(Exception):
    """The API refused the request's key (401: missing, unknown or revoked).

    Deliberately not an ApiError: code that explains or shrugs off an ApiError (a toast, a list left
    as it was) must not swallow this one, because nothing but a new key helps; the page asks for one.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def export_href(conversation_id: str, fmt: ExportFormat, *, session: bool = False) -> str:
    """The export link relative to the page, which is served by the same app as the API.

    A plain link cannot carry an API key: with `session`, it goes to the copy of the export that
    the browser's session cookie opens (`/ui/conversations/…/export`, see app/ui_guard.py).
    """
    prefix = "ui" if session else "api"
    return f"{prefix}/conversations/{quote(conversation_id, safe='')}/export?format={fmt}"


class _RefuseCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return False


class _Connection:
    """The HTTP connection pool, shared by every client made from one root client.

    The `httpx.AsyncClient` is created on first use so that it binds to the event loop that serves
    requests; `aclose()` releases it (a later call makes a new one).
    """

    def __init__(self, base_url: str, timeout: httpx.Timeout, transport: httpx.AsyncBaseTransport | None):
        self.base_url = base_url
        self._timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self._timeout,
                transport=self._transport,
                # Every open answer holds a streaming connection; the default pool of 100 is too small.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                # The API is this same app; an HTTP(S)_PROXY meant for the outside must not apply.
                trust_env=False,
                # Every user's requests share this client: a cookie one response set must not go out
                # with another user's requests. Keys are the only credentials.
                cookies=CookieJar(policy=_RefuseCookies()),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


class ChatstackClient:
    """The API as one user sees it: every request carries that user's key (if any).

    The UI process makes one root client; `with_key` gives each browser session its own client that
    shares the root's connection pool, so many users are served over the same connections while no
    request ever goes out with another session's key.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        stream_read_timeout_s: float = 60.0,
        max_reconnects: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._connection = _Connection(self.base_url, httpx.Timeout(timeout_s), transport)
        # A live stream is quiet between tokens; the server pings well within this.
        self._stream_timeout = httpx.Timeout(timeout_s, read=stream_read_timeout_s)
        self._max_reconnects = max_reconnects
        self._headers = _auth_headers(api_key)

    def with_key(self, api_key: str | None) -> ChatstackClient:
        """A client that sends `api_key` (None: no key) and shares this one's connections."""
        clone = copy.copy(self)
        clone._headers = _auth_headers(api_key)
        return clone

    def _client(self) -> httpx.AsyncClient:
        return self._connection.client()

    async def aclose(self) -> None:
        """Close the shared connection pool (of this client and every client made from it)."""
        await self._connection.aclose()

    # backends

    async def backends(self) -> BackendList:
        return await self._get("/api/backends", BackendList)

    # tools

    async def tools(self) -> ToolList:
        """Every tool the agent may offer, built-in and MCP, with its approval and status."""
        return await self._get("/api/tools", ToolList)

    # usage

    async def usage(self) -> Usage:
        """The caller's tokens this budget period, and their budget."""
        return await self._get("/api/usage", Usage)

    # conversations

    async def conversations(self, limit: int = 100) -> ConversationList:
        return await self._get(f"/api/conversations?limit={limit}", ConversationList)

    async def create_conversation(
        self, backend: str | None = None, tools: list[str] | None = None
    ) -> Conversation:
        """A new conversation; `tools` None enables every tool whose approval is not `deny`."""
        body: dict[str, Any] = {"backend": backend} if backend else {}
        if tools is not None:
            body["tools"] = tools
        return await self._call("POST", "/api/conversations", Conversation, json=body)

    async def conversation(self, conversation_id: str) -> ConversationDetail:
        return await self._get(f"/api/conversations/{_seg(conversation_id)}", ConversationDetail)

    async def update_conversation(
        self, conversation_id: str, *, title: str | None = None, backend: str | None = None
    ) -> Conversation:
        body = {k: v for k, v in {"title": title, "backend": backend}.items() if v is not None}
        path = f"/api/conversations/{_seg(conversation_id)}"
        return await self._call("PATCH", path, Conversation, json=body)

    async def set_tools(self, conversation_id: str, tools: list[str] | None) -> Conversation:
        """Enable exactly `tools` in the conversation (None: every tool whose approval is not `deny`)."""
        path = f"/api/conversations/{_seg(conversation_id)}"
        return await self._call("PATCH", path, Conversation, json={"tools": tools})

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._request("DELETE", f"/api/conversations/{_seg(conversation_id)}")

    async def regenerate(self, conversation_id: str, backend: str | None = None) -> RunStarted:
        """Answer the last question again; the server replaces its previous answer and tool steps."""
        body = {"backend": backend} if backend else {}
        path = f"/api/conversations/{_seg(conversation_id)}/regenerate"
        return await self._call("POST", path, RunStarted, json=body)

    async def send_message(
        self,
        conversation_id: str,
        content: str,
        backend: str | None = None,
        *,
        parent_id: int | Literal["active"] | None = "active",
        attachments: Sequence[str] = (),
    ) -> RunStarted:
        """Ask `content`. `parent_id`: the message it follows ("active": the active branch's last;
        None: a new first message); the parent of an earlier question makes it an edit, a branch.
        `attachments`: ids of the conversation's files the question is about."""
        body: dict[str, Any] = {"content": content}
        if backend:
            body["backend"] = backend
        if parent_id != "active":
            body["parent_id"] = parent_id
        if attachments:
            body["attachments"] = list(attachments)
        path = f"/api/conversations/{_seg(conversation_id)}/messages"
        return await self._call("POST", path, RunStarted, json=body)

    async def select_branch(self, conversation_id: str, message_id: int) -> Conversation:
        """Show the branch through `message_id` (down to the newest message below it)."""
        path = f"/api/conversations/{_seg(conversation_id)}"
        return await self._call("PATCH", path, Conversation, json={"active_leaf_id": message_id})

    # search

    async def search(
        self, query: str, *, limit: int = 20, offset: int = 0, order: Literal["rank", "recent"] = "rank"
    ) -> SearchResults:
        """The caller's messages matching `query` (words, "phrases", prefix*)."""
        params: dict[str, str | int] = {"q": query, "limit": limit, "offset": offset, "order": order}
        return await self._call("GET", "/api/search", SearchResults, params=params)

    # attachments

    async def upload_attachments(
        self, conversation_id: str, files: Sequence[tuple[str, bytes]]
    ) -> AttachmentList:
        """Attach `files` ((name, content) each) to the conversation: all are stored, or none."""
        parts = [("file", (name, content, "application/octet-stream")) for name, content in files]
        path = f"/api/conversations/{_seg(conversation_id)}/attachments"
        return await self._call("POST", path, AttachmentList, files=parts)

    async def delete_attachment(self, conversation_id: str, attachment_id: str) -> None:
        path = f"/api/conversations/{_seg(conversation_id)}/attachments/{_seg(attachment_id)}"
        await self._request("DELETE", path)

    # runs

    async def run(self, run_id: str) -> Run:
        return await self._get(f"/api/runs/{_seg(run_id)}", Run)

    async def cancel_run(self, run_id: str) -> Run:
        return await self._call("POST", f"/api/runs/{_seg(run_id)}/cancel", Run)

    async def decide_approval(
        self, run_id: str, call_id: str, *, approve: bool, reason: str | None = None
    ) -> ApprovalResult:
        """Approve or deny a tool call the run waits on (`tool.approval_required`); 409 if it no
        longer waits (decided already, timed out, or the run was stopped)."""
        body: dict[str, Any] = {"call_id": call_id, "approve": approve}
        if reason:
            body["reason"] = reason
        return await self._call("POST", f"/api/runs/{_seg(run_id)}/approvals", ApprovalResult, json=body)

    async def events(self, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        """The run's events after `after`, live, until `run.finished`.

        A dropped connection is resumed with `Last-Event-ID`, so no event is lost or repeated.
        Raises ApiError if the run does not exist, ApiUnreachable if the API stays unreachable, and
        Unauthorized if the key stops being accepted (it is not retried).
        """
        position = after
        failures = 0
        while True:
            try:
                async for event in self._event_stream(run_id, position):
                    position, failures = event.id, 0
                    yield event
                    if event.type == TERMINAL_EVENT:
                        return
            except (httpx.TransportError, ApiUnreachable) as exc:
                failures += 1
                if failures > self._max_reconnects:
                    raise ApiUnreachable(f"lost the event stream of run {run_id}: {exc}") from exc
            else:
                # The server ends a stream without run.finished only for runs that died with their
                # process; anything else was a proxy or network cut, so reconnect. (A run paused for an
                # approval is not over.)
                if (await self.run(run_id)).status not in LIVE_RUN_STATUSES:
                    return
                failures += 1
                if failures > self._max_reconnects:
                    raise ApiUnreachable(f"the event stream of run {run_id} keeps ending early")
            await asyncio.sleep(min(0.2 * 2**failures, 3.0))

    async def _event_stream(self, run_id: str, after: int) -> AsyncIterator[RunEvent]:
        headers = {**self._headers, "Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = str(after)
        path = f"/api/runs/{_seg(run_id)}/events"
        async with self._client().stream("GET", path, headers=headers, timeout=self._stream_timeout) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise _error(resp)
            parser = SseParser()
            async for chunk in resp.aiter_bytes():
                for message in parser.feed(chunk):
                    event = RunEvent.from_sse(message)
                    if event is not None:
                        yield event

    # plumbing

    async def _get(self, path: str, model: type[_Model]) -> _Model:
        return await self._call("GET", path, model)

    async def _call(self, method: str, path: str, model: type[_Model], **kwargs: Any) -> _Model:
        response = await self._request(method, path, **kwargs)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiError(response.status_code, "bad_response", f"{method} {path}: {exc}") from exc

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client().request(method, path, headers=self._headers, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response


def _seg(value: str) -> str:
    return quote(value, safe="")


def _auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _error_message(response: httpx.Response) -> str:
    try:
        return ErrorBody.model_validate_json(response.content).error.message
    except ValidationError:
        return response.text.strip()[:200] or response.reason_phrase


def _error(response: httpx.Response) -> ApiError | Unauthorized:
    if response.status_code == 401:
        return Unauthorized(_error_message(response))
    try:
        detail = ErrorBody.model_validate_json(response.content).error
    except ValidationError:
        return ApiError(response.status_code, "http_error", _error_message(response))
    return ApiError(response.status_code, detail.code, detail.message)
