"""The `chatstack` command."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from app.users_cli import users_app
from backends.client.config import BackendConfigError
from backends.emulator.cli import emulate
from backends.local.cli import model_app
from bench.cli import bench_app
from tools.tools_file import ToolsFileError

cli = typer.Typer(
    no_args_is_help=True, add_completion=False, help="chatstack: a self-hosted agentic chat stack."
)


@cli.callback()
def _root() -> None:
    """chatstack: a self-hosted agentic chat stack."""


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
    with_nginx: Annotated[
        bool, typer.Option("--with-nginx", help="Run Debian's nginx in front (CHATSTACK_NGINX_HOST/_PORT).")
    ] = False,
    engine: Annotated[
        Literal["vllm", "ray"] | None,
        typer.Option(
            help="What hosts the embedded model: vLLM's server, or a Ray Serve app on this CPU "
            "(default CHATSTACK_ENGINE, else vllm)."
        ),
    ] = None,
) -> None:
    """Run the API server and the browser chat (and nginx in front, with --with-nginx)."""
    import uvicorn

    from app.http_protocol import BoundedHttpToolsProtocol
    from app.log_context import configure_logging
    from app.main import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port, "engine": engine}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if (
        with_nginx
        and settings.auth == "auto"
        and settings.nginx_host not in ("127.0.0.1", "localhost", "::1")
    ):
        # The app itself listens on loopback behind nginx; what faces the network is nginx.
        settings = settings.model_copy(update={"auth": "on"})
    configure_logging(settings.log_level, json_logs=settings.json_logs)
    try:
        app = create_app(settings)
    except (BackendConfigError, ToolsFileError) as exc:
        typer.echo(f"chatstack: {exc}", err=True)
        raise typer.Exit(2) from exc
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools' speed, with request heads bounded (uvicorn bounds them only for h11).
        http=BoundedHttpToolsProtocol,
        # At TRACE uvicorn logs every ASGI message, request headers (API keys) included.
        log_level="debug" if settings.log_level.lower() == "trace" else settings.log_level.lower(),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        access_log=False,  # chatstack logs each request itself, as JSON with its request id
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    if not with_nginx:
        uvicorn.Server(config).run()
        return

    from app.nginx_config import NginxError, ProxyOptions
    from app.nginx_runner import run_behind_nginx
    from app.routes.attachments import upload_body_limit

    upstream_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    try:
        options = ProxyOptions(
            listen_host=settings.nginx_host,
            listen_port=settings.nginx_port,
            upstreams=(f"{upstream_host}:{settings.port}",),
            rate_per_s=settings.nginx_rate_per_s,
            burst=settings.nginx_burst,
            body_limit=f"{max(1, settings.max_body_bytes // 1024)}k",
            upload_limit=f"{upload_body_limit(settings) // 1024}k",
        )
        run_behind_nginx(config, options)
    except NginxError as exc:
        typer.echo(f"chatstack: {exc}", err=True)
        raise typer.Exit(2) from exc


cli.add_typer(users_app, name="users")
cli.add_typer(bench_app, name="bench")
cli.add_typer(model_app, name="model")
cli.command(help="Serve an OpenAI-compatible emulator of a GPU deployment (see docs/emulator.md).")(emulate)


def main() -> None:
    cli()
