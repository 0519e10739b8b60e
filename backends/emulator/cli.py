"""`chatstack emulate`: serve an emulated GPU deployment (timing only, no model) for load tests."""

from __future__ import annotations

from typing import Annotated

import typer

from backends.emulator.profiles import PROFILES, UnknownProfileError


def emulate(
    profile: Annotated[str, typer.Option(help=f"Deployment to emulate: {', '.join(sorted(PROFILES))}.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8300,
    seed: Annotated[int, typer.Option(help="Seed for the generated filler text.")] = 0,
    time_scale: Annotated[
        float, typer.Option(help="Multiply every emulated duration by this (0.1 runs ten times faster).")
    ] = 1.0,
) -> None:
    """Run an OpenAI-compatible server that behaves, in time, like a GPU deployment (see docs/emulator.md)."""
    import uvicorn

    from backends.emulator.app import create_app

    if time_scale <= 0:
        raise typer.BadParameter("must be positive", param_hint="--time-scale")
    try:
        app = create_app(profile, seed=seed, time_scale=time_scale)
    except UnknownProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from exc
    typer.echo(f"emulating {profile} on http://{host}:{port}/v1 (time scale {time_scale})", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        backlog=4096,
        timeout_keep_alive=30,
    )
