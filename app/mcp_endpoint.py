"""`/mcp`: chatstack as a streamable HTTP MCP server, behind the same API keys as `/api` and `/v1`.

Every request is authenticated and rate limited exactly like an API request (`app.deps.current_user`):
without a valid key it gets the API's JSON 401 (or 429) before the MCP SDK sees it. The user is left in
the ASGI scope for the handlers (`app.mcp_server`).

The SDK's session manager runs stateless: each POST is a complete exchange with its own transport, so
any replica behind a load balancer can answer any request (no session affinity, no session table to
lose in a restart), and the key is checked on every request rather than once per session. chatstack
needs nothing a session would give: it never sends requests to the client, and the state that matters
(conversations, runs) is in the database already. The 2026 protocol revision is stateless by design;
older clients' `initialize` handshakes are answered too.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from fastapi.security import HTTPBearer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from app.deps import current_user
from app.errors import ChatstackError, error_response
from app.mcp_server import USER_SCOPE_KEY, build_server

PATH = "/mcp"

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class _RouteLabel:
    """What the access log and the metrics read the route's template from (`scope["route"].path`):
    FastAPI sets it for its own routes only, and `/mcp` would count as unmatched."""

    path: str = PATH


class McpEndpoint:
    """The ASGI app at `/mcp`. `run()` must be entered in the app's lifespan (the SDK's task group)."""

    def __init__(self) -> None:
        self.sessions = StreamableHTTPSessionManager(build_server(), stateless=True)

    def run(self) -> AbstractAsyncContextManager[None]:
        return self.sessions.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = _RouteLabel()
        request = Request(scope, receive)
        try:
            user = await current_user(request, await _bearer(request))
        except ChatstackError as exc:
            response = error_response(exc.code, exc.message, exc.status_code)
            response.headers.update(exc.headers)
            await response(scope, receive, send)
            return
        scope[USER_SCOPE_KEY] = user
        await self.sessions.handle_request(scope, receive, send)
