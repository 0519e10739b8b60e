"""What each user action does, against an in-memory stand-in for the API client."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.ui.test_branches import without_branch_controls
from ui.api_client import ApiError, ApiUnreachable, Unauthorized
from ui.api_models import (
    ApprovalResult,
    Backend,
    BackendList,
    Conversation,
    ConversationDetail,
    ConversationList,
    Message,
    Run,
    RunEvent,
    RunStarted,
    ToolInfo,
    ToolList,
    Usage,
)
from ui.handlers import Handlers
from ui.markdown import markdown_html
from ui.render import THINKING
from ui.screen import KEY_NO_LONGER_ACCEPTED, NEW_CHAT_TITLE, Screen

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RESET = datetime(2026, 1, 2, tzinfo=UTC)


class FakeApi:
    """The subset of ChatstackClient the handlers use, backed by dictionaries.

    With `valid_keys` set, it checks keys like the API does with authentication on; `with_key` gives
    a client that shares the data and records which key each call went out with.
    """

    def __init__(self, valid_keys: set[str] | None = None) -> None:
        self.details: dict[str, ConversationDetail] = {}
        self.runs: dict[str, Run] = {}
        self.scripts: dict[str, list[RunEvent]] = {}
        self.stream_error: Exception | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.keys_used: list[str | None] = []
        self.valid_keys = valid_keys
        self.key: str | None = None
        self._next = [0]
        # Shared by every client `with_key` makes, like the server's count.
        self.tokens: dict[str, Any] = {"budget": None, "used": 0, "served": True}
        self.tool_items: list[ToolInfo] = []
        self.approval_error: ApiError | None = None

    def with_key(self, key: str | None) -> FakeApi:
        clone = copy.copy(self)
        clone.key = key
        return clone

    def _check_key(self) -> None:
        self.keys_used.append(self.key)
        if self.valid_keys is not None and self.key not in self.valid_keys:
            raise Unauthorized("this API key is not valid")

    def _id(self, prefix: str) -> str:
        self._next[0] += 1
        return f"{prefix}{self._next[0]}"

    async def backends(self) -> BackendList:
        self._check_key()
        return BackendList(
            items=[
                Backend(name="fast", supports_tools=True, health="up", tool_mode="native", default=True),
                Backend(name="down", health="down"),
            ],
            default="fast",
        )

    async def conversations(self, limit: int = 100) -> ConversationList:
        self._check_key()
        items = [
            Conversation(**d.model_dump(exclude={"messages", "runs", "active_run_id"}))
            for d in self.details.values()
        ]
        return ConversationList(items=items[::-1], total=len(items))

    async def tools(self) -> ToolList:
        self._check_key()
        return ToolList(items=self.tool_items)

    async def set_tools(self, conversation_id: str, tools: list[str] | None) -> Conversation:
        self._check_key()
        self.calls.append(("set_tools", conversation_id, tools))
        known = {t.name for t in self.tool_items}
        if tools is not None and not set(tools) <= known:
            raise ApiError(422, "unknown_tool", "no such tool")
        detail = self.details[conversation_id]
        detail.tools = tools
        return Conversation(**detail.model_dump(exclude={"messages", "runs", "active_run_id"}))

    async def decide_approval(
        self, run_id: str, call_id: str, *, approve: bool, reason: str | None = None
    ) -> ApprovalResult:
        self._check_key()
        self.calls.append(("decide", run_id, call_id, approve))
        if self.approval_error is not None:
            raise self.approval_error
        return ApprovalResult(run_id=run_id, call_id=call_id, approved=approve, status="running")

    async def create_conversation(
        self, backend: str | None = None, tools: list[str] | None = None
    ) -> Conversation:
        self._check_key()
        detail = ConversationDetail(
            id=self._id("c"),
            title=NEW_CHAT_TITLE,
            backend=backend,
            tools=tools,
            created_at=NOW,
            updated_at=NOW,
            messages=[],
        )
        self.details[detail.id] = detail
        self.calls.append(("create", backend))
        return Conversation(**detail.model_dump(exclude={"messages", "runs", "active_run_id"}))

    async def conversation(self, conversation_id: str) -> ConversationDetail:
        self._check_key()
        self.calls.append(("get", conversation_id))
        if conversation_id not in self.details:
            raise ApiError(404, "not_found", "no such conversation")
        detail = self.details[conversation_id].model_copy(deep=True)
        detail.runs = [r for r in self.runs.values() if r.conversation_id == conversation_id]
        return detail

    async def update_conversation(self, conversation_id: str, **changes: Any) -> Conversation:
        self._check_key()
        self.calls.append(("update", conversation_id, changes))
        detail = self.details[conversation_id]
        for key, value in changes.items():
            if value is not None:
                setattr(detail, key, value)
        return Conversation(**detail.model_dump(exclude={"messages", "runs", "active_run_id"}))

    async def delete_conversation(self, conversation_id: str) -> None:
        self._check_key()
        self.calls.append(("delete", conversation_id))
        if self.details.pop(conversation_id, None) is None:
            raise ApiError(404, "not_found", "gone")

    async def usage(self) -> Usage:
        self._check_key()
        if not self.tokens["served"]:
            raise ApiError(404, "not_found", "no such endpoint: usage")
        budget, used = self.tokens["budget"], self.tokens["used"]
        return Usage(
            period="day",
            period_start=RESET - timedelta(days=1),
            resets_at=RESET,
            budget=budget,
            used=used,
            remaining=None if budget is None else max(0, budget - used),
        )

    def _check_budget(self) -> None:
        if self.tokens["budget"] is not None and self.tokens["used"] >= self.tokens["budget"]:
            raise ApiError(
                429,
                "token_budget_exhausted",
                "your token budget is used up: 500 of 500 tokens this day; it resets at "
                "2026-01-02T00:00:00Z (in 3600 s)",
            )

    async def send_message(
        self,
        conversation_id: str,
        content: str,
        backend: str | None = None,
        *,
        parent_id: int | str | None = "active",
        attachments: Any = (),
    ) -> RunStarted:
        self._check_key()
        self._check_budget()
        detail = self.details[conversation_id]
        if detail.active_run_id:
            raise ApiError(409, "run_in_progress", "an answer is running")
        run_id = self._start_run(detail, backend)
        if detail.title == NEW_CHAT_TITLE:
            detail.title = content[:20]
        detail.messages.append(
            Message(id=len(detail.messages) + 1, role="user", content=content, run_id=run_id)
        )
        self.calls.append(("send", conversation_id, content, backend))
        return RunStarted(
            run_id=run_id, conversation_id=conversation_id, user_message_id=1, backend="fast", events_url=""
        )

    async def regenerate(self, conversation_id: str, backend: str | None = None) -> RunStarted:
        self._check_key()
        self._check_budget()
        detail = self.details[conversation_id]
        if detail.active_run_id:
            raise ApiError(409, "run_in_progress", "an answer is running")
        questions = [m for m in detail.messages if m.role == "user"]
        if not questions:
            raise ApiError(409, "nothing_to_regenerate", "there is no question to answer again yet")
        detail.messages = [m for m in detail.messages if m.id <= questions[-1].id]
        run_id = self._start_run(detail, backend)
        self.calls.append(("regenerate", conversation_id, backend))
        return RunStarted(
            run_id=run_id,
            conversation_id=conversation_id,
            user_message_id=questions[-1].id,
            backend="fast",
            events_url="",
        )

    def _start_run(self, detail: ConversationDetail, backend: str | None) -> str:
        run_id = self._id("r")
        detail.active_run_id = run_id
        self.runs[run_id] = Run(
            id=run_id, conversation_id=detail.id, status="running", backend=backend or "fast"
        )
        return run_id

    async def run(self, run_id: str) -> Run:
        self._check_key()
        self.calls.append(("run", run_id))
        return self.runs[run_id]

    async def cancel_run(self, run_id: str) -> Run:
        self._check_key()
        self.calls.append(("cancel", run_id))
        return self.runs[run_id]

    async def events(self, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        self._check_key()
        run = self.runs[run_id]
        detail = self.details[run.conversation_id]
        for event in self.scripts.get(run_id, []):
            if event.type == "message.completed":
                detail.messages.append(
                    Message(
                        id=len(detail.messages) + 1,
                        role="assistant",
                        content=event.data["content"],
                        run_id=run_id,
                        backend=event.data.get("backend", "fast"),
                    )
                )
            elif event.type == "run.finished":
                self.runs[run_id] = run.model_copy(update={"status": "completed", "total_ms": 20.0})
                detail.active_run_id = None
            yield event
        if self.stream_error is not None:
            raise self.stream_error


def answer_events(text: str, backend: str = "fast") -> list[RunEvent]:
    """A run's events; `backend` is not part of the real message.completed event, only of the fake's
    stored message (the API stores who wrote each answer)."""
    completed = {"content": text, "status": "complete", "tool_calls": [], "backend": backend}
    return [
        RunEvent(1, "run.started", {}),
        RunEvent(2, "message.delta", {"text": text}),
        RunEvent(3, "message.completed", completed),
        RunEvent(4, "run.finished", {"status": "completed", "timings": {"ttft_ms": 10, "total_ms": 20}}),
    ]


def texts(screen: Screen) -> list[str]:
    """What each message says (without the branch controls: tests/ui/test_branches.py)."""
    assert screen.chat is not None
    return [
        without_branch_controls("".join(part["text"] for part in item["content"])) for item in screen.chat
    ]


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def handlers(api: FakeApi) -> Handlers:
    return Handlers(api, stream_window_s=0.001, clock=lambda: RESET - timedelta(hours=9))  # type: ignore[arg-type]


NO_KEY = ""
"""What a page sends with authentication off."""


async def finish(
    handlers: Handlers, api: FakeApi, started: Screen, text: str, backend: str = "fast"
) -> Screen:
    api.scripts[started.live_run or ""] = answer_events(text, backend)
    screens = [
        s async for s in handlers.follow(NO_KEY, started.live_run or "", started.conversation_id or "")
    ]
    return screens[-1]


async def test_start_without_a_conversation_shows_a_new_chat(handlers: Handlers) -> None:
    screen = await handlers.start(NO_KEY, "")
    assert screen.chat == []
    assert screen.conversation_id == ""
    assert screen.title == NEW_CHAT_TITLE
    assert screen.backend == "fast"
    assert screen.backends == [("fast · up · tools", "fast"), ("down · down · no tools", "down")]
    assert screen.busy is False
    # With authentication off there is nothing to sign in to, and no one to show as signed in.
    assert screen.signed_in is True
    assert screen.account is None


async def test_first_message_creates_the_conversation_and_starts_following(
    handlers: Handlers, api: FakeApi
) -> None:
    screen = await handlers.send(NO_KEY, "hello", "", "fast")
    assert api.calls[:2] == [("create", "fast"), ("send", "c1", "hello", "fast")]
    assert screen.conversation_id == "c1"
    assert screen.live_run == "r2"
    assert screen.busy is True
    assert screen.composer == ""
    assert texts(screen) == [markdown_html("hello"), THINKING]


async def test_blank_message_does_nothing(handlers: Handlers, api: FakeApi) -> None:
    assert await handlers.send(NO_KEY, "   \n", "", "fast") == Screen()
    assert api.calls == []


async def test_sending_while_an_answer_runs_keeps_the_text(handlers: Handlers, api: FakeApi) -> None:
    await handlers.send(NO_KEY, "first", "", None)
    screen = await handlers.send(NO_KEY, "second", "c1", None)
    assert screen.composer is None
    assert screen.notice is not None
    assert "still being written" in screen.notice


async def test_follow_streams_then_settles(handlers: Handlers, api: FakeApi) -> None:
    started = await handlers.send(NO_KEY, "hi", "", None)
    assert started.live_run
    api.scripts[started.live_run] = answer_events("Hello back")
    screens = [s async for s in handlers.follow(NO_KEY, started.live_run, "c1")]
    assert texts(screens[0])[:2] == [markdown_html("hi"), markdown_html("Hello back")]
    assert "first token 10 ms" in texts(screens[-2])[-1]
    final = screens[-1]
    assert final.busy is False
    assert final.title == "hi"
    assert final.conversations == [("hi", "c1")]
    assert final.chat is None  # unchanged since the last update: not redrawn


async def test_an_answer_by_another_backend_says_so_when_it_finishes(
    handlers: Handlers, api: FakeApi
) -> None:
    await handlers.start(NO_KEY, "")
    started = await handlers.send(NO_KEY, "hi", "", "fast")
    api.scripts[started.live_run or ""] = answer_events("Hello", backend="fallback")
    screens = [s async for s in handlers.follow(NO_KEY, started.live_run or "", "c1")]
    footers = [texts(s)[-1] for s in screens if s.chat is not None]
    # The footer is drawn once, already naming the backend.
    assert [f for f in footers if "first token" in f] == [footers[-1]]
    assert "by fallback" in footers[-1]


async def test_follow_reports_a_lost_stream(handlers: Handlers, api: FakeApi) -> None:
    started = await handlers.send(NO_KEY, "hi", "", None)
    api.scripts[started.live_run or ""] = answer_events("partial")[:2]
    api.stream_error = ApiUnreachable("connection refused")
    final = [s async for s in handlers.follow(NO_KEY, started.live_run or "", "c1")][-1]
    assert final.busy is False
    assert "Lost the connection" in texts(final)[-1]


async def test_opening_a_running_conversation_follows_it(handlers: Handlers, api: FakeApi) -> None:
    await handlers.send(NO_KEY, "question", "", None)
    screen = await handlers.open(NO_KEY, "c1")
    assert screen.live_run == "r2"
    assert screen.busy is True
    assert texts(screen) == [markdown_html("question"), THINKING]


async def test_opening_a_deleted_conversation_explains(handlers: Handlers) -> None:
    screen = await handlers.open(NO_KEY, "gone")
    assert screen.conversation_id == ""
    assert screen.notice == "That conversation no longer exists."


async def test_reopening_takes_timings_from_the_conversation_not_per_run(
    handlers: Handlers, api: FakeApi
) -> None:
    started = await handlers.send(NO_KEY, "hi", "", None)
    await finish(handlers, api, started, "ok")
    screen = await handlers.open(NO_KEY, "c1")
    assert "total 20 ms" in texts(screen)[-1]
    assert not [c for c in api.calls if c[0] == "run"]


async def test_rename_only_when_changed(handlers: Handlers, api: FakeApi) -> None:
    await handlers.send(NO_KEY, "hi", "", None)
    assert await handlers.rename(NO_KEY, "c1", "  hi ", "hi") == Screen()
    assert await handlers.rename(NO_KEY, "c1", "   ", "hi") == Screen(title="hi")
    screen = await handlers.rename(NO_KEY, "c1", "Trip  planning", "hi")
    assert screen.title == "Trip planning"
    assert ("update", "c1", {"title": "Trip planning"}) in api.calls


async def test_choosing_a_backend_is_remembered_with_the_conversation(
    handlers: Handlers, api: FakeApi
) -> None:
    await handlers.start(NO_KEY, "")
    await handlers.send(NO_KEY, "hi", "", None)
    screen = await handlers.choose_backend(NO_KEY, "c1", "down")
    assert ("update", "c1", {"backend": "down"}) in api.calls
    assert screen.backend_info is not None
    assert "Offline" in screen.backend_info


async def test_stop_cancels_the_running_answer(handlers: Handlers, api: FakeApi) -> None:
    await handlers.send(NO_KEY, "long one", "", None)
    await handlers.stop(NO_KEY, "c1")
    assert ("cancel", "r2") in api.calls


async def test_delete_goes_back_to_a_new_chat(handlers: Handlers, api: FakeApi) -> None:
    await handlers.send(NO_KEY, "hi", "", None)
    screen = await handlers.delete(NO_KEY, "c1", "fast")
    assert screen.conversation_id == ""
    assert screen.conversations == []
    assert screen.notice == "Conversation deleted."
    # Deleting again (another tab got there first) is not an error.
    again = await handlers.delete(NO_KEY, "c1", "fast")
    assert again.notice == "Conversation deleted."


async def test_regenerate_replaces_the_answer_without_asking_again(handlers: Handlers, api: FakeApi) -> None:
    started = await handlers.send(NO_KEY, "what is 2+2?", "", None)
    await finish(handlers, api, started, "4")
    screen = await handlers.regenerate(NO_KEY, "c1", "fast")
    assert ("regenerate", "c1", "fast") in api.calls
    assert [c for c in api.calls if c[0] == "send"] == [("send", "c1", "what is 2+2?", None)]
    assert screen.live_run == "r3"
    # The question once, the old answer gone, the new one on its way.
    assert texts(screen) == [markdown_html("what is 2+2?"), THINKING]


async def test_regenerate_with_nothing_to_answer_explains(handlers: Handlers, api: FakeApi) -> None:
    await api.create_conversation()
    screen = await handlers.regenerate(NO_KEY, "c1", None)
    assert screen.notice == "There is no answer to regenerate yet."


# with authentication on

ALICE, BOB = "cs_alice_key_0123", "cs_bob_key_4567"


@pytest.fixture
def keyed_api() -> FakeApi:
    return FakeApi(valid_keys={ALICE, BOB})


@pytest.fixture
def keyed(keyed_api: FakeApi) -> Handlers:
    return Handlers(keyed_api, auth_required=True, stream_window_s=0.001)  # type: ignore[arg-type]


async def test_without_a_key_the_page_asks_for_one(keyed: Handlers, keyed_api: FakeApi) -> None:
    screen = await keyed.start("", "c9")
    assert screen.signed_in is False
    assert screen.sign_in_error == ""
    # The conversation in the URL stays there, to open once signed in.
    assert screen.conversation_id is None
    assert keyed_api.keys_used == []


async def test_a_session_that_works_signs_in(keyed: Handlers, keyed_api: FakeApi) -> None:
    screen = await keyed.start(ALICE, "")
    assert screen.signed_in is True
    assert screen.account is not None
    assert ALICE[:10] in screen.account
    assert ALICE not in screen.account
    assert set(keyed_api.keys_used) == {ALICE}


async def test_a_session_whose_key_was_revoked_asks_for_another(keyed: Handlers) -> None:
    screen = await keyed.start("cs_revoked", "")
    assert screen.signed_in is False
    assert screen.chat == []
    assert screen.sign_in_error is not None
    assert KEY_NO_LONGER_ACCEPTED in screen.sign_in_error


async def test_a_key_refused_right_after_signing_in_is_left_to_the_page(keyed: Handlers) -> None:
    # The page's script checked the key with the server just before; if it stopped working since,
    # the sign-in view comes back like for any other action (wiring.py).
    with pytest.raises(Unauthorized):
        await keyed.sign_in("cs_revoked", "")


async def test_signing_in_opens_the_conversation_of_the_url(keyed: Handlers, keyed_api: FakeApi) -> None:
    conversation = await keyed_api.with_key(ALICE).create_conversation()
    screen = await keyed.sign_in(ALICE, conversation.id)
    assert screen.signed_in is True
    assert screen.account is not None
    assert ALICE[:10] in screen.account
    assert screen.key_input == ""
    assert screen.sign_in_error == ""
    assert screen.conversation_id == conversation.id
    # Another user's (or a deleted) conversation just gives a new chat, without a word.
    other = await keyed.sign_in(BOB, "c404")
    assert other.conversation_id == ""
    assert other.notice is None


async def test_every_call_goes_out_with_the_pages_own_key(keyed: Handlers, keyed_api: FakeApi) -> None:
    alice = await keyed.send(ALICE, "from alice", "", None)
    bob = await keyed.send(BOB, "from bob", "", None)
    keyed_api.keys_used.clear()
    keyed_api.scripts[alice.live_run or ""] = answer_events("hi alice")
    keyed_api.scripts[bob.live_run or ""] = answer_events("hi bob")
    _ = [s async for s in keyed.follow(ALICE, alice.live_run or "", alice.conversation_id or "")]
    assert set(keyed_api.keys_used) == {ALICE}
    keyed_api.keys_used.clear()
    await keyed.regenerate(BOB, bob.conversation_id or "", None)
    await keyed.rename(BOB, bob.conversation_id or "", "Bob's", "from bob")
    assert set(keyed_api.keys_used) == {BOB}


async def test_a_refused_key_is_left_to_the_page_to_sign_out(keyed: Handlers) -> None:
    # Every action alike: layout.py shows the sign-in view for it.
    with pytest.raises(Unauthorized):
        await keyed.send("cs_revoked", "hi", "", None)
    with pytest.raises(Unauthorized):
        await keyed.open("", "c1")
    with pytest.raises(Unauthorized):
        _ = [s async for s in keyed.follow("cs_revoked", "r1", "c1")]


async def test_the_periodic_refresh_leaves_the_sign_in_view_alone(keyed: Handlers) -> None:
    assert await keyed.refresh_backends("", None) == Screen()


async def test_exports_go_through_the_session_when_keys_are_on(
    keyed: Handlers, handlers: Handlers, keyed_api: FakeApi
) -> None:
    # A plain link cannot carry a key: with keys on it goes where the session cookie opens it.
    keyed_screen = await keyed.send(ALICE, "hi", "", None)
    assert keyed_screen.exports is not None
    assert 'href="ui/conversations/c1/export?format=markdown"' in keyed_screen.exports
    screen = await handlers.send(NO_KEY, "hi", "", None)
    assert screen.exports is not None
    assert 'href="api/conversations/c1/export?format=json"' in screen.exports


# token budgets


async def test_the_budget_left_shows_only_when_one_is_set(handlers: Handlers, api: FakeApi) -> None:
    screen = await handlers.start(NO_KEY, "")
    assert screen.budget == ""  # no budget: nothing to show
    api.tokens.update(budget=50_000, used=12_345)
    screen = await handlers.start(NO_KEY, "")
    assert screen.budget is not None
    assert "Tokens left today" in screen.budget
    assert "37,655" in screen.budget
    assert "of 50,000 · resets at 00:00 UTC" in screen.budget
    # A server without budgets: nothing to show either.
    api.tokens["served"] = False
    assert (await handlers.start(NO_KEY, "")).budget == ""


async def test_the_budget_left_is_read_again_after_each_answer(handlers: Handlers, api: FakeApi) -> None:
    api.tokens.update(budget=1000, used=100)
    started = await handlers.send(NO_KEY, "hi", "", None)
    api.tokens["used"] = 400  # what the answer used
    final = await finish(handlers, api, started, "Hello back")
    assert final.budget is not None
    assert "<strong>600</strong>" in final.budget


async def test_a_message_refused_for_the_budget_says_so_and_stays_in_the_box(
    handlers: Handlers, api: FakeApi
) -> None:
    api.tokens.update(budget=500, used=500)
    screen = await handlers.send(NO_KEY, "one more question", "", None)
    assert screen.warning == (
        "Not sent: your token budget is used up (500 of 500 tokens today). It resets at 00:00 UTC; "
        "your message is still in the box."
    )
    assert screen.composer is None  # the text is not cleared
    assert screen.live_run is None  # nothing to follow
    assert screen.budget is not None
    assert "cs-budget-empty" in screen.budget
    assert "<strong>0</strong>" in screen.budget
    # Regenerating is refused alike.
    api.tokens["used"] = 0
    started = await handlers.send(NO_KEY, "first", "", None)
    await finish(handlers, api, started, "answer")
    api.tokens["used"] = 500
    again = await handlers.regenerate(NO_KEY, started.conversation_id or "", None)
    assert again.warning is not None
    assert again.warning.startswith("Not sent: your token budget is used up")


async def test_a_budget_refusal_without_the_usage_still_says_when_it_resets(
    handlers: Handlers, api: FakeApi
) -> None:
    api.tokens.update(budget=500, used=500, served=False)
    screen = await handlers.send(NO_KEY, "hi", "", None)
    assert screen.warning is not None
    assert screen.warning.startswith("Not sent: your token budget is used up")
    assert "it resets at 2026-01-02T00:00:00Z" in screen.warning
    assert screen.budget is None
