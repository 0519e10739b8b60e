"""The FastAPI application: built from settings, with its services created and torn down in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.routing import Route

from app.approvals import ApprovalSweeper
from app.attachments.extraction import build_reader_pool
from app.attachments.run_documents import ConversationDocuments
from app.attachments.service import Attachments
from app.attachments.store import AttachmentStore
from app.auth import Authenticator
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade_database
from app.deps import Services
from app.embedded_engine import supervisor_for
from app.errors import NotFound, install_error_handlers
from app.http_middleware import BodyLimitMiddleware, ObservabilityMiddleware
from app.mcp_endpoint import PATH as MCP_PATH
from app.mcp_endpoint import McpEndpoint
from app.metrics import Metrics, observe_queries
from app.rate_limit import rate_limiter
from app.replica_client import ReplicaRouter
from app.routes import (
    approvals,
    attachments,
    backends,
    conversations,
    health,
    openai,
    runs,
    search,
    tools,
    usage,
)
from app.run_manager import RunManager
from app.settings import Settings
from app.store import Store
from app.tooling import build_catalog, build_tool_pool
from app.usage import UsageMeter
from backends.client.config import AUTO_BACKEND, BackendConfigError, load_backends
from backends.client.http_client import new_http_session
from backends.client.registry import BackendRegistry
from tools.tools_file import load_tools_file

log = logging.getLogger("chatstack")

SHUTDOWN_GRACE_S = 5.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configs = load_backends(settings.backends_file)
    names = [c.name for c in configs]
    roles = {c.role for c in configs}
    auto_ok = settings.default_backend == AUTO_BACKEND and {"tools", "throughput"} <= roles
    if settings.default_backend not in names and not auto_ok:
        raise BackendConfigError(
            f"CHATSTACK_DEFAULT_BACKEND={settings.default_backend!r} is not in {settings.backends_file} "
            f"(backends there: {', '.join(names) or 'none'})"
        )

    tools_file = load_tools_file(settings.tools_file)  # a bad file stops the start, as backends do
    metrics = Metrics()
    mcp = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.resolved_database_url(),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        observe_queries(engine, metrics)
        await upgrade_database(engine)
        store = Store(session_factory(engine), serialize_writes=engine.dialect.name == "sqlite")
        http = new_http_session()
        registry = BackendRegistry(configs, http, settings.default_backend)
        tool_pool = build_tool_pool()
        await tool_pool.start()  # warm worker processes for CPU-bound tool work
        catalog = build_catalog(settings, tool_pool, tools_file)
        catalog.start()  # MCP servers connect in the background: a slow one does not hold the start
        meter = UsageMeter(store, settings)
        replicas = ReplicaRouter(settings.resolved_advertise_url(), http)
        # Attachments: their own worker pool for reading files (it starts with the first upload).
        reader_pool = build_reader_pool(settings.attachment_parse_memory_mib)
        attachment_records = AttachmentStore(store)
        app.state.attachments = Attachments(store, attachment_records, reader_pool, settings)
        documents = ConversationDocuments(attachment_records, settings.attachment_inline_tokens)
        manager = RunManager(
            store, registry, catalog, settings, metrics, replicas, meter, documents=documents
        )
        interrupted = await manager.recover_orphans()
        if interrupted:
            log.warning("marked %d run(s) left running by a stopped process as interrupted", interrupted)
        # Wrong keys per client address, in a bucket of their own (shared through Redis like the limit).
        failures = rate_limiter(
            settings.auth_failures_per_minute,
            settings.redis_url,
            f"{settings.redis_key_prefix}:auth-failures",
        )
        auth = Authenticator(
            store, enabled=settings.auth_enabled, cache_s=settings.auth_cache_s, failures=failures
        )
        limiter = rate_limiter(settings.rate_limit_per_minute, settings.redis_url, settings.redis_key_prefix)
        services = Services(settings, store, registry, manager, catalog, http, metrics, auth, limiter, meter)
        app.state.services = services
        model_engine = supervisor_for(configs, settings, registry)
        if model_engine is not None:
            await model_engine.start()  # returns at once; `local` shows as starting until it is ready
        services.engine = model_engine
        background = [
            asyncio.create_task(registry.poll_forever(settings.health_interval_s)),
            asyncio.create_task(manager.heartbeat_forever()),
            asyncio.create_task(manager.flush_forever()),
            asyncio.create_task(manager.store_pending_forever()),
            # Tool calls that waited too long are denied; decided runs nobody took up resume here.
            asyncio.create_task(ApprovalSweeper(store, manager.resume_paused).sweep_forever()),
        ]
        # Everything built so far (Gradio and its imports alone are millions of objects) lives as long
        # as the app: out of the collector's sight, full collections stop pausing every stream.
        gc.freeze()
        try:
            async with mcp.run():  # the MCP endpoint's requests run in its task group
                yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if model_engine is not None:
                await model_engine.stop()
            await manager.shutdown(SHUTDOWN_GRACE_S)
            await catalog.close()  # after the runs: they may still be calling MCP tools
            await tool_pool.close()  # after the runs: they may still be using the tools
            await reader_pool.close()
            await meter.aclose()
            await http.close()
            await limiter.aclose()
            await auth.aclose()
            await engine.dispose()

    app = FastAPI(
        title="chatstack",
        version="0.1.0",
        description="Streaming agent API with SQL history, and an OpenAI-compatible endpoint.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        larger=[(attachments.UPLOAD_PATH_PATTERN, attachments.upload_body_limit(settings))],
    )
    # Added last, so outermost: it sees every response, including the limit's 413.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    for router in (
        health.router,
        backends.router,
        conversations.router,
        runs.router,
        openai.router,
        usage.router,
        approvals.router,
        search.router,
        tools.router,
        attachments.router,
    ):
        app.include_router(router)
    app.router.routes.append(Route(MCP_PATH, mcp, include_in_schema=False))  # MCP (app/mcp_endpoint.py)
    _json_404_below(app, "/api", "/v1")
    if settings.ui:
        # Imported only when wanted: Gradio takes seconds to import.
        from ui.mount import mount_ui

        guard: list[Middleware] = []
        if settings.auth_enabled:
            # With API keys on, every route of the UI that takes data wants one too (app/ui_guard.py).
            from app import ui_guard

            app.include_router(ui_guard.router)
            guard = [Middleware(ui_guard.UiGuard, parent=app)]
        mount_ui(
            app,
            api_url=settings.internal_api_url(),
            auth_required=settings.auth_enabled,
            stream_read_timeout_s=max(60.0, settings.sse_ping_s * 4),
            middleware=guard,
        )
    return app


def _json_404_below(app: FastAPI, *prefixes: str) -> None:
    """Unknown API paths answer with the API's JSON 404, not with the UI mounted at `/`."""

    async def not_found(path: str) -> None:
        raise NotFound(f"no such endpoint: {path}")

    for prefix in prefixes:
        app.add_api_route(
            f"{prefix}/{{path:path}}",
            not_found,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            include_in_schema=False,
        )
