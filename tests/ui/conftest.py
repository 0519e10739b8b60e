"""Fixtures for the browser tests: the real app and its scripted backend as subprocesses, a local
SearxNG-compatible search server, and headless Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.processes import CHROMIUM, chromium, free_port

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "ui"
CHATSTACK = str(Path(sys.executable).with_name("chatstack"))
COLD_START_S = 6.0
SLOW_SEARCH_S = 3.0
"""Searches whose query contains "slow" take this long, so a test can see the step while it runs."""


class _SearchHandler(BaseHTTPRequestHandler):
    """GET /search?q=...&format=json, answered like SearxNG's JSON API."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query).get("q", [""])[0]
        if "slow" in query:
            time.sleep(SLOW_SEARCH_S)
        slug = "-".join(query.split()) or "empty"
        body = json.dumps(
            {
                "results": [
                    {
                        "title": f"Guide to {query}",
                        "url": f"https://docs.example.com/{slug}",
                        "content": f"Everything about {query}.",
                    },
                    {"title": "Second source", "url": "https://example.org/notes", "content": "More notes."},
                ]
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def search_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _SearchHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early ({process.returncode}); see {log}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s; see {log}")


@dataclass(frozen=True)
class Stack:
    url: str
    """The app: UI at `/`, API under `/api`."""
    env: dict[str, str]
    """The app's environment, for the `chatstack` command line against the same database."""

    def api(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=30, trust_env=False, headers=headers)

    def chatstack(self, *args: str) -> str:
        """Run `chatstack ARGS...` as an operator would, and return its output."""
        done = subprocess.run(
            [CHATSTACK, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout

    def create_user(self, name: str) -> str:
        """A new user's API key (the last line `chatstack users create` prints)."""
        return self.chatstack("users", "create", name).strip().splitlines()[-1]


@pytest.fixture(scope="session")
def scripted_backend() -> Iterator[str]:
    """The scripted OpenAI-compatible backend (see backends/scripted/script.py), shared by the apps."""
    log = OUTPUT / "logs" / "scripted-backend.log"
    port = free_port()
    backend = _start(
        [sys.executable, "-m", "backends.scripted.server", "--port", str(port), "--token-delay-ms", "5"], log
    )
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}/health", backend, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(backend)


@pytest.fixture(scope="session")
def serverless_backend() -> Iterator[str]:
    """A scripted backend that scales to zero: its replica takes `COLD_START_S` to start."""
    log = OUTPUT / "logs" / "serverless-backend.log"
    port = free_port()
    args = ["--port", str(port), "--token-delay-ms", "5", "--cold-start-s", str(COLD_START_S)]
    backend = _start([sys.executable, "-m", "backends.scripted.server", *args], log)
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}/health", backend, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(backend)


def _serve(workdir: Path, name: str, backends_yaml: str, search_url: str, **env: str) -> Iterator[Stack]:
    """`chatstack serve` on a free port with its own data directory, until the generator is closed."""
    backends_file = workdir / "backends.yaml"
    backends_file.write_text(backends_yaml)
    app_env = {
        **os.environ,
        "CHATSTACK_BACKENDS_FILE": str(backends_file),
        "CHATSTACK_DATA_DIR": str(workdir / "data"),
        "CHATSTACK_DATABASE_URL": "",
        "CHATSTACK_SEARCH_PROVIDER": "searxng",
        "CHATSTACK_SEARXNG_URL": search_url,
        "CHATSTACK_HEALTH_INTERVAL_S": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **env,
    }
    port = free_port()
    log = OUTPUT / "logs" / f"{name}.log"
    app = _start([CHATSTACK, "serve", "--port", str(port)], log, app_env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(f"{url}/healthz", app, log)
        yield Stack(url, app_env)
    finally:
        _stop(app)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    search_server: str,
    scripted_backend: str,
    serverless_backend: str,
) -> Iterator[Stack]:
    """The real app (`chatstack serve`) with the scripted backend, an unreachable one and one that
    scales to zero; no sign-in."""
    backends = (
        "backends:\n"
        f'  - {{name: scripted, base_url: "{scripted_backend}", model: scripted,'
        ' tool_mode: native, description: "Scripted test backend"}\n'
        '  - {name: offline, base_url: "http://127.0.0.1:1/v1", model: nothing, tool_mode: none,'
        ' description: "Nothing listens here"}\n'
        f'  - {{name: serverless, base_url: "{serverless_backend}", model: scripted, tool_mode: native,'
        " cold_start_timeout_s: 120}\n"
    )
    yield from _serve(
        tmp_path_factory.mktemp("ui-stack"),
        "app",
        backends,
        search_server,
        CHATSTACK_DEFAULT_BACKEND="scripted",
    )


@pytest.fixture(scope="session")
def auth_stack(
    tmp_path_factory: pytest.TempPathFactory, search_server: str, scripted_backend: str
) -> Iterator[Stack]:
    """The app with API keys required, and two backends with roles, so that `auto` is offered."""
    backends = (
        "backends:\n"
        f'  - {{name: scripted, base_url: "{scripted_backend}", model: scripted, tool_mode: native,'
        " role: tools}\n"
        f'  - {{name: scripted-fast, base_url: "{scripted_backend}", model: scripted, tool_mode: native,'
        " role: throughput}\n"
    )
    yield from _serve(
        tmp_path_factory.mktemp("ui-auth-stack"),
        "app-auth",
        backends,
        search_server,
        CHATSTACK_DEFAULT_BACKEND="scripted",
        CHATSTACK_AUTH="on",
        # Keys are checked on every request, so a revoked key stops working at once.
        CHATSTACK_AUTH_CACHE_S="0",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: while Playwright's sync API is open, its event loop counts as running on this
    thread, and async tests run after it (in other modules) could not start their own."""
    pytest.importorskip("playwright.sync_api")
    executable = CHROMIUM if CHROMIUM.exists() else None
    if executable is None:
        found = shutil.which("chromium")
        if found is None:
            pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
        executable = Path(found)
    with chromium(executable) as browser:
        yield browser


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser tab (its own storage) at desktop size."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot under test-output/ui/ (git-ignored) for a human to look at."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")
    return path
