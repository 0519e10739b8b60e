"""The backend selector: its choices (each backend, and `auto` when the server offers it) and the
one-line status of the chosen one."""

from __future__ import annotations

import html
from collections.abc import Mapping

from ui.api_models import AUTO_BACKEND, AutoRouting, Backend, BackendHealth, BackendList

_HEALTH_WORDS: Mapping[BackendHealth, str] = {
    "up": "up",
    "down": "down",
    "unknown": "checking",
    "starting": "starting",
}
_HEALTH_STATUS: Mapping[BackendHealth, str] = {
    "up": "Online",
    "down": "Offline",
    "unknown": "Checking…",
    "starting": "Starting…",
}
_TOOL_MODES: Mapping[str, str] = {
    "native": "native tool calling",
    "prompted": "tools via prompt",
    "none": "no tools",
}


def backend_label(backend: Backend) -> str:
    tools = "tools" if backend.supports_tools else "no tools"
    return f"{backend.name} · {_HEALTH_WORDS[backend.health]} · {tools}"


def auto_label(auto: AutoRouting) -> str:
    return f"auto (tools: {auto.tools}, answers: {auto.throughput})"


def backend_choices(listing: BackendList) -> list[tuple[str, str]]:
    """(label, value) for the selector; `auto` first when offered, as it uses the best of two."""
    choices = [(backend_label(b), b.name) for b in listing.items]
    if listing.auto is not None:
        choices.insert(0, (auto_label(listing.auto), AUTO_BACKEND))
    return choices


def is_choice(listing: BackendList, name: str | None) -> bool:
    if name == AUTO_BACKEND:
        return listing.auto is not None
    return any(b.name == name for b in listing.items)


def resolve_choice(listing: BackendList, name: str | None) -> str:
    """`name` if the server offers it, else its default (a conversation may remember a backend that
    was since removed from the backends file, or `auto` after a role was dropped)."""
    return name if name and is_choice(listing, name) else listing.default


def find_backend(listing: BackendList, name: str | None) -> Backend | None:
    return next((b for b in listing.items if b.name == name), None)


def backend_info(listing: BackendList | None, choice: str | None) -> str:
    """A one-line status of the chosen backend, or of both backends behind `auto` (HTML)."""
    if listing is not None and choice == AUTO_BACKEND and listing.auto is not None:
        return _auto_info(listing, listing.auto)
    backend = find_backend(listing, choice) if listing is not None else None
    if backend is None:
        return '<div class="cs-backend-info">No backend selected</div>'
    details = [backend.model, _TOOL_MODES[backend.tool_mode]]
    if backend.health == "up" and backend.health_latency_ms is not None:
        details.append(f"{backend.health_latency_ms:.0f} ms")
    return _info_line(backend.health, details, backend.health_error or backend.description or "")


def _auto_info(listing: BackendList, auto: AutoRouting) -> str:
    pair = [find_backend(listing, auto.tools), find_backend(listing, auto.throughput)]
    healths = [b.health if b is not None else "unknown" for b in pair]
    # Both must answer for every question to work: the worse of the two is the status.
    worst = next((h for h in ("down", "starting", "unknown") if h in healths), "up")
    health: BackendHealth = worst  # type: ignore[assignment]
    details = [f"tool steps on {auto.tools}", f"answers on {auto.throughput}"]
    title = "; ".join(
        f"{b.name}: {_HEALTH_WORDS[b.health]}" + (f" ({b.health_error})" if b.health_error else "")
        for b in pair
        if b is not None
    )
    return _info_line(health, details, title)


def _info_line(health: BackendHealth, details: list[str], title: str) -> str:
    text = " · ".join(html.escape(d) for d in details if d)
    return (
        f'<div class="cs-backend-info" title="{html.escape(title, quote=True)}">'
        f'<span class="cs-dot cs-{health}"></span>'
        f'<span class="cs-health">{_HEALTH_STATUS[health]}</span> '
        f'<span class="cs-details">{text}</span></div>'
    )
