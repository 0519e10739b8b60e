"""The apps on a real Ray Serve (2.60, in the engine virtualenv), with a scripted engine in place of vLLM.

One local Ray cluster for the module (tests/serve/ray_harness.py, run by the engine's Python: Ray and vLLM
cannot live in chatstack's environment), with logical GPUs and `accelerator_type:A10G` resources. The
tests build every app with the real `ray.serve.llm` builders, then deploy the committed config files the
way `serve run` does and talk to them over HTTP with LangChain's `ChatOpenAI`, like chatstack does.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from backends.local.settings import LocalSettings
from backends.serve import render
from backends.serve.apps import APPS, DEEPSEEK_MODEL_ID, QWEN_MODEL_ID
from tests.support.processes import ROOT, free_port, start_chatstack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ENGINE_CLS = "tests.serve.scripted_engine:ScriptedEngine"
SERVED = ["qwen", "deepseek-pd", "qwen-serverless"]
START_TIMEOUT_S = 180.0
DEPLOY_TIMEOUT_S = 300.0
QWEN_SERVER = f"LLMServer:{QWEN_MODEL_ID.replace('.', '_')}"
"""Ray Serve's name for the model's deployment (dots are not allowed in deployment names)."""


class Harness:
    """The harness process: one JSON command per line in, one `@@ <json>` line out per command."""

    def __init__(self, process: subprocess.Popen[str], port: int, log_path: Path) -> None:
        self.process, self.port, self.log_path = process, port, log_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("a") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                if line.startswith("@@ "):
                    self._lines.put(line[3:])
        self._lines.put(None)

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no answer from the Ray harness in {timeout:.0f} s; see {self.log_path}"
            ) from None
        if line is None:
            raise AssertionError(f"the Ray harness exited ({self.process.poll()}); see {self.log_path}")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, command: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.receive(timeout)

    def url(self, app: str) -> str:
        return f"http://127.0.0.1:{self.port}/{app}/v1"

    def close(self) -> None:
        """Shut Serve and the cluster down (closing stdin does), or end the harness's own process group."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: only what it started
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def engine_python() -> Path:
    python = LocalSettings().resolved_engine_python()
    if not python.exists():
        pytest.fail(f"no engine Python at {python}: run `chatstack model install-engine` (make test does)")
    return python


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, log_dir: Path) -> Iterator[Harness]:
    temp_dir = tmp_path_factory.mktemp("ray")
    # Ray puts Unix sockets under <temp>/session_<date>_<pid>/sockets/ and refuses paths over 107 bytes.
    assert len(str(temp_dir)) <= 48, f"pytest's temp dir {temp_dir} is too long for Ray's socket paths"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAYLLM_VLLM_ENGINE_CLS": ENGINE_CLS,
        "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    process = subprocess.Popen(
        [
            str(engine_python()),
            "-m",
            "tests.serve.ray_harness",
            "--temp-dir",
            str(temp_dir),
            "--http-port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    harness = Harness(process, port, log_dir / f"ray-serve-{port}.log")
    try:
        ready = harness.receive(START_TIMEOUT_S)
        assert ready.get("ready"), ready
        yield harness
    finally:
        harness.close()


# -- building the apps with the real ray.serve.llm --------------------------------------------------------


def build(cluster: Harness, import_path: str, args: Any) -> dict[str, Any]:
    return cluster.send({"cmd": "build", "import_path": import_path, "args": args})


def gpus(bundles: list[dict[str, float]]) -> float:
    return sum(bundle.get("GPU", 0) for bundle in bundles)


def test_every_app_builds_with_ray_serve_llm(cluster: Harness) -> None:
    built = {}
    for name, app in APPS.items():
        result = build(cluster, app.import_path, app.args)
        assert result["ok"], f"{name}: {result.get('error')}"
        built[name] = result["deployments"]

    qwen = built["qwen"][QWEN_SERVER]
    assert gpus(qwen["bundles"]) == 1
    assert all("accelerator_type:A10G" in b for b in qwen["bundles"])
    assert qwen["autoscaling"] == {"min_replicas": 1, "initial_replicas": None, "max_replicas": 4}

    serverless = built["qwen-serverless"]
    assert serverless[QWEN_SERVER]["autoscaling"]["min_replicas"] == 0
    assert serverless[QWEN_SERVER]["autoscaling"]["initial_replicas"] == 0
    assert serverless["OpenAiIngress"]["autoscaling"]["min_replicas"] == 0, "the ingress scales to zero too"

    pd = built["deepseek-pd"]
    assert set(pd) == {"OpenAiIngress", f"Prefill:{DEEPSEEK_MODEL_ID}", f"Decode:{DEEPSEEK_MODEL_ID}"}
    for role, port in (("Prefill", "20000"), ("Decode", "22000")):
        deployment = pd[f"{role}:{DEEPSEEK_MODEL_ID}"]
        assert gpus(deployment["bundles"]) == 2, "tensor parallel 2"
        assert deployment["num_replicas"] == 1
        assert deployment["env_vars"]["VLLM_NIXL_SIDE_CHANNEL_PORT"] == port
        assert deployment["env_vars"]["UCX_TLS"] == "cuda_ipc,cuda_copy,tcp"

    deepseek = built["deepseek"][f"LLMServer:{DEEPSEEK_MODEL_ID}"]
    assert gpus(deepseek["bundles"]) == 2
    assert deepseek["autoscaling"]["max_replicas"] == 2


def _qwen_args(**engine: Any) -> dict[str, Any]:
    args = json.loads(json.dumps(APPS["qwen"].args))
    args["llm_configs"][0]["engine_kwargs"].update(engine)
    return args


def test_ray_refuses_an_unknown_engine_argument(cluster: Harness) -> None:
    result = build(cluster, "ray.serve.llm:build_openai_app", _qwen_args(max_model_length=8192))
    assert not result["ok"]
    assert "Unknown engine argument: max_model_length" in result["error"]


def test_a_mismatched_prefill_decode_pair_is_refused(cluster: Harness) -> None:
    args = json.loads(json.dumps(APPS["deepseek-pd"].args))
    args["decode_config"]["model_loading_config"]["model_id"] = "another-model"
    by_ray = build(cluster, "ray.serve.llm:build_pd_openai_app", args)
    assert not by_ray["ok"]
    assert "P/D model id mismatch" in by_ray["error"]

    args = json.loads(json.dumps(APPS["deepseek-pd"].args))
    args["decode_config"]["engine_kwargs"]["max_model_len"] = 4096
    assert build(cluster, "ray.serve.llm:build_pd_openai_app", args)["ok"], "Ray lets this one through"
    ours = build(cluster, APPS["deepseek-pd"].import_path, args)
    assert not ours["ok"]
    assert "PairingError: engine_kwargs.max_model_len differs" in ours["error"]


def test_the_push_connector_alternative_in_the_docs_builds(cluster: Harness) -> None:
    """docs/ray-serve.md: on GPUs without NVLink or RDMA, swap the pull connector for the push one."""
    args = json.loads(json.dumps(APPS["deepseek-pd"].args))
    for role in ("prefill_config", "decode_config"):
        args[role]["engine_kwargs"]["kv_transfer_config"]["kv_connector"] = "NixlPushConnector"
    result = build(cluster, APPS["deepseek-pd"].import_path, args)
    assert result["ok"], result.get("error")
    ports = {
        name: d["env_vars"]["VLLM_NIXL_SIDE_CHANNEL_PORT"]
        for name, d in result["deployments"].items()
        if d["env_vars"]
    }
    assert sorted(ports.values()) == ["20000", "22000"], "the pinned ports keep prefill and decode apart"


def test_the_builder_refuses_an_over_budget_config_before_any_gpu_is_claimed(cluster: Harness) -> None:
    result = build(
        cluster, APPS["qwen"].import_path, _qwen_args(max_model_len=32_768, gpu_memory_utilization=0.7)
    )
    assert not result["ok"]
    assert "BudgetError: qwen2.5-7b-instruct: does not fit" in result["error"]


# -- serving the committed config files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(cluster: Harness) -> Harness:
    started = time.monotonic()
    configs = [str(render.config_path(APPS[name])) for name in SERVED]
    result = cluster.send(
        {"cmd": "deploy", "configs": configs, "timeout_s": DEPLOY_TIMEOUT_S}, DEPLOY_TIMEOUT_S + 30
    )
    assert result["ok"], json.dumps(result, indent=1)
    print(f"deployed {', '.join(SERVED)} in {time.monotonic() - started:.1f} s")
    return cluster


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return "4"


def chat(served: Harness, app: str, model: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=served.url(app), model=model, api_key="unused", timeout=120, max_retries=0)


def stream_text(llm: ChatOpenAI | Any, prompt: str) -> tuple[str, AIMessageChunk]:
    total: AIMessageChunk | None = None
    pieces = []
    for piece in llm.stream([HumanMessage(prompt)]):
        pieces.append(piece)
        total = piece if total is None else total + piece
    assert total is not None
    assert len(pieces) > 2, "the answer arrives in several chunks"
    return str(total.content), total


@pytest.mark.parametrize(("app", "model"), [("qwen", QWEN_MODEL_ID), ("deepseek-pd", DEEPSEEK_MODEL_ID)])
def test_a_chat_answer_streams_through_chatopenai(served: Harness, app: str, model: str) -> None:
    models = httpx.get(f"{served.url(app)}/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == [model]
    text, total = stream_text(chat(served, app, model), "hello from chatstack")
    assert text == "Echo: hello from chatstack"
    fingerprint = total.response_metadata.get("system_fingerprint", "")
    if app == "deepseek-pd":
        # The decode engine continued a prefill: both NIXL ids carry the pinned loopback side channel.
        assert fingerprint.startswith("pd decode="), fingerprint
        decode, prefill = (part.split("=", 1)[1] for part in fingerprint.split()[1:])
        assert decode.endswith("-127.0.0.1-22000")
        assert prefill.endswith("-127.0.0.1-20000")
    else:
        assert fingerprint == f"scripted {model}"


@pytest.mark.parametrize(("app", "model"), [("qwen", QWEN_MODEL_ID), ("deepseek-pd", DEEPSEEK_MODEL_ID)])
def test_a_tool_call_round_trip_through_chatopenai(served: Harness, app: str, model: str) -> None:
    llm = chat(served, app, model).bind_tools([calculator])
    question = HumanMessage("calc: 2+2")
    call = llm.invoke([question])
    assert isinstance(call, AIMessage)
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [("calculator", {"expression": "2+2"})]

    streamed: AIMessageChunk | None = None
    for piece in llm.stream([question]):
        streamed = piece if streamed is None else streamed + piece
    assert streamed is not None
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [("calculator", {"expression": "2+2"})]

    result = ToolMessage("4", tool_call_id=call.tool_calls[0]["id"])
    answer = llm.invoke([question, call, result])
    assert answer.content == "The result is 4."


def test_chatstack_waits_for_serverless_qwen_to_start_from_zero(
    served: Harness, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """chatstack's `cold_start_timeout_s` against the real thing: Ray Serve scaling up from zero."""
    before = served.send({"cmd": "status"})["apps"]["qwen-serverless"]
    assert before["status"] == "RUNNING"
    assert {name: d["running"] for name, d in before["deployments"].items()} == {
        QWEN_SERVER: 0,
        "OpenAiIngress": 0,
    }, "idle: nothing runs, no GPU is held"

    data_dir = tmp_path_factory.mktemp("chatstack-serverless")
    backend = {
        "name": "qwen-serverless",
        "base_url": served.url("qwen-serverless"),
        "model": QWEN_MODEL_ID,
        "cold_start_timeout_s": 240,
    }
    (data_dir / "backends.yaml").write_text(yaml.safe_dump({"backends": [backend]}))
    chatstack = start_chatstack(
        {
            "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
            "CHATSTACK_BACKENDS_FILE": str(data_dir / "backends.yaml"),
            "CHATSTACK_DEFAULT_BACKEND": "qwen-serverless",
            "CHATSTACK_DATA_DIR": str(data_dir),
            "CHATSTACK_UI": "false",
        },
        log_dir,
    )
    try:
        with httpx.Client(base_url=chatstack.url, timeout=30) as client:
            conversation = client.post("/api/conversations", json={}).json()["id"]
            response = client.post(f"/api/conversations/{conversation}/messages", json={"content": "wake up"})
            assert response.status_code == 202, response.text
            events = read_run_events(client, response.json()["run_id"], timeout_s=300)
    finally:
        chatstack.stop()

    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "run.finished"
    assert events[-1][1]["status"] == "completed", events
    assert kinds.index("backend.starting") < kinds.index("backend.ready") < kinds.index("message.delta")
    waited_s = next(data for kind, data in events if kind == "backend.ready")["waited_ms"] / 1000
    answer = next(data for kind, data in events if kind == "message.completed")["content"]
    assert answer == "Echo: wake up"
    after = served.send({"cmd": "status"})["apps"]["qwen-serverless"]["deployments"]
    assert after[QWEN_SERVER]["running"] == 1
    print(f"cold start from zero replicas, as chatstack waited for it: {waited_s:.1f} s")


def read_run_events(client: httpx.Client, run_id: str, timeout_s: float) -> list[tuple[str, dict[str, Any]]]:
    """A run's SSE events as (type, data), to the end of the stream."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with client.stream("GET", f"/api/runs/{run_id}/events", timeout=timeout_s) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind:
                events.append((kind, json.loads(line[5:])))
    return events
