"""Starts the embedded model's engine with the app when the backends file lists a `local` backend."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from backends.config import BackendConfig
from backends.local.engine import EngineSupervisor, engine_config
from backends.local.settings import LocalSettings

log = logging.getLogger(__name__)

LOCAL_BACKEND = "local"


def supervisor_for(configs: list[BackendConfig], settings: LocalSettings) -> EngineSupervisor | None:
    """A supervisor for the `local` backend, configured from it, or None if there is no such backend.

    Port and served model name come from the backends file, so the engine and the backend entry that
    talks to it can never disagree.
    """
    local = next((c for c in configs if c.name == LOCAL_BACKEND), None)
    if local is None:
        return None
    url = urlsplit(local.base_url)
    overrides: dict[str, object] = {"served_model_name": local.model}
    if url.port:
        overrides["engine_port"] = url.port
    if url.hostname:
        overrides["engine_host"] = url.hostname
    try:
        return EngineSupervisor(engine_config(settings.model_copy(update=overrides)))
    except Exception as exc:  # a bad model setting must not stop the API from serving the other backends
        log.error("the embedded model cannot start: %s", exc)
        return None
