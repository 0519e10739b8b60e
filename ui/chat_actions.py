"""What the page's branch, search and attachment controls do: API calls turned into screen updates.

They extend `Handlers` (same sessions, same `Screen` updates, same answers to a refused key) and
reach the page the same way (wiring.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ui.api_client import ApiError, ChatstackClient
from ui.api_models import AttachmentRef, ConversationDetail
from ui.attachments import (
    UploadTooLarge,
    composer_chips_html,
    pending_from,
    pending_state,
    read_uploads,
    upload_paths,
)
from ui.branches import BranchAction, EditQuestion, SwitchBranch
from ui.handlers import Handlers, _problem
from ui.screen import Screen
from ui.search_panel import (
    MAX_QUERY_CHARS,
    RESULTS_SHOWN,
    Jump,
    as_typed,
    focus_value,
    problem_html,
    results_html,
)
from ui.tools_panel import draft_selection


class ChatActions:
    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    # branches

    async def branch(
        self, key: str, conversation_id: str, backend: str | None, action: BranchAction | None
    ) -> Screen:
        """An edited question (sent after the original's parent: a new branch, whose answer the page
        then follows) or a switch to another version of a question or answer."""
        if action is None or not conversation_id:
            return Screen()
        api = self.handlers.api(key)
        try:
            if isinstance(action, EditQuestion):
                started = await api.send_message(
                    conversation_id, action.text, backend or None, parent_id=action.parent_id
                )
                return await self._shown(api, await api.conversation(conversation_id), started.run_id)
            assert isinstance(action, SwitchBranch)
            await api.select_branch(conversation_id, action.message_id)
            detail = await api.conversation(conversation_id)
        except ApiError as exc:
            screen = await self.handlers._refused(api, exc)
            return await self._redrawn(api, conversation_id, screen)
        return await self._shown(api, detail, detail.active_run_id)

    # search

    async def search(self, key: str, query: str | None) -> Screen:
        """The results for `query` ("" hides them; None, a query typed over since, changes nothing)."""
        if query is None:
            return Screen()
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        if not query:
            return Screen(search_results="")
        try:
            results = await self.handlers.api(key).search(query, limit=RESULTS_SHOWN)
        except ApiError as exc:
            if exc.status == 422:
                return Screen(search_results=problem_html("Type a word to search for."))
            return Screen(search_results=problem_html(_problem(exc)))
        return Screen(search_results=results_html(query, results))

    async def search_typed(self, key: str, query: str | None) -> Screen:
        """`search` while the user types: the word being typed is searched as a prefix."""
        return await self.search(key, None if query is None else as_typed(query))

    async def jump(self, key: str, jump: Jump | None) -> Screen:
        """Open a result's conversation at its message, switching to a branch through it if the
        message is not on the branch shown."""
        if jump is None:
            return Screen()
        api = self.handlers.api(key)
        try:
            detail = await api.conversation(jump.conversation_id)
            if all(m.id != jump.message_id for m in detail.messages):
                await api.select_branch(jump.conversation_id, jump.message_id)
                detail = await api.conversation(jump.conversation_id)
        except ApiError as exc:
            if exc.status == 404:
                return Screen(notice="That conversation no longer exists.")
            return Screen(notice=_problem(exc))
        screen = await self._shown(api, detail, detail.active_run_id)
        screen.pending_files, screen.attachments = [], composer_chips_html([])
        screen.focus = focus_value(jump.message_id, f"{datetime.now(UTC).timestamp():.6f}")
        return screen

    # attachments

    async def attach(
        self, key: str, files: Any, conversation_id: str, backend: str | None, draft_tools: str, pending: Any
    ) -> Screen:
        """Send what the browser uploaded to the conversation's files (a new chat is created first);
        they go with the next question. A refusal says which file and why."""
        paths = upload_paths(files)
        known = pending_from(pending)
        revision = f"{datetime.now(UTC).timestamp():.6f}"
        if not paths:
            return Screen()
        api = self.handlers.api(key)
        screen = Screen()
        try:
            contents = await read_uploads(paths)
            if not conversation_id:
                tools = draft_selection(draft_tools)
                created = await api.create_conversation(backend or None, tools)
                conversation_id = created.id
                screen = await self._shown(api, await api.conversation(conversation_id), None)
            stored = await api.upload_attachments(conversation_id, contents)
        except (ApiError, UploadTooLarge) as exc:
            problem = _upload_problem(exc)
            screen.warning = problem
            screen.attachments = composer_chips_html(known, problem, revision)
            return screen
        now = [*known, *(AttachmentRef.model_validate(item.model_dump()) for item in stored.items)]
        screen.pending_files = pending_state(now)
        screen.attachments = composer_chips_html(now, revision=revision)
        return screen

    async def unattach(
        self, key: str, conversation_id: str, pending: Any, attachment_id: str | None
    ) -> Screen:
        """Remove a file from the next question (and from the conversation: it was never sent)."""
        known = pending_from(pending)
        if attachment_id is None or all(file.id != attachment_id for file in known):
            return Screen()
        left = [file for file in known if file.id != attachment_id]
        screen = Screen(pending_files=pending_state(left), attachments=composer_chips_html(left))
        if conversation_id:
            try:
                await self.handlers.api(key).delete_attachment(conversation_id, attachment_id)
            except ApiError as exc:
                if exc.status != 404:
                    screen.notice = _problem(exc)
        return screen

    # internals

    async def _shown(self, api: ChatstackClient, detail: ConversationDetail, live_run: str | None) -> Screen:
        return await self.handlers._show(api, detail, live_run)

    async def _redrawn(self, api: ChatstackClient, conversation_id: str, screen: Screen) -> Screen:
        """After a refused edit or switch: the conversation as stored (the editor closes)."""
        try:
            detail = await api.conversation(conversation_id)
        except ApiError:
            return screen
        shown = await self._shown(api, detail, detail.active_run_id)
        shown.notice, shown.warning, shown.budget = (
            screen.notice,
            screen.warning,
            screen.budget or shown.budget,
        )
        return shown


def _upload_problem(exc: ApiError | UploadTooLarge) -> str:
    if isinstance(exc, UploadTooLarge):
        return str(exc)
    message = _problem(exc)
    return f"The file was not attached: {message}" if exc.status != 0 else message
