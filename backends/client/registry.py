"""The configured backends by name, with their last known health."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import aiohttp

from backends.client.config import AUTO_BACKEND, BackendConfig
from backends.client.errors import BackendError, UnknownBackend
from backends.client.http_client import BackendClient

log = logging.getLogger(__name__)

HealthStatus = Literal["unknown", "up", "down"]


@dataclass(slots=True)
class BackendHealth:
    status: HealthStatus = "unknown"
    checked_at: datetime | None = None
    latency_ms: float | None = None
    error: str | None = None
    models: list[str] = field(default_factory=list)


class BackendRegistry:
    """Looks backends up by name and polls their `/models` endpoint so that a down backend is visible."""

    def __init__(self, configs: list[BackendConfig], session: aiohttp.ClientSession, default: str) -> None:
        self._clients = {c.name: BackendClient(c, session) for c in configs}
        self.health = {c.name: BackendHealth() for c in configs}
        self.default = default
        self._checks_started = dict.fromkeys(self._clients, 0)
        self._stored_check = dict.fromkeys(self._clients, 0)

    def names(self) -> list[str]:
        return list(self._clients)

    def configs(self) -> list[BackendConfig]:
        return [c.config for c in self._clients.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._clients

    def get(self, name: str | None = None) -> BackendClient:
        """The client for `name`, or for the default backend when `name` is None."""
        key = name or self.default
        if key == AUTO_BACKEND and self.auto_pair():
            key = self.auto_pair()[0].name  # type: ignore[index]
        try:
            return self._clients[key]
        except KeyError:
            raise UnknownBackend(key, f"no backend named {key!r}") from None

    def is_choice(self, name: str) -> bool:
        """A backend name, or `auto` when the file defines the roles it routes between."""
        return name in self._clients or (name == AUTO_BACKEND and self.auto_pair() is not None)

    def choices(self) -> list[str]:
        return self.names() + ([AUTO_BACKEND] if self.auto_pair() else [])

    def route(self, name: str | None) -> tuple[BackendClient, BackendClient | None]:
        """(the backend for tool steps, the backend that answers after tools, if another) for a choice."""
        name = name or self.default
        if name == AUTO_BACKEND:
            pair = self.auto_pair()
            if pair is not None:
                return pair
        return self.get(name), None

    def auto_pair(self) -> tuple[BackendClient, BackendClient] | None:
        """(tools backend, throughput backend) for `auto` routing, if the file names both roles."""
        by_role = {c.config.role: c for c in self._clients.values()}
        if "tools" in by_role and "throughput" in by_role:
            return by_role["tools"], by_role["throughput"]
        return None

    def fallback_of(self, client: BackendClient) -> BackendClient | None:
        name = client.config.fallback
        return self._clients[name] if name else None

    async def check(self, name: str, timeout_s: float = 5.0) -> BackendHealth:
        """Ask the backend for its models now and record the answer, unless a check begun later has
        already been recorded: a poll that set out while a backend was loading must not overwrite the
        "up" of a check made after it became ready (`EngineSupervisor`'s ready hook makes one)."""
        client = self.get(name)
        name = client.config.name
        self._checks_started[name] += 1
        number = self._checks_started[name]
        started = time.perf_counter()
        health = BackendHealth(checked_at=datetime.now(UTC))
        try:
            body = await client.get_json("/models", timeout_s=timeout_s)
            health.status = "up"
            health.models = [m.get("id", "") for m in body.get("data", []) if isinstance(m, dict)]
        except BackendError as exc:
            health.status = "down"
            health.error = exc.detail
        except (AttributeError, TypeError):
            health.status = "down"
            health.error = "the /models answer is not an OpenAI model list"
        health.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if number > self._stored_check[name]:
            self._stored_check[name] = number
            self.health[name] = health
        return health

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(n) for n in self._clients))

    async def poll_forever(self, interval_s: float) -> None:
        """Refresh every backend's health every `interval_s` seconds (run as a lifespan task)."""
        while True:
            try:
                await self.check_all()
            except Exception:  # a poller must never die; the next round retries
                log.exception("backend health check failed")
            await asyncio.sleep(interval_s)
