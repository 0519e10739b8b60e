"""The embedded model through `make run`'s default stack (the shipped `local` backend and tools file):
one question answered with an MCP server's tool (issue 12), one about an attached document (issue 13).

Slow: the module starts its own engine (one to two minutes on two cores). The small model is not always
right: each question may be asked twice (the rates measured over repeated runs are in the docstrings).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.local.embedded_stack import default_stack, shipped_tools_with, time_server
from tests.support.pdfs import text_pdf
from tests.support.processes import ServerProcess
from tests.support.sse import Event, new_conversation, read_events, start_message

# The first test also waits for the engine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ANSWER_TIMEOUT_S = 600.0
TIME_QUESTION = "What is the current time in Tokyo? Use the get_current_time tool."
TOKYO = ZoneInfo("Asia/Tokyo")
CLOCK_TOLERANCE = timedelta(minutes=1)
DOCUMENT_LINES = [
    "Office directory, updated in November.",
    "The Porto office opens at 8:30 and closes at 18:00.",
    "The access code for the Lisbon office is 4721.",
    "The Madrid office has no access code: ring the bell.",
]
DOCUMENT_QUESTION = "What is the access code for the Lisbon office? Answer from the attached document."
DOCUMENT_FACT = "4721"
_CLOCK_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?::\d{2})?(?:\s*([AaPp])\.?[Mm]\b)?")


@dataclass(frozen=True)
class Outcome:
    correct: bool
    answer: str
    detail: str


@pytest.fixture(scope="module")
def default_stack_with_time(
    engine: ServerProcess, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """chatstack as `make run` starts it, with mcp-server-time added to the shipped tools file."""
    tools = shipped_tools_with([time_server()])
    with default_stack(engine, tmp_path_factory.mktemp("default-stack"), log_dir, tools) as server:
        wait_for_tool(server.url, "get_current_time")
        yield server.url


def wait_for_tool(url: str, name: str, timeout_s: float = 60) -> None:
    """chatstack is healthy before its MCP servers connect (it never waits for them): a run started
    earlier is not offered their tools."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = {t["name"]: t for t in httpx.get(f"{url}/api/tools").json()["items"]}
        if name in listed and listed[name]["status"] == "available":
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} is not available after {timeout_s:g} s: {listed}")


def final_answer(events: list[Event]) -> str:
    completed = [e for e in events if e.type == "message.completed"]
    return str(completed[-1].data["content"]) if completed else ""


def says_time(answer: str, moment: datetime) -> bool:
    """Whether `answer` gives `moment` as a clock time, to the minute (give or take one): 24-hour
    ("14:05"), or 12-hour with the right AM/PM ("2:05 PM"), or 12-hour without it ("2:05")."""
    for hour, minute, half in _CLOCK_TIME.findall(answer):
        if half:
            right_hour = int(hour) % 12 + (12 if half.lower() == "p" else 0) == moment.hour
        else:
            right_hour = int(hour) in {moment.hour, moment.hour % 12 or 12}
        if right_hour and abs(int(minute) - moment.minute) <= 1:
            return True
    return False


async def ask_the_time(client: httpx.AsyncClient) -> Outcome:
    """Asks `TIME_QUESTION` in a new conversation; correct when the time tool ran for Tokyo (its result
    within a minute of the real clock) and the answer gives the hour it returned."""
    conversation = await new_conversation(client)
    asked_at = datetime.now(UTC)
    run_id = await start_message(client, conversation, TIME_QUESTION)
    events = await read_events(client, run_id, timeout=ANSWER_TIMEOUT_S)
    answer = final_answer(events)
    assert events[-1].type == "run.finished", events[-1]
    finished = [e.data for e in events if e.type == "tool.finished" and e.data["server"] == "time"]
    if not finished:
        calls = [(e.data["name"], e.data["output"][:300]) for e in events if e.type == "tool.finished"]
        return Outcome(False, answer, f"no call to the time server; tool calls: {calls}")
    output = str(finished[-1]["output"])
    found = re.search(r'"datetime":\s*"([^"]+)"', output)
    if found is None:
        return Outcome(False, answer, f"no datetime in the tool's output: {output[-300:]!r}")
    returned = datetime.fromisoformat(found.group(1))
    now = datetime.now(UTC)
    in_tokyo = returned.utcoffset() == now.astimezone(TOKYO).utcoffset()
    # The clock the tool read lies between the question and the end of the run (to the second: a minute).
    on_time = asked_at - CLOCK_TOLERANCE <= returned <= now + CLOCK_TOLERANCE
    if not (in_tokyo and on_time):
        return Outcome(False, answer, f"tool: {returned.isoformat()}, asked: {asked_at.isoformat()}")
    return Outcome(says_time(answer, returned), answer, f"tool: {returned.isoformat()}")


async def ask_about_a_document(client: httpx.AsyncClient) -> Outcome:
    """Attaches a one-page PDF to a new conversation and asks `DOCUMENT_QUESTION` about it."""
    conversation = await new_conversation(client)
    pdf = text_pdf([DOCUMENT_LINES])
    response = await client.post(
        f"/api/conversations/{conversation}/attachments",
        files=[("file", ("offices.pdf", pdf, "application/pdf"))],
    )
    assert response.status_code == 201, response.text
    attachment = response.json()["items"][0]
    assert attachment["media_type"] == "application/pdf", attachment
    run_id = await start_message(client, conversation, DOCUMENT_QUESTION, attachments=[attachment["id"]])
    events = await read_events(client, run_id, timeout=ANSWER_TIMEOUT_S)
    assert events[-1].type == "run.finished", events[-1]
    answer = final_answer(events)
    tools = [e.data["name"] for e in events if e.type == "tool.started"]
    return Outcome(DOCUMENT_FACT in answer, answer, f"tools: {json.dumps(tools)}")


async def asked_up_to(
    tries: int, url: str, ask: Callable[[httpx.AsyncClient], Awaitable[Outcome]]
) -> list[Outcome]:
    """`ask` in a new conversation each time, until an answer is correct or `tries` were made."""
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(base_url=url, timeout=ANSWER_TIMEOUT_S) as client:
        while len(outcomes) < tries and not any(o.correct for o in outcomes):
            outcomes.append(await ask(client))
    for outcome in outcomes:
        print(f"\n{'ok ' if outcome.correct else 'BAD'} {outcome.answer!r} ({outcome.detail})")
    return outcomes


async def test_an_mcp_tool_question_is_answered_correctly(default_stack_with_time: str) -> None:
    """mcp-server-time through the shipped stack: the model calls `get_current_time` for Tokyo and
    gives the time it returned. Measured end to end on the default int8 model: 8 of 9 correct (the
    miss said "10:46:41 PM" for 10:46 AM); on bf16, 7 of 11. So the question may be asked twice.

    Naming the tool matters: asked to "use the time tool", the model called `convert_time` with an
    invented time in 3 of 8 samples on int8 (7 of 8 on bf16): mcp-server-time's description of
    `convert_time` is the one that mentions Asia/Tokyo."""
    outcomes = await asked_up_to(2, default_stack_with_time, ask_the_time)
    assert outcomes[-1].correct, outcomes


async def test_a_question_about_an_attached_document_is_answered_correctly(
    default_stack_with_time: str,
) -> None:
    """A PDF uploaded to the conversation and referenced by the message: the answer gives the fact it
    holds. Measured end to end: 9 of 9 correct on the default int8 model, 16 of 17 on bf16 (the miss:
    the stream stalled inside a tool call and the run failed on the read timeout). One retry allowed."""
    outcomes = await asked_up_to(2, default_stack_with_time, ask_about_a_document)
    assert outcomes[-1].correct, outcomes
