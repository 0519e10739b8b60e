"""Fixtures for the browser tests: the real app and its scripted backend as subprocesses, a local
SearxNG-compatible search server, and headless Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import CHROMIUM, chromium, free_port, start_process, start_python_server
from tests.support.search_servers import SearchResult, searxng_app, serve_on_thread

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "ui"
LOGS = OUTPUT / "logs"
CHATSTACK = str(Path(sys.executable).with_name("chatstack"))
COLD_START_S = 6.0
RATE_LIMIT_PER_MINUTE = 6
"""Of `limited_stack`: a refill of one request every 10 s, so a test's requests do not refill it."""
SLOW_SEARCH_S = 3.0
"""Searches whose query contains "slow" take this long, so a test can see the step while it runs."""


async def _search_answer(query: str) -> list[SearchResult]:
    if "slow" in query:
        await asyncio.sleep(SLOW_SEARCH_S)
    slug = "-".join(query.split()) or "empty"
    return [
        {
            "title": f"Guide to {query}",
            "url": f"https://docs.example.com/{slug}",
            "content": f"Everything about {query}.",
        },
        {"title": "Second source", "url": "https://example.org/notes", "content": "More notes."},
    ]


@pytest.fixture(scope="session")
def search_server() -> Iterator[str]:
    with serve_on_thread(searxng_app(_search_answer)) as url:
        yield url


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
    backend = start_python_server(
        "backends.scripted.server", ["--token-delay-ms", "5"], LOGS, "scripted-backend"
    )
    yield backend.url
    backend.stop()


@pytest.fixture(scope="session")
def serverless_backend() -> Iterator[str]:
    """A scripted backend that scales to zero: its replica takes `COLD_START_S` to start."""
    args = ["--token-delay-ms", "5", "--cold-start-s", str(COLD_START_S)]
    backend = start_python_server("backends.scripted.server", args, LOGS, "serverless-backend")
    yield backend.url
    backend.stop()


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
    url = f"http://127.0.0.1:{port}"
    app = start_process(
        [CHATSTACK, "serve", "--port", str(port)],
        health_url=f"{url}/healthz",
        base_url=url,
        env=app_env,
        log_path=LOGS / f"{name}.log",
    )
    try:
        yield Stack(url, app_env)
    finally:
        app.stop()


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
    workdir = tmp_path_factory.mktemp("ui-auth-stack")
    yield from _serve(
        workdir,
        "app-auth",
        backends,
        search_server,
        CHATSTACK_DEFAULT_BACKEND="scripted",
        CHATSTACK_AUTH="on",
        # Keys are checked on every request, so a revoked key stops working at once.
        CHATSTACK_AUTH_CACHE_S="0",
        # Where Gradio stores uploads, for tests to look.
        GRADIO_TEMP_DIR=str(workdir / "gradio"),
    )


@pytest.fixture(scope="session")
def limited_stack(
    tmp_path_factory: pytest.TempPathFactory, search_server: str, scripted_backend: str
) -> Iterator[Stack]:
    """The app with API keys required and a rate limit small enough to reach in a test."""
    backends = f'backends:\n  - {{name: scripted, base_url: "{scripted_backend}", model: scripted}}\n'
    yield from _serve(
        tmp_path_factory.mktemp("ui-limited-stack"),
        "app-limited",
        backends,
        search_server,
        CHATSTACK_DEFAULT_BACKEND="scripted",
        CHATSTACK_AUTH="on",
        CHATSTACK_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT_PER_MINUTE),
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
