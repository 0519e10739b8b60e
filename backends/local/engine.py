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
import logging
import os
import shlex
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from backends.local.cpu_features import bf16_warning, cpu_flags, describe
from backends.local.model_source import ModelSource, prepare_model, resolve_model
from backends.local.settings import LocalSettings
from backends.local.weights import ModelCache, WeightsError
from backends.processes import kill_session, start_child, stop_group

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
    compile: bool = False
    """torch.compile the model (vLLM's default) rather than run it eagerly (`--enforce-eager`)."""
    decode_kernel: bool = True
    """int8 layers decode on chatstack's kernel (`int8_decode.py`) where it can be built."""
    tool_parser: str = "chatstack_qwen"
    cpu_flags: frozenset[str] = frozenset()
    """This CPU's flags (`cpu_features.cpu_flags`), for the log."""
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
    cache_dir: Path | None = None
    """vLLM's compile cache (`VLLM_CACHE_ROOT`, torch.compile and inductor artifacts), kept so that later
    starts skip compiling; default: `engine-cache` beside the log folder."""
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def bound_cpus(self) -> tuple[int, ...]:
        return self.cpus or tuple(sorted(os.sched_getaffinity(0)))

    @property
    def ray_home(self) -> Path:
        return self.ray_dir or self.log_path.parent.parent / "ray"

    @property
    def compile_cache(self) -> Path:
        return self.cache_dir or self.log_path.parent.parent / "engine-cache"

    def compile_cache_is_warm(self) -> bool:
        """Whether an earlier start left compiled artifacts to reuse (a rough sign: they are keyed by
        model and settings, so another model still compiles once)."""
        return any(
            folder.is_dir() and any(folder.iterdir())
            for folder in (
                self.compile_cache / "inductor",
                self.compile_cache / "vllm" / "torch_compile_cache",
            )
        )

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
            # Prefill in chunks of 512 tokens: no slower on two cores than vLLM's 2048, and when compiling,
            # the start-up profiling pass over one full chunk is a quarter as long.
            "--max-num-batched-tokens",
            "512",
            # Prefix-cache blocks of 32 tokens, the CPU backend's smallest (its default is 128): an agent's
            # steps share the system prompt and tool definitions, of which 128-token blocks reuse only whole
            # ones (hits 66% -> 78% over the task set, first token 15% sooner; docs/embedded-model.md).
            "--block-size",
            "32",
            *(() if self.compile else ("--enforce-eager",)),
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
        # Under the data directory rather than ~/.cache/vllm and /tmp: compiling takes most of a cold
        # start, and a second start that finds the artifacts skips it. Settings of the user's win.
        env.setdefault("VLLM_CACHE_ROOT", str(self.compile_cache / "vllm"))
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.compile_cache / "inductor"))
        # vLLM 0.32 on CPU saves an AOT-compiled model but cannot load it back ("'function' object has no
        # attribute 'finalize_loading'"), so with AOT every start compiled again (about 40 s); without it
        # the model is traced again and inductor's compiled kernels come from the cache above.
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        env["CHATSTACK_ENGINE_DECODE_KERNEL"] = "1" if self.decode_kernel else "0"
        # One build per machine, beside the weights, whichever data directory runs the engine.
        env.setdefault("CHATSTACK_KERNEL_DIR", str(self.cache.root / "kernels"))
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
        source=resolve_model(settings.model, settings.served_model_name, settings.model_precision or None),
        cache=ModelCache(settings.model_cache),
        log_path=settings.data_dir / "logs" / "engine.log",
        host=settings.engine_host,
        port=settings.engine_port,
        max_model_len=settings.engine_max_model_len,
        cpus=cpus,
        kv_cache_gb=settings.engine_kv_cache_gb,
        compile=settings.engine_compile,
        decode_kernel=settings.engine_decode_kernel,
        extra_args=tuple(shlex.split(settings.engine_extra_args)),
        engine=settings.engine,
        ray_dir=settings.data_dir / "ray",
        cache_dir=settings.data_dir / "engine-cache",
        start_timeout_s=settings.engine_start_timeout_s,
        max_restarts=settings.engine_max_restarts,
        cpu_flags=cpu_flags(),
    )


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


ReadyHook = Callable[[], Awaitable[object]]
"""Awaited once the engine answers `/health`, before `status` says `ready` (see `EngineSupervisor`)."""
READY_HOOK_TIMEOUT_S = 10.0


class EngineSupervisor:
    """Starts, watches and stops the embedded engine. One instance per `chatstack serve`.

    `on_ready` runs each time the engine has become healthy, before `status` turns `ready`: chatstack
    refreshes the `local` backend's health there, so that nothing reading both (`GET /api/backends`)
    sees a ready engine with a stale "down" from a poll made while it was still loading.
    """

    def __init__(self, config: LocalEngineConfig, on_ready: ReadyHook | None = None) -> None:
        self.config = config
        self._on_ready = on_ready
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
            warm = config.compile and config.compile_cache_is_warm()
            ready = await self._start_once(model, warm)
            if ready:
                await self._announce_ready()
                self._status = "ready"
                self._ready.set()
                if not config.compile:
                    cache = "not compiled"
                else:
                    cache = "compile cache reused" if warm else "compile cache filled for the next start"
                log.info(
                    "embedded model ready: %s at %s (%.0f s, %s)",
                    config.source.served_name,
                    config.base_url,
                    time.monotonic() - started,
                    cache,
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

    async def _announce_ready(self) -> None:
        if self._on_ready is None:
            return
        try:
            await asyncio.wait_for(self._on_ready(), READY_HOOK_TIMEOUT_S)
        except Exception:  # a listener's failure must not stop the engine from serving
            log.exception("embedded model: the ready hook failed")

    async def _start_once(self, model: str, warm: bool) -> bool:
        """Spawn the engine and wait until it is healthy; False if it exited or never answered."""
        config = self.config
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = config.command(model)
        with config.log_path.open("ab") as log_file:
            log_file.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n".encode())
            log_file.flush()
            # Its own process group, so stop() reaches its workers too; it dies with chatstack.
            self._process = await start_child(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=config.environment(),
            )
        host = "Ray Serve" if config.engine == "ray" else "vLLM"
        precision = config.source.precision if config.source.spec else "as the folder holds it"
        log.info("starting embedded model %s (%s) on %s, CPU: %s (pid %d, log %s)",
                 config.source.served_name, precision, host, describe(config.cpu_flags), self._process.pid,
                 config.log_path)  # fmt: skip
        if warning := bf16_warning(precision, config.cpu_flags):
            log.warning("embedded model: %s", warning)
        if not config.compile:
            log.info("embedded model: running eagerly, nothing to compile (CHATSTACK_ENGINE_COMPILE=1 "
                     "compiles it, cached in %s)", config.compile_cache)  # fmt: skip
        elif warm:
            log.info("embedded model: reusing the compile cache in %s", config.compile_cache)
        else:
            log.info("embedded model: first start with compile cache %s: compiling takes a few minutes "
                     "once; later starts reuse it", config.compile_cache)  # fmt: skip
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
        running = process.returncode is None
        # The engine runs worker processes of its own: SIGTERM goes to the whole group it leads, and a
        # SIGKILL to whatever is left of it (workers of a crashed engine, or a leader that ignored SIGTERM).
        stopped = await stop_group(process, [(signal.SIGTERM, self.config.stop_timeout_s)])
        if running:
            if not stopped:
                log.warning(
                    "embedded model did not stop within %.0f s; killed it", self.config.stop_timeout_s
                )
            log.info("embedded model stopped (exit %s)", process.returncode)
        # And of its session (it leads the session of its own pid): Ray's workers (its Serve controller,
        # proxy, replicas and their vLLM processes) each lead a process group of their own.
        left = await asyncio.to_thread(kill_session, process.pid)
        if left:
            log.warning("embedded model: killed %d process(es) it left behind", left)
