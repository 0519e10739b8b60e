"""`chatstack serve --engine ray`: the embedded model as a Ray Serve app on this CPU, end to end.

chatstack starts and supervises `backends.serve.local` (the engine virtualenv's Python), which runs a
one-node Ray cluster and the `local` app built with `ray.serve.llm`'s `build_openai_app` on the real vLLM
CPU engine. Through chatstack's own API: a streamed plain answer, and an agent run whose calculator call
is parsed by the `chatstack_qwen` tool parser inside Ray (through the `vllm.general_plugins` entry point)
and completed by the agent. Then chatstack stops, and no process of this test may be left.

The 0.5B model keeps it to about three minutes on two cores (most of it Ray Serve loading the model);
it comes from the user's cache (`chatstack model fetch --model qwen2.5-coder-0.5b`; fetched here if not).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from backends.local.catalogue import get_model
from tests.local.tasks import Task, is_correct
from tests.support.processes import BIN, ServerProcess, free_port, start_process
from tests.support.sse import Event, new_conversation, read_events, start_message

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = get_model("qwen2.5-coder-0.5b")
ENGINE_START_TIMEOUT_S = 360.0
"""Measured 110-140 s on the two-core machine; a fetch and conversion first would add about a minute."""
RUN_TIMEOUT_S = 180.0


@dataclass
class RayChatstack:
    server: ServerProcess
    engine_url: str
    data_dir: Path
    healths_while_loading: list[str]
    """What chatstack's `GET /api/backends` said of `local` until the app's /health answered."""


def processes_of(data_dir: Path) -> list[str]:
    """Every live process started for this test: all inherit `CHATSTACK_DATA_DIR=<data_dir>` from chatstack
    (Ray's workers rename themselves, so their command lines do not tell)."""
    marker = f"CHATSTACK_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ.split(b"\0") and stat.rsplit(")", 1)[-1].split()[0] != "Z":
            found.append(f"{entry.name} {command[:120]}")
    return found


@pytest.fixture(scope="module")
def ray_chatstack(log_dir: Path) -> Iterator[RayChatstack]:
    # Short, because Ray's socket paths under <data_dir>/ray/tmp may not exceed 107 bytes.
    data_dir = Path(tempfile.mkdtemp(prefix="cs-ray-"))
    engine_port, port = free_port(), free_port()
    backends = data_dir / "backends.yaml"
    entry = {
        "name": "local",
        "kind": "embedded",
        "base_url": f"http://127.0.0.1:{engine_port}/v1",
        "model": MODEL.served_name,
        "tool_mode": "native",
        "answer_step": "inline",
        "context_length": 4096,
        "read_timeout_s": 300,
    }
    backends.write_text(yaml.safe_dump({"backends": [entry]}))
    server = start_process(
        [str(BIN / "chatstack"), "serve", "--port", str(port), "--engine", "ray"],
        health_url=f"http://127.0.0.1:{port}/healthz",
        base_url=f"http://127.0.0.1:{port}",
        env={
            "CHATSTACK_LOG_LEVEL": "INFO",
            "CHATSTACK_MODEL": MODEL.name,
            "CHATSTACK_DATA_DIR": str(data_dir),
            "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
            "CHATSTACK_BACKENDS_FILE": str(backends),
            "CHATSTACK_DEFAULT_BACKEND": "local",
            "CHATSTACK_HEALTH_INTERVAL_S": "2",
            "CHATSTACK_ENGINE_MAX_RESTARTS": "0",
        },
        log_path=log_dir / f"chatstack-ray-{port}.log",
    )
    started = time.monotonic()
    try:
        # The Ray app's own /health (like vLLM's): 200 once the model server is up, not before.
        deadline = started + ENGINE_START_TIMEOUT_S
        healths: list[str] = []
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.log()[-3000:]
            assert "giving up" not in server.log(), server.log()[-3000:]
            (local,) = httpx.get(f"{server.url}/api/backends", timeout=10).json()["items"]
            healths.append(local["health"])
            try:
                if httpx.get(f"http://127.0.0.1:{engine_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the Ray app did not answer /health in {ENGINE_START_TIMEOUT_S:.0f} s")
        print(f"\nRay Serve app ready {time.monotonic() - started:.0f} s after chatstack answered")
        yield RayChatstack(server, f"http://127.0.0.1:{engine_port}/v1", data_dir, healths)
    finally:
        server.stop(timeout=90)
        for name in ("engine.log",):
            log = data_dir / "logs" / name
            if log.exists():
                shutil.copy(log, log_dir / f"engine-ray-{engine_port}.log")
        if not processes_of(data_dir):
            shutil.rmtree(data_dir, ignore_errors=True)


async def run(base_url: str, prompt: str) -> list[Event]:
    async with httpx.AsyncClient(base_url=base_url, timeout=RUN_TIMEOUT_S) as client:
        conversation = await new_conversation(client)
        run_id = await start_message(client, conversation, prompt)
        return await read_events(client, run_id, timeout=RUN_TIMEOUT_S)


async def test_a_plain_answer_streams_through_ray_serve(ray_chatstack: RayChatstack) -> None:
    # Short on purpose: the 0.5B writes about 20 tokens/s here, and may go on for a minute when let.
    prompt = "In one short sentence: what colour is the sky on a clear day?"
    events = await run(ray_chatstack.server.url, prompt)
    assert events[-1].type == "run.finished", events
    assert events[-1].data["status"] == "completed", events
    deltas = [e for e in events if e.type == "message.delta"]
    assert len(deltas) >= 5, events
    assert not [e for e in events if e.type == "tool.started"]
    assert 0 < events[-1].data["timings"]["ttft_ms"] < events[-1].data["timings"]["total_ms"]
    print(f"\nplain answer: {events[-1].data['timings']}, {events[-1].data['usage']}")


async def test_the_agent_completes_a_calculator_call(ray_chatstack: RayChatstack) -> None:
    task = Task("What is 1234 * 5678?", ("7006652",), "calculator")
    events = await run(ray_chatstack.server.url, task.prompt)
    finished = [e.data for e in events if e.type == "tool.finished"]
    assert finished, f"no tool call: {events}"
    assert finished[0]["name"] == "calculator"
    assert finished[0]["output"] == "7006652", finished
    assert events[-1].type == "run.finished", events
    assert events[-1].data["status"] == "completed", events
    answer = [e.data["content"] for e in events if e.type == "message.completed"][-1]
    assert is_correct(task, answer), answer


async def test_chatstack_lists_the_backend_as_up(ray_chatstack: RayChatstack) -> None:
    async with httpx.AsyncClient(base_url=ray_chatstack.server.url) as client:
        backends = (await client.get("/api/backends")).json()["items"]
        models = (await client.get(f"{ray_chatstack.engine_url}/models")).json()
    (local,) = backends
    assert (local["name"], local["health"]) == ("local", "up")
    # While Ray loaded the model its ingress already answered /v1/models; chatstack said "starting".
    assert "starting" in ray_chatstack.healths_while_loading
    assert "up" not in ray_chatstack.healths_while_loading
    assert [m["id"] for m in models["data"]] == [MODEL.served_name]


def test_stopping_chatstack_leaves_no_ray_or_vllm_process(ray_chatstack: RayChatstack) -> None:
    assert processes_of(ray_chatstack.data_dir), "the test cannot see its own processes"
    started = time.monotonic()
    ray_chatstack.server.stop(timeout=90)
    stopped_s = time.monotonic() - started
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert ray_chatstack.server.process.returncode in (0, -signal.SIGTERM), ray_chatstack.server.log()[-3000:]
    assert processes_of(ray_chatstack.data_dir) == []
    log = ray_chatstack.server.log()
    assert f"embedded model ready: {MODEL.served_name}" in log
    assert "on Ray Serve" in log
    engine_log = (ray_chatstack.data_dir / "logs" / "engine.log").read_text(errors="replace")
    assert "shutting Ray and Serve down" in engine_log
    assert "stopped (Ray shut down in" in engine_log
    # Ray's shutdown ends its workers; vLLM's engine processes under them may still be exiting, and the
    # supervisor SIGKILLs what is left of the session (it logs "killed N process(es) it left behind").
    swept = [line for line in log.splitlines() if "left behind" in line]
    print(f"\nchatstack and the Ray app stopped in {stopped_s:.1f} s; {swept}")
