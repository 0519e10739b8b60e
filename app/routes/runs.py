from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.deps import CurrentUser, HopDep, RunsDep, ServicesDep, StoreDep
from app.errors import InvalidRequest
from app.schemas import ErrorBody, RunOut

router = APIRouter(prefix="/api/runs", tags=["runs"])
MAX_EVENT_ID = 2**31 - 1
# ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses, and a short cap keeps
# int() away from its 4300-digit limit.
_EVENT_ID = re.compile(r"[0-9]{1,10}")
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such run"}}


@router.get("/{run_id}", responses=NOT_FOUND)
async def get_run(run_id: str, user: CurrentUser, store: StoreDep) -> RunOut:
    return RunOut.model_validate(await store.get_run(run_id, user.id))


@router.get(
    "/{run_id}/events",
    name="run_events",
    responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def run_events(
    run_id: str,
    user: CurrentUser,
    runs: RunsDep,
    store: StoreDep,
    services: ServicesDep,
    hop: HopDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id")
    ] = None,
) -> EventSourceResponse:
    """The run's typed events. Reconnect with `Last-Event-ID` (or `?after=`) to resume exactly after it."""
    position = after or 0
    if last_event_id:
        if not _EVENT_ID.fullmatch(last_event_id) or int(last_event_id) > MAX_EVENT_ID:
            raise InvalidRequest("Last-Event-ID must be an event id from this stream", code="bad_event_id")
        position = max(position, int(last_event_id))
    await store.get_run(run_id, user.id)

    active_streams = services.metrics.active_streams

    async def stream() -> AsyncIterator[ServerSentEvent]:
        active_streams.inc()
        try:
            async for record in runs.events(run_id, position, hop):
                yield ServerSentEvent(data=record.data_json(), event=record.type, id=str(record.id))
        finally:
            active_streams.dec()

    return EventSourceResponse(
        stream(),
        ping=services.settings.sse_ping_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{run_id}/cancel", responses=NOT_FOUND)
async def cancel_run(
    run_id: str,
    user: CurrentUser,
    runs: RunsDep,
    store: StoreDep,
    hop: HopDep,
) -> RunOut:
    """Stop the run. The partial answer is kept and marked cancelled. Cancelling a finished run is a no-op."""
    await store.get_run(run_id, user.id)
    await runs.cancel(run_id, hop, by=user.name)
    return RunOut.model_validate(await store.get_run(run_id))
