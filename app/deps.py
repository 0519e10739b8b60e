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

from app.attachments.service import Attachments
from app.auth import Authenticator, AuthUser
from app.errors import TooManyRequests
from app.metrics import Metrics
from app.rate_limit import RateLimiter, retry_after_header
from app.replica_client import Hop
from app.run_manager import RunManager
from app.settings import Settings
from app.store import Store
from app.usage import UsageMeter
from backends.client.registry import BackendRegistry
from backends.local.engine import EngineSupervisor
from tools.catalog import ToolCatalog


@dataclass(slots=True)
class Services:
    """Everything the app builds at start-up and tears down at shutdown."""

    settings: Settings
    store: Store
    registry: BackendRegistry
    runs: RunManager
    tools: ToolCatalog
    """Every tool (built-in and MCP), live: ask it per run, do not keep a copy."""
    http: aiohttp.ClientSession
    metrics: Metrics
    auth: Authenticator
    rate_limiter: RateLimiter
    usage: UsageMeter
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


async def get_usage(request: Request) -> UsageMeter:
    return (await get_services(request)).usage


async def get_attachments(request: Request) -> Attachments:
    attachments: Attachments = request.app.state.attachments
    return attachments


StoreDep = Annotated[Store, Depends(get_store)]
AttachmentsDep = Annotated[Attachments, Depends(get_attachments)]
RunsDep = Annotated[RunManager, Depends(get_runs)]
RegistryDep = Annotated[BackendRegistry, Depends(get_registry)]
ServicesDep = Annotated[Services, Depends(get_services)]
UsageDep = Annotated[UsageMeter, Depends(get_usage)]


async def get_hop(request: Request) -> Hop:
    return Hop.of(request)


HopDep = Annotated[Hop, Depends(get_hop)]
"""How the request reached this replica, for the run manager to forward it to the run's owner."""


_bearer = HTTPBearer(auto_error=False, description="An API key from `chatstack users create NAME`.")


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> AuthUser:
    """The caller, from their API key (everyone is `local` with auth off), within their rate limit."""
    services = await get_services(request)
    # The address as uvicorn resolved it: the proxy's X-Forwarded-For only from CHATSTACK_FORWARDED_ALLOW_IPS.
    client = request.client.host if request.client else "unknown"
    user = await services.auth.authenticate(credentials.credentials if credentials else None, client)
    wait = await services.rate_limiter.acquire(user.id)
    if wait is not None:
        raise TooManyRequests(
            f"too many requests; try again in {retry_after_header(wait)} s",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return user


CurrentUser = Annotated[AuthUser, Depends(current_user)]
