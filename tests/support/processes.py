"""Start and stop real processes for end-to-end tests: servers, and headless Chromium for browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from backends.processes import start_child_blocking, stop_group_blocking

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium (CI installs it); Playwright never downloads a browser of its own here."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """`sig` to the server's process group, then SIGKILL to the group after `timeout`."""
        if self.process.poll() is not None:
            return  # already stopped: its group id may belong to another process by now
        stop_group_blocking(self.process, [(sig, timeout)])

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def start_process(
    args: list[str],
    *,
    health_url: str,
    base_url: str,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float = 60,
) -> ServerProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    full_env = {**os.environ, **env}
    # In a process group of its own that dies with the tests, so an interrupted run leaves no server.
    process = start_child_blocking(args, cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(process, base_url, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"{args} did not become healthy in {timeout}s:\n{server.log()[-3000:]}")


def start_python_server(
    module: str, args: Sequence[str], log_dir: Path, log_name: str, port: int | None = None
) -> ServerProcess:
    """`python -m MODULE --port PORT ARGS...` on a free port (or `port`), once its `/health` answers.

    For the OpenAI-compatible test servers: the returned URL is their API's, under `/v1`.
    """
    port = port or free_port()
    return start_process(
        [str(BIN / "python"), "-m", module, "--port", str(port), *args],
        health_url=f"http://127.0.0.1:{port}/health",
        base_url=f"http://127.0.0.1:{port}/v1",
        env={},
        log_path=log_dir / f"{log_name}-{port}.log",
    )


def start_scripted_backend(
    log_dir: Path, token_delay_ms: float = 2.0, port: int | None = None, extra_args: Sequence[str] = ()
) -> ServerProcess:
    args = ["--token-delay-ms", str(token_delay_ms), *extra_args]
    return start_python_server("backends.scripted.server", args, log_dir, "scripted", port)


def start_emulator(log_dir: Path, profile: str, time_scale: float) -> ServerProcess:
    """The GPU emulator (`python -m backends.emulator`) with `profile`, its time scaled by `time_scale`."""
    args = ["--profile", profile, "--time-scale", str(time_scale)]
    return start_python_server("backends.emulator", args, log_dir, f"emulator-{profile}")


def start_chatstack(env: Mapping[str, str], log_dir: Path, port: int | None = None) -> ServerProcess:
    port = port or free_port()
    return start_process(
        [str(BIN / "chatstack"), "serve", "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/healthz",
        base_url=f"http://127.0.0.1:{port}",
        env={"CHATSTACK_LOG_LEVEL": "INFO", **env},
        log_path=log_dir / f"chatstack-{port}.log",
    )


@contextmanager
def chromium(executable: Path = CHROMIUM) -> Iterator[Browser]:
    """Headless Chromium driven by Playwright's sync API, until the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def users_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real `chatstack users` command, run against the database `env` names."""
    return subprocess.run(
        [str(BIN / "chatstack"), "users", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
