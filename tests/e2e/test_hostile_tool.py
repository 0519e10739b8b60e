"""A hostile calculator expression, over HTTP: other users' requests go on, the run ends with a tool error.

`comb(10**300, 6*10**4)` once ran for a minute on the event loop: the tool timeout was not enforced and
`/healthz` answered after 59.9 s. How much delay remains is measured by `python -m bench.hostile_tool`;
these tests check the behaviour: the call ends in a tool error the model sees, within the tool
timeout, and requests sent alongside it complete while the hostile run is still going.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_backends_file
from tests.support.processes import ServerProcess, start_chatstack
from tests.support.search_servers import SearchServerState
from tests.support.sse import Event, answer_text, ask, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow

HOSTILE = ["comb(10**300, 6*10**4)", "perm(10**300, 3*10**4)", "factorial(10**6)", "9**9**9**9"]
TOOL_TIMEOUT_S = 10.0
SLOW_ANSWER = "delay: 60"
"""Token pacing of the hostile run's model, so the run is still going when the other requests end."""


@pytest.fixture(scope="module")
def server(
    scripted: ServerProcess,
    search: tuple[str, SearchServerState],
    tmp_path_factory: pytest.TempPathFactory,
    log_dir: Path,
) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("hostile")
    env = {
        "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
        "CHATSTACK_BACKENDS_FILE": str(write_backends_file(data_dir / "backends.yaml", scripted.url)),
        "CHATSTACK_DEFAULT_BACKEND": "scripted",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_SEARCH_PROVIDER": "searxng",
        "CHATSTACK_SEARXNG_URL": search[0],
        "CHATSTACK_TOOL_TIMEOUT_S": str(TOOL_TIMEOUT_S),
        "CHATSTACK_RATE_LIMIT_PER_MINUTE": "100000",
    }
    process = start_chatstack(env, log_dir)
    yield process
    process.stop()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        yield client


async def test_hostile_call_ends_in_a_tool_error_while_others_are_served(http: httpx.AsyncClient) -> None:
    hostile_cid = await new_conversation(http)
    other_cid = await new_conversation(http)
    order: list[str] = []

    async def hostile() -> list[Event]:
        run_id = await start_message(http, hostile_cid, f"calc: {HOSTILE[0]}\n{SLOW_ANSWER}")
        events = await read_events(http, run_id, timeout=90)
        order.append("hostile run finished")
        return events

    async def healthz() -> None:
        response = await http.get("/healthz")
        assert response.status_code == 200
        order.append("healthz")

    async def other_user() -> list[Event]:
        events = await ask(http, other_cid, "tokens: 5")
        order.append("other run finished")
        return events

    hostile_events, _, other_events = await asyncio.gather(hostile(), healthz(), other_user())

    # The others were served while the hostile run was still going, not after it.
    assert order[-1] == "hostile run finished", order
    assert other_events[-1].type == "run.finished"
    assert other_events[-1].data["status"] == "completed"
    assert answer_text(other_events).count(" ") == 4  # five words

    # The hostile run ended with a tool error, in good time, and the model saw it.
    finished = next(e.data for e in hostile_events if e.type == "tool.finished")
    assert finished["name"] == "calculator"
    assert finished["error"] is not None
    assert "too large" in finished["error"]
    assert finished["output"].startswith("Error: ")
    assert finished["duration_ms"] < TOOL_TIMEOUT_S * 1000
    assert hostile_events[-1].data["status"] == "completed"
    assert "The tool reported a problem" in answer_text(hostile_events)
    messages = (await http.get(f"/api/conversations/{hostile_cid}")).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2]["content"] == finished["output"]


async def test_many_hostile_calls_at_once_all_end_in_tool_errors(http: httpx.AsyncClient) -> None:
    async def hostile(expression: str) -> list[Event]:
        cid = await new_conversation(http)
        return await ask(http, cid, f"calc: {expression}")

    runs: list[list[Event]] = []
    for _ in range(3):  # as many at once as one user may run
        runs += await asyncio.gather(*(hostile(e) for e in HOSTILE))
    for events in runs:
        finished = next(e.data for e in events if e.type == "tool.finished")
        assert finished["error"] is not None, finished
        assert finished["duration_ms"] < TOOL_TIMEOUT_S * 1000
        assert events[-1].data["status"] == "completed"
    # And the calculator still answers ordinary questions afterwards.
    cid = await new_conversation(http)
    events = await ask(http, cid, "calc: 1234*5678")
    assert next(e.data for e in events if e.type == "tool.finished")["output"] == "7006652"
