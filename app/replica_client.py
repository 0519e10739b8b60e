"""Talking to the replica that owns a run: relay its live event stream, forward a cancel.

Runs execute in the process that started them. Any other replica behind the load balancer reaches
the owner over HTTP at the address the owner recorded with the run, so streaming and cancelling work
through every replica, in real time, with no extra infrastructure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp

from app.event_log import RunEventRecord

FORWARDED_HEADER = "X-Chatstack-Forwarded"


class OwnerUnreachable(Exception):
    """The owning replica did not answer (it may have died)."""


class ReplicaClient:
    def __init__(self, session: aiohttp.ClientSession, connect_timeout_s: float = 2.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=None)

    async def events(
        self, owner: str, run_id: str, after: int, authorization: str | None
    ) -> AsyncIterator[RunEventRecord]:
        """The owner's live events after `after`. Raises OwnerUnreachable before the first event only."""
        url = f"{owner}/api/runs/{run_id}/events"
        headers = _headers(authorization) | {"Last-Event-ID": str(after)}
        try:
            response = await self._session.get(url, headers=headers, timeout=self._timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OwnerUnreachable(str(exc)) from exc
        async with response:
            if response.status != 200:
                raise OwnerUnreachable(f"owner answered HTTP {response.status}")
            seq, kind = 0, ""
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("id:"):
                    seq = int(line[3:].strip())
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind:
                    yield RunEventRecord(seq, kind, json.loads(line[5:].strip()))
                    kind = ""

    async def cancel(self, owner: str, run_id: str, authorization: str | None) -> None:
        url = f"{owner}/api/runs/{run_id}/cancel"
        try:
            async with self._session.post(
                url, headers=_headers(authorization), timeout=self._timeout
            ) as response:
                if response.status >= 500:
                    raise OwnerUnreachable(f"owner answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OwnerUnreachable(str(exc)) from exc


def _headers(authorization: str | None) -> dict[str, str]:
    # The caller's own key goes along: the owner checks access exactly as if it had been asked first.
    headers = {FORWARDED_HEADER: "1"}
    if authorization:
        headers["Authorization"] = authorization
    return headers
