"""Routing between replicas: which replica to ask about a run, relaying its live event stream,
forwarding a cancel.

Runs execute in the process that started them. Any other replica behind the load balancer reaches
the owner over HTTP at the address the owner recorded with the run, so streaming and cancelling work
through every replica, in real time, with no extra infrastructure. `ReplicaRouter` owns that
decision and the forwarding; a request's `Hop` says how it reached this replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from starlette.requests import HTTPConnection

from protocol.run_events import RunEvent
from protocol.sse import SseParser

FORWARDED_HEADER = "X-Chatstack-Forwarded"


class OwnerUnreachable(Exception):
    """The owning replica did not answer (it may have died)."""


@dataclass(frozen=True, slots=True)
class Hop:
    """How a request reached this replica: the caller's credentials, passed on if it has to be
    forwarded (the owner checks access exactly as if it had been asked first), and whether another
    replica already forwarded it (then it is answered here, never forwarded again)."""

    authorization: str | None = None
    forwarded: bool = False

    @classmethod
    def of(cls, connection: HTTPConnection) -> Hop:
        return cls(connection.headers.get("authorization"), FORWARDED_HEADER.lower() in connection.headers)

    def headers(self) -> dict[str, str]:
        headers = {FORWARDED_HEADER: "1"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        return headers


class ReplicaRouter:
    """This replica's address, and the way to the replica that runs a run."""

    def __init__(self, me: str, session: aiohttp.ClientSession, connect_timeout_s: float = 2.0) -> None:
        self.me = me
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=None)

    def owner_to_ask(self, status: str, owner: str | None, hop: Hop) -> str | None:
        """The replica to ask about a run in `status` owned by `owner`, if not this one."""
        if status == "running" and owner and owner != self.me and not hop.forwarded:
            return owner
        return None

    async def events(self, owner: str, run_id: str, after: int, hop: Hop) -> AsyncIterator[RunEvent]:
        """The owner's live events after `after`. Raises OwnerUnreachable before the first event only."""
        url = f"{owner}/api/runs/{run_id}/events"
        headers = hop.headers() | {"Last-Event-ID": str(after)}
        try:
            response = await self._session.get(url, headers=headers, timeout=self._timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OwnerUnreachable(str(exc)) from exc
        async with response:
            if response.status != 200:
                raise OwnerUnreachable(f"owner answered HTTP {response.status}")
            parser = SseParser()
            async for chunk in response.content.iter_any():
                for message in parser.feed(chunk):
                    event = RunEvent.from_sse(message)
                    if event is not None:
                        yield event

    async def cancel(self, owner: str, run_id: str, hop: Hop) -> None:
        url = f"{owner}/api/runs/{run_id}/cancel"
        try:
            async with self._session.post(url, headers=hop.headers(), timeout=self._timeout) as response:
                if response.status >= 500:
                    raise OwnerUnreachable(f"owner answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OwnerUnreachable(str(exc)) from exc
