"""`GET /api/tools`: every tool the agent may offer, built-in and MCP, with its approval and status."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import CurrentUser, ServicesDep
from tools.tools_file import Approval

router = APIRouter(prefix="/api/tools", tags=["tools"])


class ToolOut(BaseModel):
    name: str
    """As offered to the model, and as conversations name it in `tools`."""
    server: str
    """`builtin`, or the MCP server's name from the tools file."""
    description: str
    """The server's own text (bounded, untrusted): show it escaped."""
    parameters: dict[str, Any]
    approval: Approval
    status: Literal["available", "unavailable"]
    reason: str | None
    """Why the tool is unavailable (its server is down, restarting, ...)."""


class ToolList(BaseModel):
    items: list[ToolOut]


@router.get("")
async def list_tools(user: CurrentUser, services: ServicesDep) -> ToolList:
    return ToolList(
        items=[
            ToolOut(
                name=entry.name,
                server=entry.server,
                description=entry.tool.description,
                parameters=entry.tool.parameters,
                approval=entry.approval,
                status="available" if entry.available else "unavailable",
                reason=None if entry.available else entry.reason,
            )
            for entry in services.tools.entries()
        ]
    )
