"""Edits, branches and regenerated answers over HTTP against a real server, on SQLite and PostgreSQL.

The scripted backend's `history` directive answers with what it was sent: that is what the model saw.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import start_chatstack, users_cli
from tests.support.sse import answer_text, ask, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


async def detail(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    response = await client.get(f"/api/conversations/{cid}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def contents(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"]]


async def switch(client: httpx.AsyncClient, cid: str, message_id: int) -> dict[str, Any]:
    response = await client.patch(f"/api/conversations/{cid}", json={"active_leaf_id": message_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def edit_second_question(client: httpx.AsyncClient, cid: str) -> tuple[int, int]:
    """first -> Echo: first -> second -> Echo: second, then edit `second` into `history`.
    Returns (the original second question's id, the edit's id)."""
    await ask(client, cid, "first")
    await ask(client, cid, "second")
    path = (await detail(client, cid))["messages"]
    original = path[2]
    response = await client.post(
        f"/api/conversations/{cid}/messages", json={"content": "history", "parent_id": original["parent_id"]}
    )
    assert response.status_code == 202, response.text
    events = await read_events(client, response.json()["run_id"])
    # The model saw the path up to the edit, not the question it replaces nor its answer.
    assert answer_text(events) == "History: user=first | assistant=Echo: first | user=history"
    return original["id"], response.json()["user_message_id"]


async def test_edit_branches_and_switching_back_shows_the_first_answer(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    original, edited = await edit_second_question(client, cid)

    body = await detail(client, cid)
    assert contents(body) == [
        "first",
        "Echo: first",
        "history",
        "History: user=first | assistant=Echo: first | user=history",
    ]
    question = body["messages"][2]
    assert question["id"] == edited
    assert question["siblings"] == [original, edited]  # "2 / 2"
    assert [len(m["siblings"]) for m in body["messages"]] == [1, 1, 2, 1]
    assert body["active_leaf_id"] == body["messages"][-1]["id"]

    # "< 1 / 2": pointing at the first version shows it with its answer.
    switched = await switch(client, cid, original)
    body = await detail(client, cid)
    assert contents(body) == ["first", "Echo: first", "second", "Echo: second"]
    assert switched["active_leaf_id"] == body["messages"][-1]["id"]
    assert body["messages"][2]["siblings"] == [original, edited]

    # The conversation goes on from the branch shown, and the model sees that branch only.
    events = await ask(client, cid, "history")
    assert answer_text(events) == (
        "History: user=first | assistant=Echo: first | user=second | assistant=Echo: second | user=history"
    )

    # Back to "2 / 2": the edited branch with its latest answer.
    await switch(client, cid, edited)
    assert contents(await detail(client, cid))[2:] == [
        "history",
        "History: user=first | assistant=Echo: first | user=history",
    ]


async def test_editing_the_first_question(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(client, cid, "first")
    first = (await detail(client, cid))["messages"][0]["id"]
    # parent_id null: a new first message, beside the old one.
    run = await start_message(client, cid, "history", parent_id=None)
    assert answer_text(await read_events(client, run)) == "History: user=history"
    body = await detail(client, cid)
    assert contents(body) == ["history", "History: user=history"]
    assert body["messages"][0]["parent_id"] is None
    assert body["messages"][0]["siblings"] == [first, body["messages"][0]["id"]]


async def test_regenerate_keeps_the_old_answer_reachable(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(client, cid, "calc: 6*7")
    before = (await detail(client, cid))["messages"]
    assert [m["role"] for m in before] == ["user", "assistant", "tool", "assistant"]

    response = await client.post(f"/api/conversations/{cid}/regenerate", json={"backend": "scripted-plain"})
    assert response.status_code == 202, response.text
    assert response.json()["user_message_id"] == before[0]["id"]
    await read_events(client, response.json()["run_id"])

    body = await detail(client, cid)
    assert contents(body) == ["calc: 6*7", "Echo: calc: 6*7"]
    new_answer = body["messages"][1]
    assert new_answer["parent_id"] == before[0]["id"]
    assert new_answer["siblings"] == [before[1]["id"], new_answer["id"]]

    # The first answer, with its tool steps, is one switch away.
    await switch(client, cid, before[1]["id"])
    again = (await detail(client, cid))["messages"]
    assert [m["id"] for m in again] == [m["id"] for m in before]
    assert again[3]["content"] == "The result is 42."
    assert again[1]["tool_calls"][0]["name"] == "calculator"

    # Regenerating again adds a third alternative; the model sees only the question, not old answers.
    response = await client.post(f"/api/conversations/{cid}/regenerate", json={})
    await read_events(client, response.json()["run_id"])
    body = await detail(client, cid)
    assert len(body["messages"][1]["siblings"]) == 3
    assert body["messages"][1]["siblings"][:2] == [before[1]["id"], new_answer["id"]]


async def test_the_model_sees_the_active_path_with_its_tool_steps(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(client, cid, "calc: 2+3")
    await ask(client, cid, "dead end")
    before = (await detail(client, cid))["messages"]
    # Switching to a message lands on the newest message below it: the end of that branch.
    await switch(client, cid, before[3]["id"])
    assert contents(await detail(client, cid))[-1] == "Echo: dead end"
    # Asking after an earlier answer (the edit of "dead end") branches there.
    run_id = await start_message(client, cid, "history", parent_id=before[3]["id"])
    # The tool call's assistant turn (empty text) and its answer are there; the abandoned branch is not.
    assert answer_text(await read_events(client, run_id)) == (
        "History: user=calc: 2+3 | assistant= | assistant=The result is 5. | user=history"
    )
    body = await detail(client, cid)
    assert body["messages"][4]["siblings"] == [before[4]["id"], body["messages"][4]["id"]]


async def test_bad_parents_and_leaves_are_refused_cleanly(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    other = await new_conversation(client)
    await ask(client, other, "elsewhere")
    foreign = (await detail(client, other))["messages"][0]["id"]
    await ask(client, cid, "here")
    before = await detail(client, cid)

    for parent in (foreign, 2**62):
        response = await client.post(
            f"/api/conversations/{cid}/messages", json={"content": "x", "parent_id": parent}
        )
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
        response = await client.patch(f"/api/conversations/{cid}", json={"active_leaf_id": parent})
        assert response.status_code == 404, response.text
    for parent in (0, -1, 2**63, "one", 1.5, [1]):
        response = await client.post(
            f"/api/conversations/{cid}/messages", json={"content": "x", "parent_id": parent}
        )
        assert response.status_code == 422, (parent, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
        response = await client.patch(f"/api/conversations/{cid}", json={"active_leaf_id": parent})
        assert response.status_code == 422, (parent, response.text)
    # Nothing changed, in either conversation.
    assert await detail(client, cid) == before
    assert contents(await detail(client, other)) == ["elsewhere", "Echo: elsewhere"]


async def test_no_edit_or_switch_while_an_answer_runs(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(client, cid, "first")
    first = (await detail(client, cid))["messages"]
    run_id = await start_message(client, cid, "hang")
    await read_events(client, run_id, stop_after=2)
    edit = await client.post(
        f"/api/conversations/{cid}/messages", json={"content": "edit", "parent_id": first[0]["id"]}
    )
    assert edit.status_code == 409
    assert edit.json()["error"]["code"] == "run_in_progress"
    flip = await client.patch(f"/api/conversations/{cid}", json={"active_leaf_id": first[1]["id"]})
    assert flip.status_code == 409
    assert flip.json()["error"]["code"] == "run_in_progress"
    # Renaming is still fine meanwhile.
    assert (await client.patch(f"/api/conversations/{cid}", json={"title": "Busy"})).status_code == 200
    assert (await client.post(f"/api/runs/{run_id}/cancel")).status_code == 200
    body = await detail(client, cid)
    assert contents(body)[:3] == ["first", "Echo: first", "hang"]
    assert body["messages"][-1]["status"] == "cancelled"
    assert body["active_leaf_id"] == body["messages"][-1]["id"]


async def test_export_markdown_is_the_branch_shown_and_json_the_whole_tree(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, title="Branchy")
    original, edited = await edit_second_question(client, cid)
    markdown = (await client.get(f"/api/conversations/{cid}/export", params={"format": "markdown"})).text
    assert "history" in markdown
    assert "second" not in markdown

    document = (await client.get(f"/api/conversations/{cid}/export", params={"format": "json"})).json()
    messages = document["messages"]
    assert [m["content"] for m in messages] == [
        "first",
        "Echo: first",
        "second",
        "Echo: second",
        "history",
        "History: user=first | assistant=Echo: first | user=history",
    ]
    by_id = {m["id"]: m for m in messages}
    assert by_id[original]["parent_id"] == by_id[edited]["parent_id"] == messages[1]["id"]
    assert by_id[edited]["siblings"] == [original, edited]
    assert document["conversation"]["active_leaf_id"] == messages[-1]["id"]

    # A conversation with branches deletes cleanly (parents and children go together).
    assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
    assert (await client.get(f"/api/conversations/{cid}")).status_code == 404


async def test_branches_survive_a_restart(chatstack_env: dict[str, str], log_dir: Path) -> None:
    server = start_chatstack(chatstack_env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            cid = await new_conversation(client)
            original, edited = await edit_second_question(client, cid)
            before = await detail(client, cid)
    finally:
        server.stop()
    server = start_chatstack(chatstack_env, log_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert await detail(client, cid) == before
            await switch(client, cid, original)
            assert contents(await detail(client, cid)) == ["first", "Echo: first", "second", "Echo: second"]
            await switch(client, cid, edited)
            assert await detail(client, cid) == before
    finally:
        server.stop()


async def test_another_users_messages_are_not_parents(chatstack_env: dict[str, str], log_dir: Path) -> None:
    env = {**chatstack_env, "CHATSTACK_AUTH": "on", "CHATSTACK_RATE_LIMIT_PER_MINUTE": "6000"}
    keys = {}
    for who in ("owner", "other"):
        created = users_cli(env, "create", f"branch-{who}-{uuid.uuid4().hex[:8]}")
        assert created.returncode == 0, created.stderr
        keys[who] = created.stdout.strip().splitlines()[-1]
    server = start_chatstack(env, log_dir)
    try:
        owner, other = (
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {k}"}, timeout=30)
            for k in (keys["owner"], keys["other"])
        )
        async with owner, other:
            theirs = await new_conversation(owner)
            await ask(owner, theirs, "private")
            secret = (await detail(owner, theirs))["messages"][0]["id"]
            mine = await new_conversation(other)
            await ask(other, mine, "mine")
            # Another user's message is not found, as a parent or as a branch to show...
            response = await other.post(
                f"/api/conversations/{mine}/messages", json={"content": "x", "parent_id": secret}
            )
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
            response = await other.patch(f"/api/conversations/{mine}", json={"active_leaf_id": secret})
            assert response.status_code == 404
            # ...nor is their conversation.
            response = await other.patch(f"/api/conversations/{theirs}", json={"active_leaf_id": secret})
            assert response.status_code == 404
            assert contents(await detail(owner, theirs)) == ["private", "Echo: private"]
            assert contents(await detail(other, mine)) == ["mine", "Echo: mine"]
    finally:
        server.stop()
