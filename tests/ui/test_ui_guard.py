"""With API keys on, every route of the UI that takes data or serves files wants a key, over HTTP
against the real app (`chatstack serve` with CHATSTACK_AUTH=on), and counts against the rate limit.

The routes are enumerated from the installed Gradio, so that one a later version adds is tested too.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import _IncludedRouter
from starlette.routing import Match, Mount, WebSocketRoute

from app.main import create_app
from app.settings import Settings
from app.ui_guard import COOKIE, is_public
from tests.ui.conftest import RATE_LIMIT_PER_MINUTE, Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(method, path) of every route of the Gradio app as the UI mounts it with API keys on."""
    workdir = tmp_path_factory.mktemp("routes")
    backends = workdir / "backends.yaml"
    backends.write_text('backends:\n  - {name: here, base_url: "http://127.0.0.1:1/v1", model: m}\n')
    settings = Settings(
        backends_file=backends, default_backend="here", data_dir=workdir, database_url="", auth="on"
    )
    app = create_app(settings)
    [mount] = [r for r in app.routes if isinstance(r, Mount) and r.path == ""]
    parent = [r for r in app.routes if r is not mount]
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, _IncludedRouter):
                walk(route.effective_candidates())
            elif isinstance(route, Mount):
                found.append(("MOUNT", route.path))
            elif isinstance(route, WebSocketRoute):
                found.append(("WEBSOCKET", route.path))
            else:
                found.extend((method, route.path) for method in sorted(getattr(route, "methods", None) or []))

    walk(mount.app.routes)  # type: ignore[attr-defined]
    # Those the app itself answers first (its own /openapi.json) never reach Gradio.
    return [
        (method, path)
        for method, path in found
        if not any(r.matches(scope(method, concrete(path)))[0] == Match.FULL for r in parent)
    ]


def concrete(path: str) -> str:
    """A path of the route with its parameters filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": ""}


@pytest.fixture(scope="module")
def key(auth_stack: Stack) -> str:
    return auth_stack.create_user(f"guard-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def anonymous(auth_stack: Stack) -> Iterator[httpx.Client]:
    with auth_stack.api() as client:
        yield client


def assert_refused(response: httpx.Response, code: str = "not_signed_in") -> None:
    """A JSON 401 with `code`; from Gradio's routes also with the `detail` Gradio's page shows."""
    assert response.status_code == 401, (response.request.method, response.request.url, response.text[:200])
    if response.request.method != "HEAD":
        body = response.json()
        assert body["error"]["code"] == code
        assert body["error"]["type"] == "invalid_request_error"
        if response.request.url.path.startswith(("/gradio_api/", "/config", "/login")):
            assert body["detail"] == body["error"]["message"]


def test_the_routes_are_known(routes: list[tuple[str, str]]) -> None:
    guarded = [(m, p) for m, p in routes if not is_public(scope(m, concrete(p)))]
    # The ones the issue names, among many others.
    for route in [
        ("POST", "/gradio_api/upload"),
        ("GET", "/gradio_api/file={path_or_url:path}"),
        ("POST", "/gradio_api/queue/join"),
        ("GET", "/gradio_api/queue/data"),
        ("POST", "/gradio_api/run/{api_name}"),
        ("POST", "/gradio_api/call/{api_name}"),
        ("POST", "/gradio_api/component_server"),
        ("POST", "/gradio_api/cancel"),
        ("POST", "/login"),
    ]:
        assert route in guarded, route
    # Nothing that takes data is public.
    assert all(method in ("GET", "HEAD") for method, path in routes if (method, path) not in guarded)
    assert not [r for r in routes if r[0] in ("MOUNT", "WEBSOCKET")], "a route kind the guard test misses"


def test_every_gradio_route_that_takes_data_or_serves_files_wants_a_key(
    routes: list[tuple[str, str]], anonymous: httpx.Client
) -> None:
    refused = 0
    for method, path in routes:
        target = concrete(path)
        if is_public(scope(method, target)):
            continue
        response = anonymous.request(method, target, content=b'{"data": []}')
        assert_refused(response)
        refused += 1
    assert refused >= 50


def test_the_page_itself_and_its_files_stay_public(anonymous: httpx.Client) -> None:
    page = anonymous.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert anonymous.get("/config").json()["title"] == "chatstack"
    assert anonymous.get("/gradio_api/info").status_code == 200
    script = re.search(r'src="(\./assets/[^"]+\.js)"', page.text)
    assert script is not None
    assert anonymous.get(script.group(1)).status_code == 200


def test_a_wrong_key_is_refused_like_a_missing_one(anonymous: httpx.Client) -> None:
    response = anonymous.post("/gradio_api/upload", headers={"Authorization": "Bearer cs_nobody"})
    assert_refused(response, "unauthorized")
    response = anonymous.post("/gradio_api/upload", headers={"Cookie": f"{COOKIE}=cs_nobody"})
    assert_refused(response, "unauthorized")


def uploaded_files(stack: Stack, marker: bytes) -> list[Path]:
    folder = Path(stack.env["GRADIO_TEMP_DIR"])
    return [p for p in folder.rglob("*") if p.is_file() and marker in p.read_bytes()]


def upload(client: httpx.Client, marker: bytes, **kwargs: Any) -> httpx.Response:
    return client.post("/gradio_api/upload", files={"files": ("note.txt", marker, "text/plain")}, **kwargs)


def test_an_upload_without_a_key_stores_nothing_and_one_with_a_key_works(
    auth_stack: Stack, anonymous: httpx.Client, key: str
) -> None:
    marker = f"upload-{uuid.uuid4().hex}".encode()
    assert_refused(upload(anonymous, marker))
    assert uploaded_files(auth_stack, marker) == []

    with auth_stack.api(key) as api:
        response = upload(api, marker)
        assert response.status_code == 200, response.text
        [path] = response.json()
        assert uploaded_files(auth_stack, marker)
        fetched = api.get(f"/gradio_api/file={path}")
        assert fetched.status_code == 200
        assert fetched.content == marker
    # Fetching it back wants a key too.
    assert_refused(anonymous.get(f"/gradio_api/file={path}"))


def test_signing_in_gives_an_httponly_strict_cookie_that_opens_the_ui(auth_stack: Stack, key: str) -> None:
    with auth_stack.api() as browser:
        assert_refused(browser.get("/ui/session"))
        started = browser.post("/ui/session", headers={"Authorization": f"Bearer {key}"})
        assert started.status_code == 200, started.text
        assert started.json()["key_prefix"] == key[:10]
        cookie = started.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={key};")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/" in cookie

        # The browser sends it with every request of the page: Gradio's routes let it in.
        assert browser.get("/ui/session").status_code == 200
        marker = f"cookie-{uuid.uuid4().hex}".encode()
        assert upload(browser, marker).status_code == 200
        assert browser.get("/gradio_api/queue/status").status_code == 200

        ended = browser.delete("/ui/session")
        assert ended.status_code == 204
        assert (
            'chatstack_session=""' in ended.headers["set-cookie"]
            or "Max-Age=0" in ended.headers["set-cookie"]
        )
        assert_refused(browser.get("/gradio_api/queue/status"))
        assert_refused(upload(browser, marker))


def test_signing_in_with_a_wrong_key_sets_no_cookie(auth_stack: Stack) -> None:
    with auth_stack.api() as browser:
        refused = browser.post("/ui/session", headers={"Authorization": "Bearer cs_wrong"})
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        # A form on another site cannot send a header; a key in the body is not read.
        assert browser.post("/ui/session", data={"key": "cs_wrong"}).status_code == 401


def test_a_revoked_key_ends_the_session(auth_stack: Stack) -> None:
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    key = auth_stack.create_user(name)
    with auth_stack.api() as browser:
        assert browser.post("/ui/session", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert browser.get("/gradio_api/queue/status").status_code == 200
        auth_stack.chatstack("users", "revoke", name)
        assert_refused(browser.get("/gradio_api/queue/status"), "unauthorized")
        checked = browser.get("/ui/session")
        assert_refused(checked, "key_not_accepted")
        assert "Max-Age=0" in checked.headers["set-cookie"]  # the browser forgets it


def event_of(config: dict[str, Any], elem_id: str, trigger: str) -> int:
    [target] = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    [fn] = [
        d["id"]
        for d in config["dependencies"]
        if [target, trigger] in d["targets"] and d["backend_fn"] and d.get("trigger_after") is None
    ]
    return int(fn)


def run_event(client: httpx.Client, fn_index: int, data: list[Any]) -> list[Any]:
    """One event through Gradio's queue, as the page runs it: join, then read the event stream."""
    session = uuid.uuid4().hex
    joined = client.post(
        "/gradio_api/queue/join",
        json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None},
    )
    assert joined.status_code == 200, joined.text
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                assert message["success"], message
                output: list[Any] = message["output"]["data"]
                return output
    raise AssertionError("the event never completed")


def test_an_event_runs_with_the_key_and_the_handler_acts_for_its_user(
    auth_stack: Stack, anonymous: httpx.Client, key: str
) -> None:
    config = anonymous.get("/config").json()
    new_chat = event_of(config, "cs-new-chat", "click")
    assert_refused(
        anonymous.post(
            "/gradio_api/queue/join", json={"data": [None], "fn_index": new_chat, "session_hash": "s1"}
        )
    )
    with auth_stack.api(key) as api:
        updates = run_event(api, new_chat, [None])
    # The handler called the API with the same key: the chat shows, not the sign-in view.
    shown = [u for u in updates if isinstance(u, dict) and u.get("value") == "New chat"]
    assert shown, updates
    assert not [u for u in updates if isinstance(u, str) and "no longer accepted" in u]


def test_the_ui_counts_against_the_same_rate_limit_as_the_api(limited_stack: Stack) -> None:
    key = limited_stack.create_user(f"limited-{uuid.uuid4().hex[:8]}")
    with limited_stack.api(key) as api:
        statuses = [api.get("/gradio_api/queue/status").status_code for _ in range(RATE_LIMIT_PER_MINUTE + 2)]
        assert statuses[:RATE_LIMIT_PER_MINUTE] == [200] * RATE_LIMIT_PER_MINUTE
        assert 429 in statuses[RATE_LIMIT_PER_MINUTE:]
        limited = api.get("/gradio_api/queue/status")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # The same bucket: the API is refused too, and so is the page's session check.
        assert api.get("/api/backends").status_code == 429
        assert api.get("/ui/session", headers={"Cookie": f"{COOKIE}={key}"}).status_code == 429


def test_the_api_counts_against_the_uis_limit_too(limited_stack: Stack) -> None:
    key = limited_stack.create_user(f"limited-{uuid.uuid4().hex[:8]}")
    with limited_stack.api(key) as api:
        for _ in range(RATE_LIMIT_PER_MINUTE):
            assert api.get("/api/backends").status_code == 200
        assert api.get("/gradio_api/queue/status").status_code == 429
        marker = f"limited-{uuid.uuid4().hex}".encode()
        assert upload(api, marker).status_code == 429
