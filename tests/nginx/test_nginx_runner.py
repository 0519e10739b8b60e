"""app.nginx_runner: rendering, finding nginx, and running it (real binary) from a private prefix."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from aiohttp import web

from app import nginx_runner
from app.nginx_config import NginxError, ProxyOptions, render_prefix, render_template, write_prefix
from app.nginx_runner import (
    NginxNotFound,
    NginxProcess,
    ProxiedServer,
    check_config,
    find_nginx,
    serve_behind_nginx,
)
from tests.support.processes import ROOT, free_port


def options(**overrides: object) -> ProxyOptions:
    values: dict[str, object] = {"listen_port": free_port(), **overrides}
    return ProxyOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[Path]:
    # Not in pytest's tmp, which is closed to other users: nginx's workers run as nobody under root.
    path = ROOT / "test-output" / "nginx" / "runner" / tmp_path.name
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Rendering


def test_every_marker_is_filled() -> None:
    files = render_prefix(options(upstreams=("127.0.0.1:8001", "10.0.0.12:8000")), Path("/srv/px"))
    assert set(files) == {"nginx.conf", "chatstack.conf", "chatstack-proxy.conf", "chatstack-errors.conf"}
    for text in files.values():
        assert not re.search(r"\{\{\s*\w+\s*\}\}", text)
    site = files["chatstack.conf"]
    assert "server 127.0.0.1:8001 max_fails=1 fail_timeout=5s;" in site
    assert "server 10.0.0.12:8000 max_fails=1 fail_timeout=5s;" in site
    assert "include /srv/px/conf/chatstack-proxy.conf;" in site
    for path in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{path}_temp_path /srv/px/tmp/{path};" in files["nginx.conf"]


def test_unknown_marker_is_an_error() -> None:
    with pytest.raises(NginxError, match=r"\{\{nope\}\} has no value"):
        render_template("listen {{ nope }};", {"listen": "80"})


@pytest.mark.parametrize(
    ("rate", "rendered"), [(10.0, "rate=10r/s"), (2.5, "rate=150r/m"), (0.01, "rate=1r/m")]
)
def test_rate_in_nginx_units(rate: float, rendered: str) -> None:
    assert rendered in render_prefix(options(rate_per_s=rate), Path("/p"))["chatstack.conf"]


@pytest.mark.parametrize(
    ("host", "listen", "url_host"),
    [("127.0.0.1", "127.0.0.1", "127.0.0.1"), ("::1", "[::1]", "[::1]"), ("0.0.0.0", "0.0.0.0", "127.0.0.1")],
)
def test_listen_address_and_url(host: str, listen: str, url_host: str) -> None:
    opts = options(listen_host=host)
    site = render_prefix(opts, Path("/p"))["chatstack.conf"]
    assert f"listen {listen}:{opts.listen_port};" in site
    assert opts.url == f"http://{url_host}:{opts.listen_port}"


def test_tls_listener(tmp_path: Path) -> None:
    opts = options(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    site = render_prefix(opts, Path("/p"))["chatstack.conf"]
    assert f"listen 127.0.0.1:{opts.listen_port} ssl http2;" in site
    assert f"ssl_certificate {tmp_path / 'c.pem'};" in site
    assert opts.url.startswith("https://")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"upstreams": ()}, "at least one upstream"),
        ({"upstreams": ("no-port",)}, "is not host:port"),
        ({"body_limit": "4 MB"}, "not an nginx size"),
        ({"rate_per_s": 0}, "rate limit"),
        ({"tls_cert": Path("c.pem")}, "both a certificate and a key"),
    ],
)
def test_invalid_options_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(NginxError, match=message):
        options(**overrides)


def test_root_drops_workers_to_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert re.search(r"^user nobody \w+;$", render_prefix(options(), Path("/p"))["nginx.conf"], re.M)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert not re.search(r"^user ", render_prefix(options(), Path("/p"))["nginx.conf"], re.M)


def test_root_refuses_a_prefix_the_workers_cannot_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(NginxError, match="closed to other users"):
        write_prefix(options(), closed / "prefix")


# Finding nginx


def test_missing_nginx_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATSTACK_NGINX", raising=False)
    monkeypatch.setattr(nginx_runner, "NGINX_CANDIDATES", (Path("/nonexistent/nginx"),))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NginxNotFound, match="apt-get install nginx"):
        find_nginx()
    with pytest.raises(NginxNotFound, match="not an executable"):
        find_nginx("/nonexistent/nginx")


@pytest.mark.slow
def test_debian_nginx_is_installed() -> None:
    # CI installs Debian's nginx (.ci/run); the end-to-end tests rely on it, so it is checked, not skipped.
    assert find_nginx().name == "nginx"


# Running nginx


@asynccontextmanager
async def hello_upstream(name: str) -> AsyncIterator[str]:
    """A tiny upstream that says its name: enough to see where nginx sends requests."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.slow
async def test_nginx_accepts_the_rendered_config(prefix: Path) -> None:
    conf = write_prefix(options(), prefix)
    await check_config(find_nginx(), prefix, conf)
    with pytest.raises(NginxError, match="nginx rejected the configuration"):
        await check_config(find_nginx(), prefix, write_prefix(options(worker_processes="lots"), prefix))


@pytest.mark.slow
async def test_two_replicas_share_the_load_and_cover_for_each_other(prefix: Path) -> None:
    async with hello_upstream("a") as a, hello_upstream("b") as b:
        proxy = NginxProcess(options(upstreams=(a, b), worker_processes="1"), prefix=prefix)
        async with proxy, httpx.AsyncClient(base_url=proxy.url, timeout=10) as client:
            seen = [(await client.get("/healthz")).text for _ in range(6)]
            assert set(seen) == {"a", "b"}
            async with hello_upstream("c") as c:  # one of two replicas down
                down = f"127.0.0.1:{free_port()}"
                second = NginxProcess(options(upstreams=(down, c)))
                async with second, httpx.AsyncClient(base_url=second.url, timeout=10) as other:
                    answers = [await other.get("/healthz") for _ in range(4)]
                    assert [(r.status_code, r.text) for r in answers] == [(200, "c")] * 4
        assert proxy.returncode == 0  # graceful stop


@pytest.mark.slow
async def test_temporary_prefix_is_removed_after_stop() -> None:
    async with hello_upstream("x") as upstream:
        proxy = NginxProcess(options(upstreams=(upstream,)))
        await proxy.start()
        made = proxy.prefix
        assert made is not None
        assert (made / "nginx.pid").exists()
        await proxy.stop()
    assert not made.exists()


@pytest.mark.slow
async def test_start_fails_clearly_when_the_port_is_taken(prefix: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proxy = NginxProcess(options(listen_port=port), prefix=prefix)
        with pytest.raises(NginxError, match="Address already in use"):
            await proxy.start()
    assert proxy.returncode is not None


@pytest.mark.slow
async def test_runs_as_an_unprivileged_user_touching_no_system_file(
    prefix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Debian's nginx would write to /var/log/nginx and /var/lib/nginx (root's): as nobody, any such
    # write fails and nginx exits, so serving requests proves every path is inside the prefix.
    async with hello_upstream("unprivileged") as upstream:
        opts = options(upstreams=(upstream,), worker_processes="1")
        command = [str(find_nginx())]
        if os.geteuid() == 0:
            monkeypatch.setattr(os, "geteuid", lambda: 65534)  # render as nobody would
            conf = write_prefix(opts, prefix)
            monkeypatch.undo()
            await asyncio.to_thread(subprocess.run, ["chown", "-R", "nobody", str(prefix)], check=True)
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        else:
            conf = write_prefix(opts, prefix)
        args = nginx_runner.nginx_args(find_nginx(), prefix, conf)[1:]
        process = await asyncio.create_subprocess_exec(*command, *args, stderr=asyncio.subprocess.PIPE)
        try:
            body = await wait_for_answer(f"{opts.url}/anything", process)
            assert body == "unprivileged"
            owners = {p.stat().st_uid for p in (prefix / "tmp").iterdir()}
            assert owners == {os.geteuid() if os.geteuid() != 0 else 65534}
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
        assert "[emerg]" not in (prefix / "logs" / "error.log").read_text()


async def wait_for_answer(
    url: str, process: asyncio.subprocess.Process | asyncio.Task[None], timeout: float = 10
) -> str:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if isinstance(process, asyncio.Task):
                assert not process.done(), process
            elif process.returncode is not None:
                stderr = await process.stderr.read() if process.stderr else b""
                raise AssertionError(f"nginx exited with {process.returncode}: {stderr.decode()}")
            try:
                return (await client.get(url)).text
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.mark.slow
def test_system_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    # Debian's own nginx.conf including the rendered site, as `render` would install it; only paths
    # that would touch the system (logs, pid, other sites) are redirected into tmp_path.
    debian = Path("/etc/nginx/nginx.conf").read_text()
    conf_d, include_dir = tmp_path / "conf.d", tmp_path / "chatstack"
    code = nginx_runner.main(
        [
            "render", "--listen", "0.0.0.0:8081",
            "--upstream", "10.0.0.11:8000", "--upstream", "10.0.0.12:8000",
            "--out", str(conf_d), "--include-dir", str(include_dir),
            "--access-log", str(tmp_path / "access.log"),
        ]
    )  # fmt: skip
    assert code == 0
    main_conf = (
        debian.replace("/etc/nginx/conf.d/", f"{conf_d}/")
        .replace("include /etc/nginx/sites-enabled/*;", "")
        .replace("/var/log/nginx/", f"{tmp_path}/")
        .replace("/run/nginx.pid", f"{tmp_path}/nginx.pid")
    )
    (tmp_path / "nginx.conf").write_text(main_conf)
    nginx_t = [str(find_nginx()), "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf")]
    result = subprocess.run([*nginx_t, "-e", str(tmp_path / "e.log")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# Supervision


async def _hello_asgi(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"app"})  # type: ignore[operator]


def hello_server() -> ProxiedServer:
    config = uvicorn.Config(_hello_asgi, host="127.0.0.1", port=free_port(), lifespan="off", log_config=None)
    return ProxiedServer(config)


def read_pid(prefix: Path) -> int | None:
    try:
        return int((prefix / "nginx.pid").read_text())
    except (OSError, ValueError):  # not there yet, or being written
        return None


async def wait_for_pid(prefix: Path, timeout: float = 20) -> int:
    for _ in range(int(timeout / 0.05)):
        pid = await asyncio.to_thread(read_pid, prefix)
        if pid is not None:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError(f"nginx wrote no pid file in {prefix} within {timeout}s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_serve_behind_nginx_starts_and_stops_both(prefix: Path) -> None:
    server = hello_server()
    opts = options(upstreams=(f"127.0.0.1:{server.config.port}",))
    serving = asyncio.create_task(serve_behind_nginx(server, opts, prefix=prefix))
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            pid = await wait_for_pid(prefix)
            assert (await client.get(f"{opts.url}/")).text == "app"
        server.should_exit = True  # what uvicorn's SIGINT/SIGTERM handler does
        await asyncio.wait_for(serving, 30)
    finally:
        server.should_exit = True
    assert not alive(pid)


@pytest.mark.slow
async def test_serve_behind_nginx_stops_the_app_when_nginx_dies(
    prefix: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatstack.nginx")
    server = hello_server()
    opts = options(upstreams=(f"127.0.0.1:{server.config.port}",))
    serving = asyncio.create_task(serve_behind_nginx(server, opts, prefix=prefix))
    pid = await wait_for_pid(prefix)
    await wait_for_answer(f"{opts.url}/", serving)
    # nginx answers as soon as it listens, which can be before the runner has seen it start (it polls):
    # killed in between, it would be a failure at start, another path. Wait until it watches nginx.
    for _ in range(400):
        if any(r.getMessage().startswith("nginx at ") for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the runner never reported nginx started")
    os.kill(pid, signal.SIGTERM)  # started and watched: now kill it from outside
    with pytest.raises(NginxError, match="exited unexpectedly"):
        await asyncio.wait_for(serving, 30)
    assert server.started
    assert server.should_exit


def start_run_command(port: int, prefix: Path) -> subprocess.Popen[bytes]:
    """`python -m app.nginx_runner run` on `port` from `prefix`; its output (stderr too) on a pipe."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.nginx_runner",
            "run",
            "--listen",
            f"127.0.0.1:{port}",
            "--prefix",
            str(prefix),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_nginx_dies_with_its_parent(prefix: Path) -> None:
    # Even a SIGKILLed chatstack (no cleanup at all) leaves no nginx behind holding the port.
    port = free_port()
    runner = start_run_command(port, prefix)
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline().decode()
        assert line.startswith(f"nginx at http://127.0.0.1:{port}"), line
        pid = int((prefix / "nginx.pid").read_text())
        assert alive(pid)
    finally:
        runner.kill()
        runner.wait(10)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again


@pytest.mark.slow
def test_run_command_stops_nginx_on_sigterm(prefix: Path) -> None:
    port = free_port()
    runner = start_run_command(port, prefix)
    assert runner.stdout is not None
    assert runner.stdout.readline().decode().startswith("nginx at")
    pid = int((prefix / "nginx.pid").read_text())
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(20) == 0
    assert not alive(pid)


SERVE_SCRIPT = """
import sys, uvicorn
from pathlib import Path
from app.nginx_config import ProxyOptions
from app.nginx_runner import run_behind_nginx

async def hello(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

app_port, nginx_port, prefix = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
config = uvicorn.Config(hello, host="127.0.0.1", port=app_port, loop="uvloop", lifespan="off")
run_behind_nginx(config, ProxyOptions(listen_port=nginx_port, upstreams=(f"127.0.0.1:{app_port}",)), prefix)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_run_behind_nginx_stops_both_on_a_signal(prefix: Path, stop: signal.Signals) -> None:
    # What `chatstack serve --with-nginx` does, in its own process under uvloop, stopped by systemd
    # (SIGTERM) or Ctrl-C (SIGINT).
    app_port, nginx_port = free_port(), free_port()
    serving = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(app_port), str(nginx_port), str(prefix)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{nginx_port}/", timeout=1).text == "app":
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("chatstack behind nginx did not answer")
        pid = read_pid(prefix)
        assert pid is not None
        assert alive(pid)
        serving.send_signal(stop)
        _, stderr = serving.communicate(timeout=30)
    finally:
        if serving.poll() is None:
            serving.kill()
    assert "Traceback" not in stderr
    assert serving.returncode in (0, -stop)  # uvicorn re-raises SIGTERM once it has shut down
    assert not alive(pid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", nginx_port))
