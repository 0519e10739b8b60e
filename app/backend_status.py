"""A backend's health as the API reports it: the last poll, unless a start in progress says more."""

from __future__ import annotations

from typing import Literal

from backends.client.config import BackendConfig
from backends.client.registry import BackendRegistry
from backends.local.engine import EngineSupervisor

HealthStatus = Literal["unknown", "up", "down", "starting"]


def reported_health(
    config: BackendConfig, registry: BackendRegistry, engine: EngineSupervisor | None
) -> tuple[HealthStatus, str | None]:
    """(status, error) of one backend: `starting` while a scaled-to-zero replica or the embedded
    model loads, which takes minutes and is not `down`."""
    health = registry.health[config.name]
    if registry.get(config.name).starting:
        return "starting", "scaled to zero: a replica is starting"
    if config.kind == "embedded" and engine is not None and engine.status != "ready":
        # The supervisor's word counts, not the poll's: a Ray Serve ingress answers /v1/models a
        # minute before its model is loaded.
        if engine.status == "starting":
            return "starting", engine.last_error or "the embedded model is loading"
        return "down", engine.last_error or health.error
    return health.status, health.error
