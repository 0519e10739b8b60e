"""The engine supervisor, driving a stand-in engine process: start, health wait, restarts, stop."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from backends.local.catalogue import get_model
from backends.local.engine import EngineSupervisor, LocalEngineConfig, engine_config
from backends.local.model_source import ModelSource, resolve_model
from backends.local.settings import LocalSettings
from backends.local.weights import ModelCache
from tests.support.processes import free_port

# A stand-in for `python -m vllm.entrypoints.openai.api_server`: same module path, same --port flag.
# FAKE_MODE: "ok" (healthy after FAKE_DELAY_S), "exit" (dies while starting), "crash_once" (healthy,
# then dies once), "stubborn" (ignores SIGTERM), "escape" (its worker leaves its process group). It starts
# a child "worker", as vLLM does.
FAKE_ENGINE = textwrap.dedent(
    """
    import argparse, http.server, json, os, signal, subprocess, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    args, _ = parser.parse_known_args()
    state = os.environ["FAKE_STATE"]
    starts = len(open(state).read().splitlines()) if os.path.exists(state) else 0
    mode = os.environ.get("FAKE_MODE", "ok")
    # "escape": the worker leads a process group of its own, as Ray's workers do (same session).
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              process_group=0 if mode == "escape" else None)
    with open(state, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "worker": worker.pid, "argv": sys.argv[1:],
                              "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_", "HF_"))},
                              "pythonpath": os.environ.get("PYTHONPATH", "")}) + "\\n")
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("FAKE_DELAY_S", "0.2")))
    if mode == "exit":
        sys.exit(3)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", args.port), Health)
    if mode == "crash_once" and starts == 0:
        server.timeout = 0.2
        for _ in range(5):
            server.handle_request()
        os._exit(7)
    server.serve_forever()
    """
)


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    module = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
    module.mkdir(parents=True)
    (module / "api_server.py").write_text(FAKE_ENGINE)
    return tmp_path / "fake"


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
        "HF_HUB_OFFLINE": "1",
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
