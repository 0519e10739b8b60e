"""Deciding on tool calls that wait for the user's approval (app/approvals.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import CurrentUser, RunsDep, StoreDep
from app.schemas import ApprovalDecision, ApprovalOut, ErrorBody

router = APIRouter(prefix="/api/runs", tags=["runs"])
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such run"},
    409: {"model": ErrorBody, "description": "That call does not wait for approval (decided already?)"},
}


@router.post("/{run_id}/approvals", responses=RESPONSES)
async def decide(
    run_id: str, body: ApprovalDecision, user: CurrentUser, runs: RunsDep, store: StoreDep
) -> ApprovalOut:
    """Approve or deny a call announced by `tool.approval_required`. Once none of the run's calls
    waits, the run goes on (the approved calls run; the model is told of the declined ones) in the
    same event stream."""
    await store.get_run(run_id, user.id)  # another user's run is not found
    status = await runs.decide(run_id, body.call_id, approve=body.approve, by=user.name, reason=body.reason)
    return ApprovalOut(run_id=run_id, call_id=body.call_id, approved=body.approve, status=status)
