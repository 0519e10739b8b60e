"""Run the embedded model's vLLM engine as a supervised child process of `chatstack serve`.

`EngineSupervisor.start()` returns at once; a background task fetches the model if needed, starts the
engine, waits for `/health` (logging progress), restarts it with backoff when it crashes, and gives up
after a bounded number of restarts. `stop()` ends it: SIGTERM to its process group, then SIGKILL to
whatever is left of its session.

The engine is vLLM's OpenAI server (`engine="vllm"`), or the same model as a Ray Serve app built with
`ray.serve.llm` (`engine="ray"`: `backends/serve/local.py`, which starts a one-node Ray cluster); both
serve the same OpenAI API under `/v1` on the same host, port and model name, and answer `/health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from backends.local.model_source import ModelSource, prepare_model, resolve_model
from backends.local.settings import LocalSettings
from backends.local.weights import ModelCache, WeightsError

log = logging.getLogger("chatstack.engine")

EngineStatus = Literal["starting", "ready", "crashed", "stopped"]
EngineKind = Literal["vllm", "ray"]

TOOL_PARSER_PLUGIN = Path(__file__).with_name("tool_parser.py")
CHATSTACK_ROOT = Path(__file__).resolve().parents[2]
"""On the engine's PYTHONPATH, so the tool parser plugin can import `backends.local.tool_call_text`."""
ENGINE_MODULE = "vllm.entrypoints.openai.api_server"
RAY_LAUNCHER_MODULE = "backends.serve.local"
RAY_ENV = {
    # The proxy's 5 s default readiness check killed it on a busy two-core machine (issue 3).
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_USAGE_STATS_ENABLED": "0",
}
STABLE_AFTER_S = 3600.0
"""An engine that ran this long before crashing starts a fresh restart budget."""


@dataclass(frozen=True, slots=True)
class LocalEngineConfig:
    """How to run the engine; built from settings by `engine_config`."""

    python: Path
    source: ModelSource
    cache: ModelCache
    log_path: Path
    host: str = "127.0.0.1"
    port: int = 8001
    max_model_len: int = 4096
    cpus: tuple[int, ...] = ()
    """CPU ids the engine's threads are bound to; empty means every CPU this process may use."""
    kv_cache_gb: int = 1
    tool_parser: str = "chatstack_qwen"
    extra_args: tuple[str, ...] = ()
    engine: EngineKind = "vllm"
    ray_dir: Path | None = None
    """`engine="ray"`: Ray's temp dir (`<ray_dir>/tmp`) and the app's config file; default: beside the log."""
    start_timeout_s: float = 900.0
    max_restarts: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    stop_timeout_s: float = 20.0
    poll_s: float = 1.0
    progress_every_s: float = 15.0
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def bound_cpus(self) -> tuple[int, ...]:
        return self.cpus or tuple(sorted(os.sched_getaffinity(0)))

    @property
    def ray_home(self) -> Path:
        return self.ray_dir or self.log_path.parent.parent / "ray"

    def command(self, model: str) -> list[str]:
        """The engine's command line, serving `model` (a folder or hub id)."""
        # Both launchers take vLLM's names for what they share.
        common = [
            "--model",
            model,
            "--served-model-name",
            self.source.served_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--tool-call-parser",
            self.tool_parser,
        ]
        if self.engine == "ray":
            return [
                str(self.python),
                "-m",
                RAY_LAUNCHER_MODULE,
                *common,
                "--temp-dir",
                str(self.ray_home / "tmp"),
                "--config-out",
                str(self.ray_home / "local-cpu.yaml"),
                *(("--", *self.extra_args) if self.extra_args else ()),
            ]
        return [
            str(self.python),
            "-m",
            ENGINE_MODULE,
            *common,
            "--dtype",
            "bfloat16",
            "--enable-auto-tool-choice",
            "--tool-parser-plugin",
            str(TOOL_PARSER_PLUGIN),
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        """The engine's environment: vLLM's CPU settings on top of this process's environment."""
        cpus = self.bound_cpus()
        env = dict(os.environ)
        # By default vLLM on CPU computes on one core and keeps others in reserve; use them all.
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in cpus)
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gb)
        env["VLLM_NO_USAGE_STATS"] = "1"
        env["DO_NOT_TRACK"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHATSTACK_ROOT), env.get("PYTHONPATH")) if p)
        if self.source.spec is not None or self.source.is_local_folder:
            env["HF_HUB_OFFLINE"] = "1"  # a local folder needs no hub; offline, lookups would only stall
        if self.engine == "ray":
            for name, value in RAY_ENV.items():
                env.setdefault(name, value)
        env.update(self.extra_env)
        return env


def engine_config(settings: LocalSettings | None = None) -> LocalEngineConfig:
    """The engine's configuration from `CHATSTACK_*` settings (see `LocalSettings`)."""
    settings = settings or LocalSettings()
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    if settings.engine_threads:
        cpus = cpus[: settings.engine_threads]
    return LocalEngineConfig(
        python=settings.resolved_engine_python(),
        source=resolve_model(settings.model, settings.served_model_name),
        cache=ModelCache(settings.model_cache),
        log_path=settings.data_dir / "logs" / "engine.log",
        host=settings.engine_host,
        port=settings.engine_port,
        max_model_len=settings.engine_max_model_len,
        cpus=cpus,
        kv_cache_gb=settings.engine_kv_cache_gb,
        extra_args=tuple(shlex.split(settings.engine_extra_args)),
        engine=settings.engine,
        ray_dir=settings.data_dir / "ray",
        start_timeout_s=settings.engine_start_timeout_s,
        max_restarts=settings.engine_max_restarts,
    )


def _parent_death_signal() -> Callable[[], None] | None:
    """A function for the child to run before exec, so the engine gets SIGTERM when chatstack dies and a
    killed `chatstack serve` does not leave it behind (Linux only). libc is resolved here, in the parent:
    the child may only call it."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, 1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _session_members(session: int) -> list[int]:
    """The processes in session `session` (Linux: from /proc; elsewhere none)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After the command name (which may hold spaces and parentheses): state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[-1].split()
        # A zombie has already exited (the group's SIGKILL just now): only its parent's wait() is missing.
        if len(fields) > 3 and int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _kill_session(session: int) -> int:
    """SIGKILL what is left of the session the engine leads. Ray's workers (its Serve controller, proxy,
    replicas and their vLLM processes) each lead a process group of their own, out of reach of `killpg`,
    but stay in the engine's session. Returns how many processes were signalled."""
    killed = 0
    for pid in _session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


class EngineSupervisor:
    """Starts, watches and stops the embedded engine. One instance per `chatstack serve`."""

    def __init__(self, config: LocalEngineConfig) -> None:
        self.config = config
        self._status: EngineStatus = "stopped"
        self.last_error: str | None = None
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False

    @property
    def status(self) -> EngineStatus:
        """`starting` (fetching, converting or loading), `ready`, `crashed` (waiting to restart, or given
        up: see `last_error`) or `stopped`."""
        return self._status

    @property
    def finished(self) -> bool:
        """True once supervision has ended: stopped, or given up (see `last_error`)."""
        return self._task is not None and self._task.done()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.returncode is None else None

    async def start(self) -> None:
        """Start supervising in the background and return at once."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._status = "starting"
        self._task = asyncio.create_task(self._supervise(), name="engine-supervisor")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the engine answers, up to `timeout_s`; False if it did not (or gave up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._status == "ready":
                return True
            if self._task is None or self._task.done():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), min(1.0, deadline - time.monotonic()))
        return self._status == "ready"

    async def stop(self) -> None:
        """Stop the engine (SIGTERM, then SIGKILL after `stop_timeout_s`) and the supervision."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._terminate()
        self._status = "stopped"
        self._ready.clear()

    async def _supervise(self) -> None:
        try:
            model = await self._prepare()
            if model is None:
                return
            await self._run_with_restarts(model)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the supervisor must report, never take chatstack down
            log.exception("embedded model supervisor failed")
            self._fail(f"{type(exc).__name__}: {exc}")

    async def _prepare(self) -> str | None:
        config = self.config
        if not config.python.exists():
            self._fail(
                f"the engine's Python {config.python} does not exist: run `chatstack model install-engine` "
                "(make run does), or set CHATSTACK_ENGINE_PYTHON to a Python that has vLLM"
            )
            return None
        if await asyncio.to_thread(_port_in_use, config.host, config.port):
            self._fail(
                f"port {config.port} is already in use, so the embedded model cannot listen there: stop what "
                "uses it or set CHATSTACK_ENGINE_PORT (and the local backend's base_url) to a free port"
            )
            return None
        try:
            return await asyncio.to_thread(
                prepare_model, config.source, config.cache, config.python, self._progress
            )
        except WeightsError as exc:
            self._fail(str(exc))
            return None

    def _progress(self, message: str) -> None:
        log.info("embedded model: %s", message)

    def _fail(self, message: str) -> None:
        self.last_error = message
        self._status = "crashed"
        log.error("embedded model: %s", message)

    async def _run_with_restarts(self, model: str) -> None:
        config = self.config
        budget_used = 0
        while not self._stopping:
            self._status = "starting"
            started = time.monotonic()
            ready = await self._start_once(model)
            if ready:
                self._status = "ready"
                self._ready.set()
                log.info(
                    "embedded model ready: %s at %s (%.0f s)",
                    config.source.served_name,
                    config.base_url,
                    time.monotonic() - started,
                )
                assert self._process is not None
                code = await self._process.wait()
                self._ready.clear()
                if self._stopping:
                    return
                if time.monotonic() - started > STABLE_AFTER_S:
                    budget_used = 0
                self.last_error = f"the engine exited with code {code}; see {config.log_path}"
            self._status = "crashed"
            log.error("embedded model: %s", self.last_error)
            await self._terminate()
            if budget_used >= config.max_restarts:
                self.last_error = f"{self.last_error} (gave up after {budget_used} restarts)"
                log.error("embedded model: giving up after %d restarts", budget_used)
                return
            delay = min(config.backoff_s * 2**budget_used, config.backoff_max_s)
            budget_used += 1
            self.restarts += 1
            log.warning("embedded model: restarting in %.0f s (restart %d of at most %d)",
                        delay, budget_used, config.max_restarts)  # fmt: skip
            await asyncio.sleep(delay)

    async def _start_once(self, model: str) -> bool:
        """Spawn the engine and wait until it is healthy; False if it exited or never answered."""
        config = self.config
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = config.command(model)
        with config.log_path.open("ab") as log_file:
            log_file.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n".encode())
            log_file.flush()
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=config.environment(),
                start_new_session=True,  # its own process group, so stop() reaches its workers too
                preexec_fn=_parent_death_signal(),
            )
        host = "Ray Serve" if config.engine == "ray" else "vLLM"
        log.info("starting embedded model %s on %s (pid %d, log %s)",
                 config.source.served_name, host, self._process.pid, config.log_path)  # fmt: skip
        return await self._wait_healthy(self._process)

    async def _wait_healthy(self, process: asyncio.subprocess.Process) -> bool:
        config = self.config
        url = f"http://{config.host}:{config.port}/health"
        started = time.monotonic()
        next_report = started + config.progress_every_s
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if process.returncode is not None:
                    self.last_error = (
                        f"the engine exited with code {process.returncode} while starting; "
                        f"see {config.log_path}"
                    )
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return True
                now = time.monotonic()
                if now - started > config.start_timeout_s:
                    self.last_error = f"the engine did not answer within {config.start_timeout_s:g} s"
                    await self._terminate()
                    return False
                if now >= next_report:
                    log.info("starting embedded model: %.0f s ...", now - started)
                    next_report = now + config.progress_every_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), config.poll_s)

    async def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        # The engine runs worker processes of its own; signal the whole group it leads.
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.config.stop_timeout_s)
            except TimeoutError:
                log.warning(
                    "embedded model did not stop within %.0f s; killing it", self.config.stop_timeout_s
                )
            log.info("embedded model stopped (exit %s)", process.returncode)
        # Whatever is left of the group (workers of a crashed engine, or a leader that ignored SIGTERM).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            await process.wait()
        # And of its session (it was started with start_new_session, so the session id is its pid).
        left = await asyncio.to_thread(_kill_session, process.pid)
        if left:
            log.warning("embedded model: killed %d process(es) it left behind", left)
