from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from app.deps import CurrentUser, ServicesDep
from app.embedded_engine import LOCAL_BACKEND
from app.schemas import AutoRouting, BackendList, BackendOut

router = APIRouter(prefix="/api", tags=["backends"])


@router.get("/backends")
async def list_backends(_user: CurrentUser, services: ServicesDep) -> BackendList:
    """Every configured backend with its tool support and last polled health."""
    registry = services.registry
    items = []
    for config in registry.configs():
        health = registry.health[config.name]
        status: Literal["unknown", "up", "down", "starting"] = health.status
        error = health.error
        engine = services.engine
        if registry.get(config.name).starting:
            status, error = "starting", "scaled to zero: a replica is starting"
        elif config.name == LOCAL_BACKEND and engine is not None and engine.status != "ready":
            # Loading a model takes minutes: say so rather than "down". The supervisor's word counts, not
            # the poll's: a Ray Serve ingress answers /v1/models a minute before its model is loaded.
            loading = engine.status == "starting"
            status = "starting" if loading else "down"
            error = engine.last_error or ("the embedded model is loading" if loading else error)
        items.append(
            BackendOut(
                name=config.name,
                model=config.model,
                description=config.description,
                tool_mode=config.tool_mode,
                supports_tools=config.supports_tools,
                role=config.role,
                context_length=config.context_length,
                default=config.name == registry.default,
                health=status,
                health_checked_at=health.checked_at,
                health_latency_ms=health.latency_ms,
                health_error=error,
            )
        )
    pair = registry.auto_pair()
    auto = AutoRouting(tools=pair[0].name, throughput=pair[1].name) if pair else None
    return BackendList(items=items, default=registry.default, auto=auto)
