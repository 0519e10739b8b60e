"""FastAPI dependencies: the lifespan's objects, typed, for the routes to declare.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool, which costs
more than the whole proxy path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import aiohttp
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import Authenticator, AuthUser
from app.errors import TooManyRequests
from app.metrics import Metrics
from app.rate_limit import RateLimiter, retry_after_header
from app.run_manager import RunManager
from app.settings import Settings
from app.store import Store
from backends.local.engine import EngineSupervisor
from backends.registry import BackendRegistry
from tools.base import Tool


@dataclass(slots=True)
class Services:
    """Everything the app builds at start-up and tears down at shutdown."""

    settings: Settings
    store: Store
    registry: BackendRegistry
    runs: RunManager
    tools: dict[str, Tool]
    http: aiohttp.ClientSession
    metrics: Metrics
    auth: Authenticator
    rate_limiter: RateLimiter
    engine: EngineSupervisor | None = None
    """The embedded model's engine, when the backends file lists `local`."""


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_store(request: Request) -> Store:
    return (await get_services(request)).store


async def get_runs(request: Request) -> RunManager:
    return (await get_services(request)).runs


async def get_registry(request: Request) -> BackendRegistry:
    return (await get_services(request)).registry


async def get_settings(request: Request) -> Settings:
    return (await get_services(request)).settings


StoreDep = Annotated[Store, Depends(get_store)]
RunsDep = Annotated[RunManager, Depends(get_runs)]
RegistryDep = Annotated[BackendRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]


_bearer = HTTPBearer(auto_error=False, description="An API key from `chatstack users create NAME`.")


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> AuthUser:
    """The caller, from their API key (everyone is `local` with auth off), within their rate limit."""
    services = await get_services(request)
    user = await services.auth.authenticate(credentials.credentials if credentials else None)
    wait = await services.rate_limiter.acquire(user.id)
    if wait is not None:
        raise TooManyRequests(
            f"too many requests; try again in {retry_after_header(wait)} s",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return user


CurrentUser = Annotated[AuthUser, Depends(current_user)]
