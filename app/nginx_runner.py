"""nginx in front of chatstack: the configuration rendered into a private prefix, checked with
`nginx -t`, and the process started, watched and stopped, with no root needed and no system file touched.

The templates live in `nginx/` at the top of the repository; the same files render a configuration
for Debian's system nginx (`python -m app.nginx_runner render`, see docs/deployment.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import grp
import ipaddress
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn

log = logging.getLogger("chatstack.nginx")

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "nginx"
SITE_FILES = ("chatstack.conf", "chatstack-proxy.conf", "chatstack-errors.conf")
MAIN_FILE = "nginx.conf"
NGINX_CANDIDATES = (
    Path("/usr/sbin/nginx"),
    Path("/usr/local/sbin/nginx"),
    Path("/usr/local/nginx/sbin/nginx"),
)
WORKER_USER = "nobody"
"""Who nginx's workers run as when the master starts as root (they face the network: never root)."""

_MARKER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_SIZE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_PR_SET_PDEATHSIG = 1
GRACEFUL_STOP_S = 6.0
"""How long a graceful stop waits; nginx.conf's worker_shutdown_timeout (5 s) closes streams before."""
FAST_STOP_S = 5.0


class NginxError(RuntimeError):
    """nginx could not be configured, started or kept running; the message says why."""


class NginxNotFound(NginxError):
    """No nginx binary on this machine."""


@dataclass(frozen=True)
class ProxyOptions:
    """What the generated nginx does: where it listens, which app servers it forwards to, its limits."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8090
    upstreams: Sequence[str] = ("127.0.0.1:8000",)
    """`host:port` (or `[v6]:port`, `unix:/path`) of each chatstack replica."""
    rate_per_s: float = 10.0
    """Sustained requests per second per client address on the API, OpenAI and Gradio routes."""
    burst: int = 50
    """Requests a client may send at once above the rate before it gets 429s."""
    body_limit: str = "1m"
    """Largest request body, in nginx's size syntax (`512k`, `1m`, or bytes); larger ones get 413. The
    default matches the app's own CHATSTACK_MAX_BODY_BYTES: nginx refuses at the edge what it would."""
    read_timeout_s: float = 600.0
    """Longest silence from the app on a response before nginx gives up (event streams ping far sooner)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    worker_processes: str = "auto"
    access_log: str | None = None
    """Where the JSON access log goes; default `logs/access.log` in the prefix."""

    def __post_init__(self) -> None:
        if not 0 < self.listen_port < 65536:
            raise NginxError(f"listen port {self.listen_port} is not a TCP port")
        if not self.upstreams:
            raise NginxError("nginx needs at least one upstream chatstack server")
        for address in self.upstreams:
            if not address.startswith("unix:") and not re.fullmatch(
                r"(\[[0-9a-fA-F:.]+\]|[^\s:;{}]+):\d+", address
            ):
                raise NginxError(f"upstream {address!r} is not host:port, [v6]:port or unix:/path")
        if self.rate_per_s <= 0 or self.burst < 0:
            raise NginxError("the rate limit must be positive and the burst zero or more")
        if not _SIZE.match(self.body_limit):
            raise NginxError(f"body limit {self.body_limit!r} is not an nginx size such as 512k or 4m")
        if self.read_timeout_s <= 0:
            raise NginxError("the read timeout must be positive")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise NginxError("TLS needs both a certificate and a key")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        """Where clients on this machine reach nginx."""
        return f"{self.scheme}://{_url_host(_connect_host(self.listen_host))}:{self.listen_port}"


def _connect_host(host: str) -> str:
    """The address to connect to for a listen address (the wildcard means loopback here)."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _rate(per_second: float) -> str:
    # nginx takes whole requests per second or per minute.
    if float(per_second).is_integer():
        return f"{int(per_second)}r/s"
    return f"{max(1, round(per_second * 60))}r/m"


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill the `{{name}}` markers of a template; a marker without a value is an error, not a blank."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise NginxError(f"nginx template marker {{{{{key}}}}} has no value")
        return values[key]

    return _MARKER.sub(fill, text)


def site_values(options: ProxyOptions, include_dir: Path, access_log: str) -> dict[str, str]:
    """The values of the markers in the site templates (chatstack.conf and its include files)."""
    host = _url_host(options.listen_host.strip("[]") or "0.0.0.0")
    ssl = " ssl http2" if options.tls_cert else ""
    tls = ""
    if options.tls_cert and options.tls_key:
        tls = (
            f"    ssl_certificate {options.tls_cert};\n"
            f"    ssl_certificate_key {options.tls_key};\n"
            "    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    ssl_session_cache shared:chatstack_tls:10m;"
        )
    servers = "\n".join(f"    server {address} max_fails=1 fail_timeout=5s;" for address in options.upstreams)
    return {
        "listen": f"    listen {host}:{options.listen_port}{ssl};" + (f"\n{tls}" if tls else ""),
        "upstream_servers": servers,
        "rate": _rate(options.rate_per_s),
        "burst": str(options.burst),
        "body_limit": options.body_limit,
        "read_timeout": _duration(options.read_timeout_s),
        "include_dir": str(include_dir),
        "access_log": access_log,
    }


def render_site(options: ProxyOptions, include_dir: Path, access_log: str) -> dict[str, str]:
    """chatstack.conf and its include files, by file name, ready for nginx's http context."""
    values = site_values(options, include_dir, access_log)
    return {name: render_template(_template(name), values) for name in SITE_FILES}


def render_prefix(options: ProxyOptions, prefix: Path) -> dict[str, str]:
    """Every file of a self-contained configuration rooted at `prefix` (under `conf/`), by file name."""
    access_log = options.access_log or str(prefix / "logs" / "access.log")
    files = render_site(options, prefix / "conf", access_log)
    files[MAIN_FILE] = render_template(
        _template(MAIN_FILE),
        {"prefix": str(prefix), "user": _user_directive(), "worker_processes": options.worker_processes},
    )
    return files


def _template(name: str) -> str:
    path = TEMPLATE_DIR / name
    if not path.is_file():
        raise NginxError(f"nginx template {path} is missing (the nginx/ folder of the chatstack checkout)")
    return path.read_text()


def _user_directive() -> str:
    if os.geteuid() != 0:
        return "# Not started as root: the workers run as the current user."
    entry = pwd.getpwnam(WORKER_USER)
    group = grp.getgrgid(entry.pw_gid).gr_name
    return f"# Started as root: the workers drop to an unprivileged user.\nuser {WORKER_USER} {group};"


def write_prefix(options: ProxyOptions, prefix: Path) -> Path:
    """Write the configuration into `prefix` (created if needed) and return the main config file."""
    prefix = prefix.resolve()
    for sub in ("conf", "logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    for name, text in render_prefix(options, prefix).items():
        (prefix / "conf" / name).write_text(text)
    if os.geteuid() == 0:
        _open_to_workers(prefix)
    return prefix / "conf" / MAIN_FILE


def _open_to_workers(prefix: Path) -> None:
    """Root's workers run as WORKER_USER and write request bodies under tmp/: they must reach it."""
    for path in (prefix, prefix / "tmp"):
        path.chmod(0o755)
    for directory in prefix.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise NginxError(
                f"nginx's workers run as {WORKER_USER!r} when started as root and cannot reach {prefix}: "
                f"{directory} is closed to other users. Use a prefix under /tmp (the default) or "
                f"`chmod o+x {directory}`."
            )


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


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that has the child get SIGTERM when chatstack dies, so nginx never outlives it
    (uvicorn re-raises a caught SIGTERM after shutdown, which ends the process without cleanup)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child may only call it

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


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
            self._process = await asyncio.create_subprocess_exec(
                *nginx_args(nginx, self.prefix, conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # a Ctrl-C reaches chatstack, which then stops nginx in order
                preexec_fn=_die_with_parent(),
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
            # SIGQUIT lets workers finish what they serve; SIGTERM closes everything at once.
            steps = [(signal.SIGQUIT, GRACEFUL_STOP_S)] if graceful else []
            steps += [(signal.SIGTERM, FAST_STOP_S)]
            for sig, wait_s in steps:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), wait_s)
                    break
            else:
                log.warning("nginx did not stop; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own session: the master and its workers
                await process.wait()
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
