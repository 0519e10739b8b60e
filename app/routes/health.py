from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(services: ServicesDep) -> dict[str, Any]:
    """Liveness plus a summary: the service answers even when every backend is down."""
    return {
        "status": "ok",
        "active_runs": services.runs.active_count,
        "backends": {name: h.status for name, h in services.registry.health.items()},
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics of this process."""
    m = services.metrics
    for name, health in services.registry.health.items():
        m.backend_up.labels(name).set(1 if health.status == "up" else 0)
    m.active_runs.set(services.runs.active_count)
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
