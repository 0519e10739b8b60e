"""Starts the embedded model's engine with the app when the backends file has a backend of kind
`embedded`."""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit

from backends.client.config import BackendConfig
from backends.client.registry import BackendRegistry
from backends.local.engine import EngineSupervisor, engine_config
from backends.local.settings import LocalSettings

log = logging.getLogger(__name__)


def supervisor_for(
    configs: list[BackendConfig], settings: LocalSettings, registry: BackendRegistry | None = None
) -> EngineSupervisor | None:
    """A supervisor for the backend of kind `embedded`, configured from it, or None if there is none.

    With `registry`, that backend's health is checked again as soon as the engine answers, before the
    supervisor says ready: it then goes from starting straight to up.

    Port and served model name come from the backends file, so the engine and the backend entry that
    talks to it can never disagree.
    """
    local = embedded_backend(configs)
    if local is None:
        return None
    url = urlsplit(local.base_url)
    overrides: dict[str, object] = {"served_model_name": local.model}
    if url.port:
        overrides["engine_port"] = url.port
    if url.hostname:
        overrides["engine_host"] = url.hostname
    try:
        on_ready = functools.partial(registry.check, local.name) if registry is not None else None
        return EngineSupervisor(engine_config(settings.model_copy(update=overrides)), on_ready)
    except Exception as exc:  # a bad model setting must not stop the API from serving the other backends
        log.error("the embedded model cannot start: %s", exc)
        return None


def embedded_backend(configs: list[BackendConfig]) -> BackendConfig | None:
    return next((c for c in configs if c.kind == "embedded"), None)
