"""nginx in front of chatstack: the configuration (app/nginx_config.py) written into a private prefix,
checked with `nginx -t`, and the process started, watched and stopped, with no root needed and no system
file touched; and `python -m app.nginx_runner render|run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn

from app.nginx_config import NginxError, ProxyOptions, render_site, write_prefix
from backends.processes import start_child, stop_group

log = logging.getLogger("chatstack.nginx")

NGINX_CANDIDATES = (
    Path("/usr/sbin/nginx"),
    Path("/usr/local/sbin/nginx"),
    Path("/usr/local/nginx/sbin/nginx"),
)
GRACEFUL_STOP_S = 6.0
"""How long a graceful stop waits; nginx.conf's worker_shutdown_timeout (5 s) closes streams before."""
FAST_STOP_S = 5.0


class NginxNotFound(NginxError):
    """No nginx binary on this machine."""


def find_nginx(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The nginx binary: `explicit`, $CHATSTACK_NGINX, /usr/sbin/nginx, or the first on PATH."""
    wanted = explicit or os.environ.get("CHATSTACK_NGINX")
    if wanted:
        path = Path(wanted)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise NginxNotFound(f"{path} is not an executable nginx")
    for candidate in NGINX_CANDIDATES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nginx")
    if found:
        return Path(found)
    raise NginxNotFound("nginx is not installed; install it with `apt-get install nginx` (Debian/Ubuntu)")


def nginx_args(nginx: Path, prefix: Path, conf: Path) -> list[str]:
    """The command line that runs `conf` in the foreground with every path inside `prefix`."""
    # -e: the error log before the config is read; Debian builds in /var/log/nginx/error.log otherwise.
    return [
        str(nginx),
        "-p",
        f"{prefix}/",
        "-c",
        str(conf),
        "-e",
        str(prefix / "logs" / "error.log"),
        "-g",
        "daemon off;",
    ]


async def check_config(nginx: Path, prefix: Path, conf: Path) -> None:
    """Run `nginx -t` on the configuration; raise NginxError with nginx's own words if it is wrong."""
    process = await asyncio.create_subprocess_exec(
        *nginx_args(nginx, prefix, conf),
        "-t",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise NginxError(
            f"nginx rejected the configuration in {prefix}:\n{output.decode(errors='replace').strip()}"
        )


@dataclass
class NginxProcess:
    """nginx running in the foreground from a private prefix, as an async context manager.

    Without `prefix`, a temporary one is made and removed again on `stop()`.
    """

    options: ProxyOptions
    prefix: Path | None = None
    nginx: Path | None = None
    start_timeout_s: float = 15.0
    _process: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _temporary: bool = field(default=False, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def url(self) -> str:
        return self.options.url

    @property
    def error_log(self) -> Path:
        return self._prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return (
            Path(self.options.access_log) if self.options.access_log else self._prefix / "logs" / "access.log"
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def _prefix(self) -> Path:
        if self.prefix is None:
            raise NginxError("nginx has not been started")
        return self.prefix

    async def start(self) -> None:
        """Write and check the configuration, start nginx, and return once it is listening."""
        async with self._lock:  # a stop() that comes meanwhile waits, then stops what was started
            await self._start()

    async def _start(self) -> None:
        nginx = self.nginx or find_nginx()
        if self.prefix is None:
            self.prefix = Path(tempfile.mkdtemp(prefix="chatstack-nginx-"))
            self._temporary = True
        self.prefix = self.prefix.resolve()
        conf = write_prefix(self.options, self.prefix)
        await check_config(nginx, self.prefix, conf)
        output = (self.prefix / "logs" / "nginx.out").open("ab")
        try:
            # A Ctrl-C reaches chatstack, which then stops nginx in order; a chatstack that dies takes
            # nginx with it (uvicorn re-raises a caught SIGTERM after shutdown, ending it without cleanup).
            self._process = await start_child(
                *nginx_args(nginx, self.prefix, conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        finally:
            output.close()
        try:
            await self._until_listening()
        except BaseException:
            await self._halt(graceful=False)
            raise

    async def _until_listening(self) -> None:
        # nginx writes its pid file after binding the listen socket: our pid there means ours is
        # listening (a bare connect could reach some other server that holds the port).
        assert self._process is not None
        pid_file = self._prefix / "nginx.pid"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise NginxError(f"nginx exited with {self._process.returncode} at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if int(pid_file.read_text().strip()) == self._process.pid:
                    return
            await asyncio.sleep(0.05)
        raise NginxError(
            f"nginx did not start listening within {self.start_timeout_s:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The end of nginx's error log and console output, for error messages."""
        text = ""
        for path in (self.error_log, self._prefix / "logs" / "nginx.out"):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:]) or "(nginx logged nothing)"

    async def wait(self) -> int:
        """Wait for nginx to exit and return its exit code."""
        if self._process is None:
            raise NginxError("nginx has not been started")
        return await self._process.wait()

    async def stop(self, *, graceful: bool = True) -> int | None:
        """Stop nginx and return its exit code. Gracefully, requests in progress may finish for a few
        seconds (open event streams are closed after nginx's worker_shutdown_timeout)."""
        async with self._lock:
            return await self._halt(graceful=graceful)

    async def _halt(self, *, graceful: bool) -> int | None:
        process = self._process
        if process is not None and process.returncode is None:
            # SIGQUIT lets workers finish what they serve; SIGTERM closes everything at once. Both go to
            # the master, which stops its workers; a SIGKILL at the end, to the master and its workers.
            steps = [(signal.SIGQUIT, GRACEFUL_STOP_S)] if graceful else []
            steps.append((signal.SIGTERM, FAST_STOP_S))
            if not await stop_group(process, steps, leader_only=True):
                log.warning("nginx did not stop; killed it")
        if self._temporary and self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix, self._temporary = None, False
        return process.returncode if process else None

    async def __aenter__(self) -> NginxProcess:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ProxiedServer(uvicorn.Server):
    """uvicorn's server that, when it shuts down, stops the nginx in front of it first: no new request
    reaches an app that is stopping, and nginx is gone before uvicorn re-raises the stopping signal
    (which ends the process)."""

    proxy: NginxProcess | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        await super().shutdown(sockets=sockets)


async def serve_behind_nginx(
    server: ProxiedServer, options: ProxyOptions, prefix: Path | None = None
) -> None:
    """Run the app's server with nginx in front, until a signal stops the server or nginx dies.

    nginx starts once the app accepts connections (so it never answers 502 at start) and stops first
    when the server shuts down. If nginx exits on its own, the app is stopped and NginxError raised.
    """
    app = asyncio.create_task(server.serve())
    while not server.started and not app.done():  # uvicorn only offers a flag to poll
        await asyncio.wait({app}, timeout=0.05)
    if app.done():
        await app  # the app failed to start: its own error is the one to show
        return
    proxy = NginxProcess(options, prefix=prefix)
    server.proxy = proxy  # before it starts: a signal during the start stops it once it is up
    try:
        await proxy.start()
    except BaseException:
        server.should_exit = True
        await app
        raise
    log.info(
        "nginx at %s forwards to %s (logs in %s)", options.url, ", ".join(options.upstreams), proxy.prefix
    )
    exited = asyncio.create_task(proxy.wait())
    await asyncio.wait({app, exited}, return_when=asyncio.FIRST_COMPLETED)
    died = exited.done() and not server.should_exit
    if died:
        log.error("nginx exited with %s; stopping chatstack:\n%s", proxy.returncode, proxy.log_tail())
        server.should_exit = True
    try:
        await app
    finally:
        await proxy.stop()  # already stopped by the server's shutdown, unless the app crashed
    if died:
        raise NginxError(f"nginx exited unexpectedly with {proxy.returncode}")


def run_behind_nginx(config: uvicorn.Config, options: ProxyOptions, prefix: Path | None = None) -> None:
    """Blocking: what `uvicorn.run` does, with nginx in front (`chatstack serve --with-nginx`)."""
    server = ProxiedServer(config)
    # uvicorn re-raises a SIGINT it handled once it has shut down; depending on when it lands, asyncio
    # turns it into KeyboardInterrupt. As in uvicorn.run, that is a normal Ctrl-C exit, not an error.
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=config.get_loop_factory()) as runner,
    ):
        runner.run(serve_behind_nginx(server, options, prefix))


def _write_site(options: ProxyOptions, out_dir: Path, include_dir: Path, access_log: str) -> list[Path]:
    files = render_site(options, include_dir, access_log)
    written = [out_dir / "chatstack.conf"]
    out_dir.mkdir(parents=True, exist_ok=True)
    include_dir.mkdir(parents=True, exist_ok=True)
    written[0].write_text(files.pop("chatstack.conf"))
    for name, text in files.items():
        (include_dir / name).write_text(text)
        written.append(include_dir / name)
    return written


def _options_from_args(args: argparse.Namespace) -> ProxyOptions:
    host, _, port = args.listen.rpartition(":")
    return ProxyOptions(
        listen_host=host or "127.0.0.1",
        listen_port=int(port),
        upstreams=tuple(args.upstream or ["127.0.0.1:8000"]),
        rate_per_s=args.rate,
        burst=args.burst,
        body_limit=args.body_limit,
        upload_limit=args.upload_limit,
        read_timeout_s=args.read_timeout,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m app.nginx_runner render|run`: configure a system nginx, or run one in front of an app."""
    parser = argparse.ArgumentParser(prog="python -m app.nginx_runner", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write chatstack.conf and its includes for a system nginx")
    run = commands.add_parser("run", help="run nginx in the foreground in front of running chatstack servers")
    for sub in (render, run):
        sub.add_argument("--listen", default="127.0.0.1:8090", help="host:port to listen on")
        sub.add_argument("--upstream", action="append", help="a chatstack server host:port (repeatable)")
        sub.add_argument("--rate", type=float, default=10.0, help="requests per second per client")
        sub.add_argument("--burst", type=int, default=50)
        sub.add_argument("--body-limit", default="1m")
        sub.add_argument("--upload-limit", default="32m", help="body limit of attachment uploads")
        sub.add_argument("--read-timeout", type=float, default=600.0, help="seconds")
        sub.add_argument("--tls-cert", type=Path)
        sub.add_argument("--tls-key", type=Path)
    render.add_argument("--out", type=Path, default=Path("/etc/nginx/conf.d"))
    render.add_argument("--include-dir", type=Path, default=Path("/etc/nginx/chatstack"))
    render.add_argument("--access-log", default="/var/log/nginx/chatstack.access.log")
    run.add_argument("--prefix", type=Path, help="keep the configuration and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    try:
        options = _options_from_args(args)
        if args.command == "render":
            for path in _write_site(options, args.out, args.include_dir, args.access_log):
                print(path)
            return 0
        return asyncio.run(_run_foreground(options, args.prefix))
    except NginxError as exc:
        print(f"chatstack nginx: {exc}", file=sys.stderr)
        return 2


async def _run_foreground(options: ProxyOptions, prefix: Path | None) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before anything is printed: a caller may signal at once
        loop.add_signal_handler(sig, stopping.set)
    proxy = NginxProcess(options, prefix=prefix)
    await proxy.start()
    print(f"nginx at {options.url} -> {', '.join(options.upstreams)} (prefix {proxy.prefix})", flush=True)
    exited = asyncio.create_task(proxy.wait())
    await asyncio.wait({exited, asyncio.create_task(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED)
    code = await proxy.stop()
    return 0 if stopping.is_set() else (code or 1)


if __name__ == "__main__":
    raise SystemExit(main())
