"""The backend selector: labels with health and tool support, `auto` when offered, the status line."""

from __future__ import annotations

from ui.api_models import AutoRouting, Backend, BackendList
from ui.backend_menu import backend_choices, backend_info, resolve_choice


def listing(auto: bool = False) -> BackendList:
    return BackendList(
        items=[
            Backend(name="fast", supports_tools=True, health="up", tool_mode="native", role="throughput"),
            Backend(name="old", supports_tools=False, health="down", tool_mode="none"),
            Backend(name="new", supports_tools=True, health="unknown", tool_mode="prompted", role="tools"),
        ],
        default="fast",
        auto=AutoRouting(tools="new", throughput="fast") if auto else None,
    )


def test_backend_labels_show_health_and_tools() -> None:
    assert backend_choices(listing()) == [
        ("fast · up · tools", "fast"),
        ("old · down · no tools", "old"),
        ("new · checking · tools", "new"),
    ]


def test_auto_is_offered_first_when_the_server_has_both_roles() -> None:
    choices = backend_choices(listing(auto=True))
    assert choices[0] == ("auto (tools: new, answers: fast)", "auto")
    assert len(choices) == 4


def test_a_choice_the_server_no_longer_offers_falls_back_to_the_default() -> None:
    assert resolve_choice(listing(), "old") == "old"
    assert resolve_choice(listing(), "removed") == "fast"
    assert resolve_choice(listing(), None) == "fast"
    assert resolve_choice(listing(), "auto") == "fast"
    assert resolve_choice(listing(auto=True), "auto") == "auto"


def test_backend_info_escapes_html() -> None:
    backends = BackendList(
        items=[Backend(name="x", model="<m>", health="down", health_error='refused "x"')], default="x"
    )
    info = backend_info(backends, "x")
    assert "&lt;m&gt;" in info
    assert "Offline" in info
    assert "&quot;x&quot;" in info
    assert "No backend" in backend_info(None, None)
    assert "No backend" in backend_info(backends, "gone")


def test_auto_info_names_both_backends_and_takes_the_worse_health() -> None:
    info = backend_info(listing(auto=True), "auto")
    assert "tool steps on new · answers on fast" in info
    assert "Checking" in info  # `new` has not been checked yet
    assert 'title="new: checking; fast: up"' in info
