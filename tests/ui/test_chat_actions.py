"""What the branch, search and attachment controls do (ui/chat_actions.py), against a stand-in for
the API client that records the calls made."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ui.api_client import ApiError
from ui.api_models import (
    Attachment,
    AttachmentList,
    AttachmentRef,
    Conversation,
    ConversationDetail,
    Message,
    RunStarted,
    SearchHit,
    SearchResults,
)
from ui.attachments import MAX_UPLOAD_BYTES
from ui.branches import EditQuestion, SwitchBranch
from ui.chat_actions import ChatActions
from ui.handlers import Handlers
from ui.search_panel import MAX_QUERY_CHARS, RESULTS_SHOWN, Jump

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AID = "a" * 32
OTHER_AID = "b" * 32
UNAVAILABLE = ApiError(503, "unavailable", "not in this test")


class StandInApi:
    """The calls ChatActions makes; the rest of what the page shows is left unavailable."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.paths: dict[str, list[Message]] = {}
        self.search_result: SearchResults | ApiError = SearchResults(items=[], total=0)
        self.upload_error: ApiError | None = None
        self.delete_error: ApiError | None = None

    def conversation_with(self, conversation_id: str, *texts: str) -> None:
        self.paths[conversation_id] = [
            Message(id=i + 1, role="user", content=text, siblings=[i + 1]) for i, text in enumerate(texts)
        ]

    async def backends(self) -> Any:
        raise UNAVAILABLE

    async def tools(self) -> Any:
        raise UNAVAILABLE

    async def conversations(self, limit: int = 100) -> Any:
        raise UNAVAILABLE

    async def conversation(self, conversation_id: str) -> ConversationDetail:
        self.calls.append(("get", conversation_id))
        if conversation_id not in self.paths:
            raise ApiError(404, "not_found", "no such conversation")
        return ConversationDetail(
            id=conversation_id,
            title="T",
            created_at=NOW,
            updated_at=NOW,
            messages=self.paths[conversation_id],
        )

    async def create_conversation(self, backend: str | None = None, tools: Any = None) -> Conversation:
        self.calls.append(("create", backend, tools))
        self.paths["new"] = []
        return Conversation(id="new", title="New chat", created_at=NOW, updated_at=NOW)

    async def select_branch(self, conversation_id: str, message_id: int) -> None:
        self.calls.append(("select", conversation_id, message_id))

    async def send_message(
        self, conversation_id: str, content: str, backend: str | None = None, *, parent_id: Any = "active"
    ) -> RunStarted:
        self.calls.append(("send", conversation_id, content, parent_id))
        return RunStarted(
            run_id="r1", conversation_id=conversation_id, user_message_id=9, backend="b", events_url="x"
        )

    async def search(self, query: str, *, limit: int = 20) -> SearchResults:
        self.calls.append(("search", query, limit))
        if isinstance(self.search_result, ApiError):
            raise self.search_result
        return self.search_result

    async def upload_attachments(
        self, conversation_id: str, files: Sequence[tuple[str, bytes]]
    ) -> AttachmentList:
        self.calls.append(("upload", conversation_id, list(files)))
        if self.upload_error is not None:
            raise self.upload_error
        items = [Attachment(id=OTHER_AID, name=name, bytes=len(content)) for name, content in files]
        return AttachmentList(items=items)

    async def delete_attachment(self, conversation_id: str, attachment_id: str) -> None:
        self.calls.append(("delete", conversation_id, attachment_id))
        if self.delete_error is not None:
            raise self.delete_error


@pytest.fixture
def api() -> StandInApi:
    return StandInApi()


@pytest.fixture
def actions(api: StandInApi) -> ChatActions:
    return ChatActions(Handlers(api))  # type: ignore[arg-type]


def pending(*ids: str) -> list[dict[str, Any]]:
    return [AttachmentRef(id=i, name=f"{i[:4]}.md", bytes=10).model_dump() for i in ids]


# search


async def test_a_blank_search_hides_the_results_without_asking(actions: ChatActions, api: StandInApi) -> None:
    screen = await actions.search("", "  \n\t ")
    assert screen.search_results == ""
    assert api.calls == []


async def test_a_query_typed_over_changes_nothing(actions: ChatActions, api: StandInApi) -> None:
    screen = await actions.search("", None)
    assert screen.search_results is None
    assert api.calls == []


async def test_while_typing_the_last_word_is_a_prefix(actions: ChatActions, api: StandInApi) -> None:
    await actions.search_typed("", "garden pa")
    screen = await actions.search_typed("", "g")
    assert api.calls == [("search", "garden pa*", RESULTS_SHOWN)]
    assert screen.search_results == ""
    assert (await actions.search_typed("", None)).search_results is None


async def test_a_search_folds_whitespace_and_is_bounded(actions: ChatActions, api: StandInApi) -> None:
    await actions.search("", "  garden\n  party  ")
    await actions.search("", "x" * (MAX_QUERY_CHARS + 50))
    assert api.calls == [
        ("search", "garden party", RESULTS_SHOWN),
        ("search", "x" * MAX_QUERY_CHARS, RESULTS_SHOWN),
    ]


async def test_search_results_are_drawn(actions: ChatActions, api: StandInApi) -> None:
    api.search_result = SearchResults(
        items=[
            SearchHit(conversation_id="c1", message_id=3, snippet="the <b>garden</b>", highlights=[(4, 17)])
        ],
        total=1,
    )
    screen = await actions.search("", "garden")
    assert screen.search_results is not None
    assert "<mark>&lt;b&gt;garden&lt;/b&gt;</mark>" in screen.search_results


async def test_a_query_the_api_cannot_read_asks_for_a_word(actions: ChatActions, api: StandInApi) -> None:
    api.search_result = ApiError(422, "invalid_query", "no words")
    screen = await actions.search("", '"')
    assert "Type a word to search for." in (screen.search_results or "")


async def test_a_failed_search_says_why_as_text(actions: ChatActions, api: StandInApi) -> None:
    api.search_result = ApiError(500, "internal", "<b>broken</b>")
    screen = await actions.search("", "garden")
    assert "&lt;b&gt;broken&lt;/b&gt;" in (screen.search_results or "")


# jumping to a result


async def test_a_jump_to_a_message_shown_opens_the_conversation_there(
    actions: ChatActions, api: StandInApi
) -> None:
    api.conversation_with("c1", "one", "two")
    screen = await actions.jump("", Jump("c1", 2))
    assert screen.conversation_id == "c1"
    assert (screen.focus or "").startswith("2:")
    assert screen.pending_files == []
    assert not [call for call in api.calls if call[0] == "select"]


async def test_a_jump_to_a_message_off_the_branch_switches_to_it(
    actions: ChatActions, api: StandInApi
) -> None:
    api.conversation_with("c1", "one")
    await actions.jump("", Jump("c1", 5))
    assert ("select", "c1", 5) in api.calls


async def test_two_jumps_to_one_message_scroll_twice(actions: ChatActions, api: StandInApi) -> None:
    api.conversation_with("c1", "one")
    first, second = await actions.jump("", Jump("c1", 1)), await actions.jump("", Jump("c1", 1))
    assert first.focus != second.focus


async def test_a_jump_to_a_deleted_conversation_explains(actions: ChatActions) -> None:
    screen = await actions.jump("", Jump("gone", 1))
    assert screen.notice == "That conversation no longer exists."
    assert screen.conversation_id is None


async def test_a_garbage_jump_does_nothing(actions: ChatActions, api: StandInApi) -> None:
    screen = await actions.jump("", None)
    assert screen.chat is None
    assert api.calls == []


# branches


async def test_an_edit_is_sent_after_the_original_questions_parent(
    actions: ChatActions, api: StandInApi
) -> None:
    api.conversation_with("c1", "one", "two")
    screen = await actions.branch("", "c1", "fast", EditQuestion(1, "two, better"))
    assert ("send", "c1", "two, better", 1) in api.calls
    assert screen.live_run == "r1"


async def test_a_switch_selects_the_branch_then_shows_it(actions: ChatActions, api: StandInApi) -> None:
    api.conversation_with("c1", "one")
    screen = await actions.branch("", "c1", None, SwitchBranch(4))
    assert api.calls[:2] == [("select", "c1", 4), ("get", "c1")]
    assert screen.conversation_id == "c1"


@pytest.mark.parametrize(("conversation_id", "action"), [("c1", None), ("", SwitchBranch(4))])
async def test_no_action_or_no_conversation_does_nothing(
    actions: ChatActions, api: StandInApi, conversation_id: str, action: Any
) -> None:
    screen = await actions.branch("", conversation_id, None, action)
    assert screen.chat is None
    assert api.calls == []


# attachments


async def test_removing_a_chip_deletes_the_unsent_file(actions: ChatActions, api: StandInApi) -> None:
    screen = await actions.unattach("", "c1", pending(AID, OTHER_AID), AID)
    assert api.calls == [("delete", "c1", AID)]
    assert [f["id"] for f in screen.pending_files or []] == [OTHER_AID]
    assert "aaaa.md" not in (screen.attachments or "")


async def test_removing_a_file_not_pending_asks_nothing(actions: ChatActions, api: StandInApi) -> None:
    for named in (OTHER_AID, None):
        screen = await actions.unattach("", "c1", pending(AID), named)
        assert screen.pending_files is None
    assert api.calls == []


async def test_a_file_already_gone_is_removed_quietly(actions: ChatActions, api: StandInApi) -> None:
    api.delete_error = ApiError(404, "not_found", "gone")
    assert (await actions.unattach("", "c1", pending(AID), AID)).notice is None
    api.delete_error = ApiError(500, "internal", "disk on fire")
    assert (await actions.unattach("", "c1", pending(AID), AID)).notice == "disk on fire"


async def test_an_upload_goes_with_the_files_already_pending(
    actions: ChatActions, api: StandInApi, tmp_path: Path
) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b"x,y\n")
    screen = await actions.attach("", [str(path)], "c1", None, "", pending(AID))
    assert api.calls == [("upload", "c1", [("b.csv", b"x,y\n")])]
    assert [f["id"] for f in screen.pending_files or []] == [AID, OTHER_AID]
    assert "b.csv" in (screen.attachments or "")
    assert not path.exists()


async def test_an_upload_in_a_new_chat_creates_the_conversation_first(
    actions: ChatActions, api: StandInApi, tmp_path: Path
) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"# A\n")
    screen = await actions.attach("", [str(path)], "", "fast", "", [])
    assert [call[0] for call in api.calls] == ["create", "get", "upload"]
    assert screen.conversation_id == "new"


async def test_a_refused_upload_says_which_file_and_keeps_the_pending_ones(
    actions: ChatActions, api: StandInApi, tmp_path: Path
) -> None:
    path = tmp_path / "tool.bin"
    path.write_bytes(b"\x00\x01")
    api.upload_error = ApiError(415, "unsupported_media_type", "tool.bin is not a document")
    screen = await actions.attach("", [str(path)], "c1", None, "", pending(AID))
    assert screen.warning == "The file was not attached: tool.bin is not a document"
    assert screen.pending_files is None  # unchanged
    assert "aaaa.md" in (screen.attachments or "")
    assert "tool.bin is not a document" in (screen.attachments or "")


async def test_a_file_too_large_is_refused_before_the_api_is_asked(
    actions: ChatActions, api: StandInApi, tmp_path: Path
) -> None:
    path = tmp_path / "huge.pdf"
    with path.open("wb") as out:
        out.truncate(MAX_UPLOAD_BYTES + 1)
    screen = await actions.attach("", [str(path)], "c1", None, "", [])
    assert "huge.pdf is 64.0 MB" in (screen.warning or "")
    assert api.calls == []
    assert not path.exists()


async def test_an_upload_of_nothing_does_nothing(actions: ChatActions, api: StandInApi) -> None:
    assert (await actions.attach("", None, "c1", None, "", [])).attachments is None
    assert api.calls == []
