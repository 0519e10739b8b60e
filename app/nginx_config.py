"""nginx's configuration for chatstack, rendered from the templates in `nginx/` at the top of the
repository: into a private prefix for `chatstack serve --with-nginx`, or as site files for Debian's
system nginx (`python -m app.nginx_runner render`, see docs/deployment.md).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "nginx"
SITE_FILES = ("chatstack.conf", "chatstack-proxy.conf", "chatstack-errors.conf")
MAIN_FILE = "nginx.conf"
WORKER_USER = "nobody"
"""Who nginx's workers run as when the master starts as root (they face the network: never root)."""

_MARKER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_SIZE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


class NginxError(RuntimeError):
    """nginx could not be configured, started or kept running; the message says why."""


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
    upload_limit: str = "32m"
    """Largest body of an attachment upload (`POST /api/conversations/{id}/attachments`), the one
    route that takes files; the default matches the app's own limit there
    (CHATSTACK_ATTACHMENT_MAX_UPLOAD_BYTES)."""
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
        for limit in (self.body_limit, self.upload_limit):
            if not _SIZE.match(limit):
                raise NginxError(f"body limit {limit!r} is not an nginx size such as 512k or 4m")
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
        "upload_limit": options.upload_limit,
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
