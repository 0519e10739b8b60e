from __future__ import annotations

from fastapi import APIRouter

from app.backend_status import reported_health
from app.deps import CurrentUser, ServicesDep
from app.schemas import AutoRouting, BackendList, BackendOut

router = APIRouter(prefix="/api", tags=["backends"])


@router.get("/backends")
async def list_backends(_user: CurrentUser, services: ServicesDep) -> BackendList:
    """Every configured backend with its tool support and last polled health."""
    registry = services.registry
    items = []
    for config in registry.configs():
        health = registry.health[config.name]
        status, error = reported_health(config, registry, services.engine)
        items.append(
            BackendOut(
                name=config.name,
                kind=config.kind,
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
