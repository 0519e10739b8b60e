"""The UI mounted at `/` next to the API, in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.main import create_app
from app.settings import Settings


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123"),
        ("0.0.0.0", "http://127.0.0.1:8123"),
        ("::", "http://[::1]:8123"),
        ("[::1]", "http://[::1]:8123"),
        ("chat.internal", "http://chat.internal:8123"),
    ],
)
def test_the_ui_calls_the_api_on_its_own_port(host: str, expected: str) -> None:
    assert Settings(host=host, port=8123).internal_api_url() == expected


def settings(tmp_path: Path, auth: Literal["on", "off"] = "off") -> Settings:
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        'backends:\n  - {name: here, base_url: "http://127.0.0.1:1/v1", model: m, tool_mode: none}\n'
    )
    return Settings(
        backends_file=backends, default_backend="here", data_dir=tmp_path, database_url="", auth=auth
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(tmp_path))) as test_client:
        yield test_client


def initial_props(client: TestClient) -> dict[str, dict[str, Any]]:
    """Each component's starting properties (from the page's config), by elem_id."""
    components = client.get("/config").json()["components"]
    return {c["props"]["elem_id"]: c["props"] for c in components if c.get("props", {}).get("elem_id")}


def test_api_routes_still_answer_next_to_the_page(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/backends").json()["default"] == "here"
    assert client.get("/openapi.json").status_code == 200
    missing = client.get("/api/conversations/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_the_page_is_served_at_the_root(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert client.get("/config").json()["title"] == "chatstack"


def test_many_users_can_chat_at_once(client: TestClient) -> None:
    # Gradio's default of one event at a time per listener would make users wait for each other.
    [mount] = [r for r in client.app.routes if isinstance(r, Mount) and r.path == ""]  # type: ignore[attr-defined]
    blocks = mount.app.get_blocks()  # type: ignore[attr-defined]
    assert blocks._queue.default_concurrency_limit is None
    assert {fn.concurrency_limit for fn in blocks.fns.values()} == {"default"}


def test_without_api_keys_the_chat_shows_at_once(client: TestClient) -> None:
    props = initial_props(client)
    assert props["cs-main"]["visible"] is True
    assert props["cs-sign-in"]["visible"] is False
    assert props["cs-account-row"]["visible"] is False  # no one to sign out


def test_with_api_keys_the_page_waits_for_a_key(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path, auth="on"))) as keyed:
        # The page itself is public; everything it shows comes from the API, which wants a key.
        assert keyed.get("/").status_code == 200
        assert keyed.get("/api/conversations").status_code == 401
        props = initial_props(keyed)
    # Neither the chat nor the sign-in view until the page load has checked the kept key.
    assert props["cs-main"]["visible"] is False
    assert props["cs-sidebar"]["visible"] is False
    assert props["cs-sign-in"]["visible"] is False
    assert props["cs-account-row"]["visible"] is True
    assert props["cs-key"]["type"] == "password"


def test_the_page_loads_no_remote_image_and_submits_no_form(client: TestClient) -> None:
    # The browser's own second line behind ui/markdown.py: whatever an answer manages to put on the
    # page, no image (from a tag or from CSS) is fetched from another host, and no form is sent.
    policy = client.get("/").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["form-action"] == "'none'"
    assert directives["frame-src"] == "'none'"
    assert directives["base-uri"] == "'self'"


def test_without_api_keys_the_ui_is_open_as_before(client: TestClient) -> None:
    # No guard and no session routes with authentication off.
    assert client.get("/gradio_api/queue/status").status_code == 200
    assert client.get("/ui/session").status_code == 404
