"""The engine supervisor, driving a stand-in engine process: start, health wait, restarts, stop."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from backends.client.config import BackendConfig
from backends.client.registry import BackendRegistry
from backends.local.catalogue import get_model
from backends.local.engine import EngineSupervisor, LocalEngineConfig, engine_config
from backends.local.model_source import ModelSource, resolve_model
from backends.local.settings import LocalSettings
from backends.local.weights import ModelCache
from tests.support.processes import free_port


def config_for(tmp_path: Path, fake: Path, mode: str = "ok", **changes: object) -> LocalEngineConfig:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    config = LocalEngineConfig(
        python=Path(sys.executable),
        source=ModelSource(None, str(folder), "tiny-instruct"),
        cache=ModelCache(tmp_path / "cache"),
        log_path=tmp_path / "logs" / "engine.log",
        port=free_port(),
        cpus=(0,),
        backoff_s=0.1,
        backoff_max_s=0.2,
        stop_timeout_s=5,
        poll_s=0.1,
        extra_env={"PYTHONPATH": str(fake), "FAKE_MODE": mode, "FAKE_STATE": str(tmp_path / "starts.jsonl")},
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def starts(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_starts_waits_for_health_and_stops_the_whole_group(tmp_path: Path, fake_engine: Path) -> None:
    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine))
    await supervisor.start()
    assert supervisor.status == "starting"
    assert await supervisor.wait_ready(30)
    assert supervisor.status == "ready"

    [started] = starts(tmp_path)
    argv = started["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--served-model-name") + 1] == "tiny-instruct"
    assert argv[argv.index("--tool-call-parser") + 1] == "chatstack_qwen"
    assert argv[argv.index("--tool-parser-plugin") + 1].endswith("backends/local/tool_parser.py")
    assert started["env"] == {
        "VLLM_CPU_OMP_THREADS_BIND": "0",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_CACHE_ROOT": str(tmp_path / "engine-cache" / "vllm"),
        "VLLM_USE_AOT_COMPILE": "0",
        "HF_HUB_OFFLINE": "1",
        # The int8 decode kernel is built once per machine, beside the weights (not per data dir).
        "CHATSTACK_ENGINE_DECODE_KERNEL": "1",
        "CHATSTACK_KERNEL_DIR": str(tmp_path / "cache" / "kernels"),
    }
    assert "==== " in (tmp_path / "logs" / "engine.log").read_text()

    await supervisor.stop()
    assert supervisor.status == "stopped"
    assert not alive(int(started["pid"]))  # type: ignore[call-overload]
    await wait_for(lambda: not alive(int(started["worker"])), timeout=10)  # type: ignore[call-overload]


async def test_restarts_after_a_crash(tmp_path: Path, fake_engine: Path) -> None:
    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine, "crash_once"))
    await supervisor.start()
    try:
        await wait_for(lambda: len(starts(tmp_path)) == 2 and supervisor.status == "ready")
        assert supervisor.restarts == 1
        first = starts(tmp_path)[0]
        await wait_for(lambda: not alive(int(first["worker"])), timeout=10)  # type: ignore[call-overload]
    finally:
        await supervisor.stop()


async def test_gives_up_after_the_restart_budget(tmp_path: Path, fake_engine: Path) -> None:
    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine, "exit", max_restarts=2))
    await supervisor.start()
    await wait_for(lambda: supervisor.finished)
    assert supervisor.status == "crashed"
    assert len(starts(tmp_path)) == 3
    assert supervisor.last_error is not None
    assert "exited with code 3 while starting" in supervisor.last_error
    assert "gave up after 2 restarts" in supervisor.last_error
    assert not await supervisor.wait_ready(0.1)
    await supervisor.stop()


async def test_an_engine_that_never_answers_is_stopped_and_retried(tmp_path: Path, fake_engine: Path) -> None:
    config = config_for(tmp_path, fake_engine, start_timeout_s=1.0, max_restarts=0, extra_env={
        "PYTHONPATH": str(fake_engine), "FAKE_STATE": str(tmp_path / "starts.jsonl"), "FAKE_DELAY_S": "60",
    })  # fmt: skip
    supervisor = EngineSupervisor(config)
    await supervisor.start()
    await wait_for(lambda: supervisor.finished)
    assert supervisor.last_error is not None
    assert "did not answer within 1 s" in supervisor.last_error
    assert not alive(int(starts(tmp_path)[0]["pid"]))  # type: ignore[call-overload]


async def test_an_engine_that_ignores_sigterm_is_killed(tmp_path: Path, fake_engine: Path) -> None:
    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine, "stubborn", stop_timeout_s=1.0))
    await supervisor.start()
    assert await supervisor.wait_ready(30)
    await supervisor.stop()
    assert not alive(int(starts(tmp_path)[0]["pid"]))  # type: ignore[call-overload]


async def test_workers_in_process_groups_of_their_own_are_stopped_too(
    tmp_path: Path, fake_engine: Path
) -> None:
    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine, "escape"))
    await supervisor.start()
    assert await supervisor.wait_ready(30)
    [started] = starts(tmp_path)
    worker = int(started["worker"])  # type: ignore[call-overload]
    assert os.getpgid(worker) == worker
    await supervisor.stop()
    await wait_for(lambda: not alive(worker), timeout=10)


async def test_without_the_engine_installed_it_says_how_to_install_it(
    tmp_path: Path, fake_engine: Path
) -> None:
    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine, python=tmp_path / "no" / "python"))
    await supervisor.start()
    await wait_for(lambda: supervisor.finished)
    assert supervisor.status == "crashed"
    assert "chatstack model install-engine" in (supervisor.last_error or "")
    assert starts(tmp_path) == []


async def test_a_busy_port_is_reported(tmp_path: Path, fake_engine: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        supervisor = EngineSupervisor(config_for(tmp_path, fake_engine, port=port))
        await supervisor.start()
        await wait_for(lambda: supervisor.finished)
    assert f"port {port} is already in use" in (supervisor.last_error or "")
    assert "CHATSTACK_ENGINE_PORT" in (supervisor.last_error or "")


def test_config_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CHATSTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("CHATSTACK_ENGINE_PORT", "8123")
    monkeypatch.setenv("CHATSTACK_ENGINE_EXTRA_ARGS", "--enforce-eager --seed 1")
    config = engine_config(LocalSettings(_env_file=None))  # type: ignore[call-arg]

    assert config.source.spec == get_model()
    assert config.source.served_name == get_model().served_name
    assert config.cache.root == tmp_path / "xdg-cache" / "chatstack"
    assert config.python == tmp_path / "xdg-data" / "chatstack" / "engine-venv" / "bin" / "python"
    assert config.base_url == "http://127.0.0.1:8123/v1"
    assert config.cpus == tuple(sorted(os.sched_getaffinity(0)))
    assert config.command("/models/x")[-3:] == ["--enforce-eager", "--seed", "1"]
    assert config.environment()["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, config.cpus))

    monkeypatch.setenv("CHATSTACK_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setenv("CHATSTACK_MODEL", "qwen2.5-coder-0.5b")
    config = engine_config(LocalSettings(_env_file=None))  # type: ignore[call-arg]
    assert config.cache.root == tmp_path / "models"
    assert config.source.served_name == "qwen2.5-coder-0.5b-instruct"

    monkeypatch.setenv("CHATSTACK_ENGINE_DECODE_KERNEL", "false")
    config = engine_config(LocalSettings(_env_file=None))  # type: ignore[call-arg]
    assert config.environment()["CHATSTACK_ENGINE_DECODE_KERNEL"] == "0"
    assert config.environment()["CHATSTACK_KERNEL_DIR"] == str(tmp_path / "models" / "kernels")


def test_the_ray_engine_runs_the_serve_launcher_with_the_same_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("CHATSTACK_", "RAY_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATSTACK_ENGINE", "ray")
    monkeypatch.setenv("CHATSTACK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHATSTACK_ENGINE_PORT", "8123")
    monkeypatch.setenv("CHATSTACK_MODEL", "qwen2.5-coder-0.5b")
    monkeypatch.setenv("CHATSTACK_ENGINE_EXTRA_ARGS", "--enforce-eager")
    config = engine_config(LocalSettings(_env_file=None))  # type: ignore[call-arg]
    assert config.engine == "ray"

    command = config.command("/models/x")
    assert command[:3] == [str(config.python), "-m", "backends.serve.local"]
    flags = dict(zip(command[3:-2:2], command[4:-2:2], strict=True))
    assert flags == {
        "--model": "/models/x",
        "--served-model-name": "qwen2.5-coder-0.5b-instruct",
        "--host": "127.0.0.1",
        "--port": "8123",
        "--max-model-len": "4096",
        "--tool-call-parser": "chatstack_qwen",
        "--temp-dir": str(tmp_path / "data" / "ray" / "tmp"),
        "--config-out": str(tmp_path / "data" / "ray" / "local-cpu.yaml"),
    }
    assert command[-2:] == ["--", "--enforce-eager"]
    assert config.log_path == tmp_path / "data" / "logs" / "engine.log"
    env = config.environment()
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, config.cpus))
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] == "60"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[2])

    monkeypatch.setenv("CHATSTACK_ENGINE", "tgi")
    with pytest.raises(ValueError, match="vllm"):
        LocalSettings(_env_file=None)  # type: ignore[call-arg]


def test_model_can_be_a_folder_or_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    local = resolve_model(str(folder))
    assert (local.spec, local.location, local.served_name) == (None, str(folder), "my-model")
    assert local.is_local_folder
    hub = resolve_model("Qwen/Qwen2.5-7B-Instruct", served_name="qwen")
    assert (hub.spec, hub.location, hub.served_name) == (None, "Qwen/Qwen2.5-7B-Instruct", "qwen")
    assert not hub.is_local_folder
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = LocalEngineConfig(
        python=Path(sys.executable), source=hub, cache=ModelCache(tmp_path), log_path=tmp_path / "log"
    ).environment()
    assert "HF_HUB_OFFLINE" not in env, "a hub id must be downloadable"


async def test_local_is_up_in_the_registry_the_moment_the_supervisor_says_ready(
    tmp_path: Path, fake_engine: Path
) -> None:
    """Between `starting` and `ready` the `local` backend must never read as `down`: the registry's last
    poll (made while the engine was loading) is refreshed before the supervisor says ready."""
    config = config_for(tmp_path, fake_engine, extra_env={
        "PYTHONPATH": str(fake_engine), "FAKE_STATE": str(tmp_path / "starts.jsonl"), "FAKE_DELAY_S": "1",
    })  # fmt: skip
    async with aiohttp.ClientSession() as http:
        local = BackendConfig(name="local", base_url=config.base_url, model="tiny-instruct")
        registry = BackendRegistry([local], http, "local")
        supervisor = EngineSupervisor(config, functools.partial(registry.check, "local"))
        await supervisor.start()
        try:
            await registry.check_all()  # the health poll, while the engine is still loading
            assert registry.health["local"].status == "down"
            assert supervisor.status == "starting"

            assert await supervisor.wait_ready(30)
            assert registry.health["local"].status == "up"
            assert registry.health["local"].models == ["tiny-instruct"]
        finally:
            await supervisor.stop()


async def test_a_failing_ready_hook_does_not_keep_the_engine_from_serving(
    tmp_path: Path, fake_engine: Path
) -> None:
    async def broken() -> None:
        raise RuntimeError("listener bug")

    supervisor = EngineSupervisor(config_for(tmp_path, fake_engine), broken)
    await supervisor.start()
    try:
        assert await supervisor.wait_ready(30)
    finally:
        await supervisor.stop()


async def test_the_compile_cache_lives_under_the_data_dir_and_a_second_start_reuses_it(
    tmp_path: Path, fake_engine: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path, fake_engine, compile=True)
    assert "--enforce-eager" not in config.command("/models/x")
    compiled = config.compile_cache / "inductor" / "ab"
    assert config.environment()["VLLM_CACHE_ROOT"] == str(tmp_path / "engine-cache" / "vllm")
    assert config.environment()["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "engine-cache" / "inductor")
    assert config.environment()["VLLM_USE_AOT_COMPILE"] == "0"
    caplog.set_level(logging.INFO, "chatstack.engine")

    supervisor = EngineSupervisor(config)
    await supervisor.start()
    assert await supervisor.wait_ready(30)
    await supervisor.stop()
    assert "compile cache filled for the next start" in caplog.text
    assert "reusing the compile cache" not in caplog.text

    compiled.mkdir(parents=True)  # what torch.compile leaves there after compiling (vLLM on CPU)
    (compiled / "artifact").write_text("x")
    caplog.clear()
    await supervisor.start()
    assert await supervisor.wait_ready(30)
    await supervisor.stop()
    assert f"reusing the compile cache in {config.compile_cache}" in caplog.text
    assert "compile cache reused" in caplog.text


async def test_by_default_the_engine_runs_eagerly_with_nothing_to_compile(
    tmp_path: Path, fake_engine: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path, fake_engine)
    command = config.command("/models/x")
    assert "--enforce-eager" in command
    assert command[command.index("--max-num-batched-tokens") + 1] == "512"
    assert command[command.index("--block-size") + 1] == "32"
    caplog.set_level(logging.INFO, "chatstack.engine")
    supervisor = EngineSupervisor(config)
    await supervisor.start()
    assert await supervisor.wait_ready(30)
    await supervisor.stop()
    assert "running eagerly, nothing to compile" in caplog.text
    assert ", not compiled)" in caplog.text


def test_a_users_own_vllm_cache_root_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "mine"))
    config = LocalEngineConfig(
        python=Path(sys.executable),
        source=ModelSource(None, str(tmp_path), "x"),
        cache=ModelCache(tmp_path),
        log_path=tmp_path / "data" / "logs" / "engine.log",
    )
    assert config.environment()["VLLM_CACHE_ROOT"] == str(tmp_path / "mine")
    assert config.environment()["TORCHINDUCTOR_CACHE_DIR"] == str(
        tmp_path / "data" / "engine-cache" / "inductor"
    )


def test_the_precision_setting_reaches_the_model_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("CHATSTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATSTACK_DATA_DIR", str(tmp_path / "data"))
    config = engine_config(LocalSettings(_env_file=None))  # type: ignore[call-arg]
    assert config.source.precision == get_model().precision
    assert config.compile_cache == tmp_path / "data" / "engine-cache"

    assert not config.compile
    monkeypatch.setenv("CHATSTACK_MODEL_PRECISION", "int4")
    monkeypatch.setenv("CHATSTACK_ENGINE_COMPILE", "1")
    config = engine_config(LocalSettings(_env_file=None))  # type: ignore[call-arg]
    assert config.source.precision == "int4"
    assert config.compile
    monkeypatch.setenv("CHATSTACK_MODEL_PRECISION", "int8")
    assert engine_config(LocalSettings(_env_file=None)).source.precision == "int8"  # type: ignore[call-arg]

    monkeypatch.setenv("CHATSTACK_MODEL_PRECISION", "fp8")
    with pytest.raises(ValueError, match="int4"):
        LocalSettings(_env_file=None)  # type: ignore[call-arg]
