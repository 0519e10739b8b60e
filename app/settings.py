"""All configuration, in one object, read from `CHATSTACK_*` environment variables (and `.env`).

The embedded model's settings are the base class: its `chatstack model` commands run without the API
server, and the server's one `Settings` object holds them too.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from backends.local.settings import LocalSettings

PACKAGE_BACKENDS_FILE = Path(__file__).resolve().parent.parent / "backends" / "backends.yaml"
PACKAGE_TOOLS_FILE = Path(__file__).resolve().parent.parent / "tools" / "tools.yaml"


class Settings(LocalSettings):
    """Service settings, the embedded model's included. Every field maps to `CHATSTACK_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="CHATSTACK_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    database_url: str = ""
    """SQLAlchemy async URL; empty means a SQLite file in `data_dir`."""
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)

    backends_file: Path = PACKAGE_BACKENDS_FILE
    default_backend: str = "local"
    health_interval_s: float = Field(default=10.0, gt=0)

    search_provider: Literal["duckduckgo", "searxng"] = "duckduckgo"
    searxng_url: str | None = None
    duckduckgo_url: str = "https://html.duckduckgo.com/html/"
    search_timeout_s: float = Field(default=10.0, gt=0)
    tool_timeout_s: float = Field(default=30.0, gt=0)
    tools_file: Path = PACKAGE_TOOLS_FILE
    """The tools file: built-in tools on or off, MCP servers, and every tool's approval policy."""
    approval_timeout_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    """How long a tool call configured `approval: ask` waits for the user; then it is denied (`timed
    out`) and the model is told so."""

    agent_max_steps: int = Field(default=6, ge=1, le=50)
    """Model calls per run; the last one is made without tools so the agent can still answer."""
    system_prompt: str | None = None

    advertise_url: str | None = None
    """How other replicas reach this process (default http://<host>:<port>); runs started here are
    streamed and cancelled through it from any replica."""
    heartbeat_s: float = Field(default=2.0, gt=0)
    """How often a process confirms it still executes its runs; runs silent for 5x this are orphans."""

    nginx_host: str = "127.0.0.1"
    nginx_port: int = Field(default=8090, ge=1, le=65535)
    """Where nginx listens with `chatstack serve --with-nginx` (8080 is Ray's metrics port)."""
    nginx_rate_per_s: float = Field(default=10.0, gt=0)
    nginx_burst: int = Field(default=50, ge=0)

    sse_ping_s: float = Field(default=15.0, gt=0)
    event_flush_s: float = Field(default=0.25, gt=0)
    """How often a running run's events are written to the database (they are kept in memory too)."""
    max_message_chars: int = Field(default=100_000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest file that may be attached to a conversation (413 beyond it; reading stops there)."""
    attachment_max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest upload request (several files at once): the body limit of the attachments route."""
    attachment_max_files: int = Field(default=20, ge=1)
    """Files one conversation may hold."""
    attachment_max_pages: int = Field(default=500, ge=1)
    """Pages a PDF may have."""
    attachment_max_chars: int = Field(default=10_000_000, ge=1000)
    """Characters of text one file may yield (a PDF's extracted text, a text file's decoded text)."""
    attachment_inline_tokens: int = Field(default=6000, ge=0)
    """Documents up to this many tokens go whole into the model's context with the message that
    references them (if the backend's context window has room); longer ones are searched by the agent."""
    attachment_parse_timeout_s: float = Field(default=20.0, gt=0)
    """Longest a PDF's text extraction may take (in a worker process, killed past it)."""
    attachment_parse_memory_mib: int = Field(default=768, ge=64)
    """Memory the PDF worker may use beyond its idle interpreter."""
    auth: Literal["auto", "on", "off"] = "auto"
    """`auto` turns API keys on whenever the server listens beyond loopback."""
    auth_cache_s: float = Field(default=10.0, ge=0)
    """How long a checked API key is trusted before the database is asked again (revocation delay)."""
    rate_limit_per_minute: int = Field(default=600, ge=0)
    """Requests per user per minute on /api and /v1 (0: no limit)."""
    auth_failures_per_minute: int = Field(default=30, ge=0)
    """Requests with a wrong API key one client address may send per minute (in bursts of as many)
    before it gets 429s; each costs a database lookup. Successful requests never count (0: no limit)."""
    redis_url: str | None = None
    """Share the rate limits between replicas through this Redis (e.g. `redis://127.0.0.1:6379/0`);
    unset, each process counts on its own."""
    redis_key_prefix: str = "chatstack"
    """Prefix of chatstack's Redis keys, for deployments that share one Redis."""
    max_concurrent_runs: int = Field(default=4, ge=1)
    """Answers one user may have running at once."""
    user_token_budget: int = Field(default=0, ge=0)
    """Tokens (prompt + completion, as the backends report them) each user may use per budget period;
    0 means unlimited. `chatstack users set-budget NAME TOKENS` overrides it per user."""
    token_budget_period: str = Field(default="day", pattern=r"^(day|week|month|[1-9][0-9]{0,3}h)$")
    """The budget period, aligned in UTC: `day`, `week` (from Monday), `month`, or `<N>h` (N hours,
    counted from the Unix epoch, so `6h` periods start at 00, 06, 12 and 18 UTC)."""
    token_budget_cache_s: float = Field(default=1.0, ge=0)
    """How long a user's budget and usage are trusted before the database is asked again: the budget
    check costs no query per request; usage from other replicas shows within this (plus their flush)."""
    token_usage_flush_s: float = Field(default=0.5, ge=0)
    """How often the usage counted in this process is written to the database, in one transaction
    (0: with each model call). This process enforces its own usage at once either way."""
    log_level: str = "INFO"
    json_logs: bool = True
    forwarded_allow_ips: str = "127.0.0.1"
    """Proxies whose X-Forwarded-For/-Proto headers are trusted (nginx on the same host by default)."""
    ui: bool = True
    """Serve the browser chat at `/` (the API works without it)."""
    opentelemetry: bool = False
    """FastAPI's built-in OpenTelemetry spans and metrics; off by default because they cost more per
    request than the whole proxy path (chatstack exports Prometheus metrics of its own)."""

    @property
    def auth_enabled(self) -> bool:
        if self.auth == "auto":
            return self.host not in ("127.0.0.1", "localhost", "::1")
        return self.auth == "on"

    def resolved_advertise_url(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def internal_api_url(self) -> str:
        """Where this server's API answers, seen from inside its own process (the UI calls it there)."""
        host = self.host.strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"http://{host}:{self.port}"
        if address.is_unspecified:  # 0.0.0.0 or :: listen everywhere, loopback included
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        return f"http://[{address}]:{self.port}" if address.version == 6 else f"http://{address}:{self.port}"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'chatstack.db'}"
