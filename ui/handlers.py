"""What each user action does: calls to the API, turned into screen updates.

Handlers know nothing about Gradio components; they return `Screen` updates (None = unchanged)
that `layout.py` maps onto the page. Only `follow` streams: it yields an update per batch of run
events.

Every action gets the API key of the browser's session first (wiring.py takes it from the request)
and calls the API with it (with authentication off, the key is ignored: everything is the `local`
user's). When the API refuses the key, the `Unauthorized` it raises is left to propagate: wiring.py
answers it, for every action alike, with the sign-in view.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from ui.api_client import ApiError, ApiUnreachable, ChatstackClient, Unauthorized, export_href
from ui.api_models import BackendList, ConversationDetail, ToolInfo, Usage
from ui.approval_card import ClickedDecision
from ui.attachments import composer_chips_html, pending_from
from ui.backend_menu import backend_choices, backend_info, resolve_choice
from ui.branches import answer_has_alternatives
from ui.budget import BUDGET_EXHAUSTED, budget_html, refusal
from ui.coalesce import coalesce
from ui.conversation_view import conversation_items
from ui.render import ChatItem, RunView, writers
from ui.screen import (
    KEY_NO_LONGER_ACCEPTED,
    NEW_CHAT_TITLE,
    Screen,
    account_html,
    signed_out,
)
from ui.tools_panel import draft_selection, draft_text, panel_html, shown_signature, signature

MAX_TITLE_CHARS = 200
CONVERSATIONS_SHOWN = 200


class Handlers:
    """Shared by all browser sessions; per-session values (the key first) come in as arguments.

    Every action but `follow` is a short request/response. Actions that start or reveal a running
    answer set `Screen.live_run`, and the page then calls `follow` for it.
    """

    def __init__(
        self,
        client: ChatstackClient,
        *,
        auth_required: bool = False,
        stream_window_s: float = 0.08,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.auth_required = auth_required
        self.stream_window_s = stream_window_s
        self.clock = clock
        # The same for every user, so one copy serves all sessions.
        self._backends: BackendList | None = None
        self._tool_servers: dict[str, str] = {}
        """Each tool's server, by name, as last listed: stored tool steps do not name it."""

    def api(self, key: str) -> ChatstackClient:
        """The API as this page's user sees it. Without a key (with authentication on) there is no
        user to act for: the page must sign in first."""
        if not self.auth_required:
            return self.client
        if not key:
            raise Unauthorized("not signed in")
        return self.client.with_key(key)

    # signing in

    async def start(self, key: str, conversation_id: str) -> Screen:
        """The page loaded, signed in, maybe with a conversation id in its URL."""
        if self.auth_required and not key:
            return signed_out(keep_conversation=True)
        api = self.api(key)
        try:
            try:
                listing = await self._load_backends(api)
            except ApiError as exc:
                screen = await self._new_chat(api, None)
                screen.notice = _problem(exc)
                return self._signed_in(screen, key)
            screen = (
                await self._open(api, conversation_id) if conversation_id else await self._new_chat(api, None)
            )
        except Unauthorized:
            return signed_out(KEY_NO_LONGER_ACCEPTED, keep_conversation=True)
        screen.backends = backend_choices(listing)
        screen.budget = await self._budget_or_none(api)
        return self._signed_in(screen, key)

    async def sign_in(self, key: str, conversation_id: str) -> Screen:
        """The browser just signed in with `key` (the page's script checked it with the server): show
        the chat, and the conversation in the URL if it is this user's."""
        api = self.api(key)
        try:
            listing = await self._load_backends(api)
        except ApiError as exc:
            screen = await self._new_chat(api, None)
            screen.notice = _problem(exc)
        else:
            # It may be another user's conversation (the URL was theirs): then just a new chat.
            screen = (
                await self._open(api, conversation_id, quiet_if_missing=True)
                if conversation_id
                else await self._new_chat(api, None)
            )
            screen.backends = backend_choices(listing)
        screen.key_input = ""
        screen.budget = await self._budget_or_none(api)
        return self._signed_in(screen, key)

    # navigation

    async def open(self, key: str, conversation_id: str) -> Screen:
        """Show a conversation; if an answer is still being written, the page follows it."""
        screen = await self._open(self.api(key), conversation_id)
        # Files uploaded for the next question belong to the conversation they were uploaded to.
        screen.pending_files, screen.attachments = [], composer_chips_html([])
        return screen

    async def new_chat(self, key: str, backend: str | None) -> Screen:
        """An empty chat; the conversation is created on the server with its first message."""
        return await self._new_chat(self.api(key), backend)

    # answering

    async def send(
        self,
        key: str,
        text: str,
        conversation_id: str,
        backend: str | None,
        draft_tools: str = "",
        pending_files: Any = None,
    ) -> Screen:
        """`draft_tools`: the tools chosen in a new chat, which this first message creates;
        `pending_files`: the files uploaded for this question (attachments.pending_state)."""
        if not text.strip():
            return Screen()
        api = self.api(key)
        try:
            if not conversation_id:
                tools = draft_selection(draft_tools)
                conversation_id = (await api.create_conversation(backend or None, tools)).id
            files = [file.id for file in pending_from(pending_files)]
            started = await api.send_message(conversation_id, text, backend or None, attachments=files)
            screen = await self._show(api, await api.conversation(conversation_id), started.run_id)
        except ApiError as exc:
            return await self._refused(api, exc)
        screen.composer = ""
        screen.pending_files, screen.attachments = [], composer_chips_html([])
        return screen

    async def regenerate(self, key: str, conversation_id: str, backend: str | None) -> Screen:
        """Answer the last question again; the server replaces the previous answer and its steps."""
        if not conversation_id:
            return Screen()
        api = self.api(key)
        try:
            started = await api.regenerate(conversation_id, backend or None)
            return await self._show(api, await api.conversation(conversation_id), started.run_id)
        except ApiError as exc:
            return await self._refused(api, exc)

    async def follow(self, key: str, run_id: str, conversation_id: str) -> AsyncIterator[Screen]:
        """Show the run's answer as it is written, from its first event (so a reload misses nothing)."""
        if not run_id or not conversation_id:
            return
        api = self.api(key)
        try:
            detail = await api.conversation(conversation_id)
        except ApiError as exc:
            yield Screen(notice=_problem(exc))
            return
        expected = self._choice(detail.backend)
        history = await _rendered(detail, run_id, expected, self._tool_servers, self.auth_required)
        view = RunView()
        shown: list[ChatItem] | None = None
        finished: ConversationDetail | None = None
        try:
            async for batch in coalesce(api.events(run_id), self.stream_window_s):
                for event in batch:
                    view.apply(event)
                if view.finished and finished is None:
                    # Which backend wrote the answer is stored, not streamed: read it before the
                    # footer is first drawn, so that it is drawn once.
                    finished = await self._reread(api, conversation_id)
                    if finished is not None:
                        replies = [m for m in finished.messages if m.run_id == run_id]
                        view.answered_by = writers(replies, expected)
                shown = history + view.messages()
                yield Screen(chat=shown)
        except ApiError as exc:
            view.lose_connection(exc.message if isinstance(exc, ApiUnreachable) else _problem(exc))
        final = history + view.messages()
        if finished is not None and answer_has_alternatives(finished.messages, run_id):
            # A regenerated answer: drawn as stored, with its switcher back to the earlier answers.
            final = await _rendered(finished, None, expected, self._tool_servers, self.auth_required)
        yield Screen(
            # Sending an unchanged chat again would redraw it and close the steps the user opened.
            chat=final if final != shown else None,
            busy=False,
            # The first message titles a new conversation, and every answer moves it to the top.
            title=finished.title if finished is not None else None,
            conversations=await self._conversation_choices_or_none(api),
            # What the answer used.
            budget=await self._budget_or_none(api),
        )

    async def stop(self, key: str, conversation_id: str) -> Screen:
        """Cancel the running answer on the server; the followed stream then shows it stopped."""
        if not conversation_id:
            return Screen()
        api = self.api(key)
        try:
            detail = await api.conversation(conversation_id)
            if detail.active_run_id:
                await api.cancel_run(detail.active_run_id)
        except ApiError as exc:
            return Screen(notice=_problem(exc))
        return Screen()

    async def decide(self, key: str, run_id: str, decision: ClickedDecision | None) -> Screen:
        """Approve or deny a call the followed run waits on; its stream then shows the decision."""
        if not run_id or decision is None:
            return Screen()
        try:
            await self.api(key).decide_approval(run_id, decision.call_id, approve=decision.approve)
        except ApiError as exc:
            if exc.status == 409:
                return Screen(notice="That tool call no longer waits: it was decided, timed out or stopped.")
            return Screen(notice=_problem(exc))
        return Screen()

    # conversation settings

    async def choose_tools(self, key: str, conversation_id: str, selection: list[str] | None) -> Screen:
        """Enable exactly `selection` in the conversation (from its next message). A new chat keeps it
        in the page until its first message creates the conversation."""
        if selection is None:
            return Screen()
        if not conversation_id:
            return Screen(draft_tools=draft_text(selection))
        api = self.api(key)
        try:
            await api.set_tools(conversation_id, selection)
        except ApiError as exc:
            # Show what the server holds again, not the toggle it refused.
            screen = Screen(notice=_problem(exc))
            with contextlib.suppress(ApiError):
                detail = await api.conversation(conversation_id)
                tools = await self._tools_or_none(api)
                if tools is not None:
                    # Redrawn even when the HTML is the same as before the click (it is not the same
                    # as the page's boxes, which the click changed).
                    revision = f"{self.clock().timestamp():.6f}"
                    screen.tools_panel = panel_html(tools, detail.tools, revision=revision)
            return screen
        return Screen()

    async def rename(self, key: str, conversation_id: str, title: str, known_title: str) -> Screen:
        title = " ".join(title.split())[:MAX_TITLE_CHARS]
        if not conversation_id or title == known_title:
            return Screen()
        if not title:
            return Screen(title=known_title)
        api = self.api(key)
        try:
            conversation = await api.update_conversation(conversation_id, title=title)
        except ApiError as exc:
            return Screen(title=known_title, notice=_problem(exc))
        return Screen(title=conversation.title, conversations=await self._conversation_choices_or_none(api))

    async def choose_backend(self, key: str, conversation_id: str, backend: str) -> Screen:
        """Remember the choice with the conversation; it applies from the next message."""
        screen = Screen(backend_info=backend_info(self._backends, backend))
        if conversation_id and backend:
            try:
                await self.api(key).update_conversation(conversation_id, backend=backend)
            except ApiError as exc:
                screen.notice = _problem(exc)
        return screen

    async def refresh_tools(self, key: str, conversation_id: str, draft_tools: str, shown: str) -> Screen:
        """Redraw the tools panel if the tools changed since it was drawn (an MCP server connected,
        went down or came back; called periodically)."""
        if self.auth_required and not key:
            return Screen()
        api = self.api(key)
        tools = await self._tools_or_none(api)
        if tools is None:
            return Screen()
        if (shown_signature(shown) == signature(tools)) if shown else not tools:
            return Screen()  # as drawn
        selection = draft_selection(draft_tools)
        if conversation_id:
            try:
                selection = (await api.conversation(conversation_id)).tools
            except ApiError:
                return Screen()
        return Screen(tools_panel=panel_html(tools, selection, refresh=True))

    async def refresh_backends(self, key: str, backend: str | None) -> Screen:
        """Fresh health for the selector (called periodically)."""
        if self.auth_required and not key:
            return Screen()  # the sign-in view is up; redrawing it would clear what is being typed
        try:
            listing = await self._load_backends(self.api(key))
        except ApiError:
            return Screen()
        chosen = resolve_choice(listing, backend)
        return Screen(
            backends=backend_choices(listing), backend=chosen, backend_info=backend_info(listing, chosen)
        )

    async def delete(self, key: str, conversation_id: str, backend: str | None) -> Screen:
        if not conversation_id:
            return Screen(confirm_delete=False)
        api = self.api(key)
        try:
            await api.delete_conversation(conversation_id)
        except ApiError as exc:
            if exc.status != 404:
                return Screen(confirm_delete=False, notice=_problem(exc))
        screen = await self._new_chat(api, backend)
        screen.notice = "Conversation deleted."
        return screen

    # internals

    def _signed_in(self, screen: Screen, key: str) -> Screen:
        screen.signed_in = True
        screen.sign_in_error = ""
        if self.auth_required:
            screen.account = account_html(key)
        return screen

    async def _open(
        self, api: ChatstackClient, conversation_id: str, *, quiet_if_missing: bool = False
    ) -> Screen:
        try:
            detail = await api.conversation(conversation_id)
        except ApiError as exc:
            screen = await self._new_chat(api, None)
            if exc.status != 404:
                screen.notice = _problem(exc)
            elif not quiet_if_missing:
                screen.notice = "That conversation no longer exists."
            return screen
        return await self._show(api, detail, detail.active_run_id)

    async def _new_chat(self, api: ChatstackClient, backend: str | None) -> Screen:
        chosen = self._choice(backend)
        return Screen(
            chat=[],
            conversation_id="",
            live_run="",
            conversations=await self._conversation_choices_or_none(api),
            title=NEW_CHAT_TITLE,
            backend=chosen,
            backend_info=backend_info(self._backends, chosen),
            exports="",
            busy=False,
            confirm_delete=False,
            tools_panel=await self._tools_panel_or_none(api, None),
            draft_tools="",
            pending_files=[],
            attachments=composer_chips_html([]),
        )

    async def _show(
        self, api: ChatstackClient, detail: ConversationDetail, live_run_id: str | None
    ) -> Screen:
        if self._backends is None:
            with contextlib.suppress(ApiError):
                await self._load_backends(api)
        choice = self._choice(detail.backend)
        panel = await self._tools_panel_or_none(api, detail.tools)
        chat = await _rendered(detail, live_run_id, choice, self._tool_servers, self.auth_required)
        if live_run_id:
            chat += RunView().messages()  # "Thinking…" until the stream catches up
        return Screen(
            chat=chat,
            conversation_id=detail.id,
            live_run=live_run_id or "",
            conversations=await self._conversation_choices_or_none(api),
            title=detail.title,
            backend=choice,
            backend_info=backend_info(self._backends, choice),
            exports=exports_html(detail.id, session=self.auth_required),
            busy=live_run_id is not None,
            confirm_delete=False,
            tools_panel=panel,
            draft_tools="",
        )

    async def _tools_or_none(self, api: ChatstackClient) -> list[ToolInfo] | None:
        try:
            tools = (await api.tools()).items
        except ApiError as exc:
            return [] if exc.status == 404 else None  # [] from a server without tools
        self._tool_servers = {tool.name: tool.server for tool in tools}
        return tools

    async def _tools_panel_or_none(self, api: ChatstackClient, selection: list[str] | None) -> str | None:
        """The tools panel for a conversation with `selection`; None (left as it is) if the API
        could not list the tools."""
        tools = await self._tools_or_none(api)
        return None if tools is None else panel_html(tools, selection)

    async def _load_backends(self, api: ChatstackClient) -> BackendList:
        self._backends = await api.backends()
        return self._backends

    def _choice(self, name: str | None) -> str | None:
        """The backend a conversation's answers come from: its own choice if still offered, else the
        default (None while the backends are unknown)."""
        return resolve_choice(self._backends, name) if self._backends is not None else name

    async def _reread(self, api: ChatstackClient, conversation_id: str) -> ConversationDetail | None:
        try:
            return await api.conversation(conversation_id)
        except ApiError:
            return None

    async def _refused(self, api: ChatstackClient, exc: ApiError) -> Screen:
        """A message the API did not take; the text stays in the composer to send again."""
        if exc.code != BUDGET_EXHAUSTED:
            return Screen(notice=_problem(exc))
        usage = await self._usage_or_none(api)
        return Screen(
            warning=refusal(exc, usage, self.clock()),
            budget=budget_html(usage, self.clock()) if usage is not None else None,
        )

    async def _usage_or_none(self, api: ChatstackClient) -> Usage | None:
        try:
            return await api.usage()
        except ApiError:
            return None

    async def _budget_or_none(self, api: ChatstackClient) -> str | None:
        """The sidebar's budget line; None (left as it is) if the API could not say."""
        try:
            usage = await api.usage()
        except ApiError as exc:
            return "" if exc.status == 404 else None  # a server without budgets
        return budget_html(usage, self.clock())

    async def _conversation_choices_or_none(self, api: ChatstackClient) -> list[tuple[str, str]] | None:
        try:
            listing = await api.conversations(limit=CONVERSATIONS_SHOWN)
        except ApiError:
            return None
        return [(c.title, c.id) for c in listing.items]


async def _rendered(
    detail: ConversationDetail,
    live_run_id: str | None,
    backend: str | None,
    servers: Mapping[str, str] | None = None,
    session_links: bool = False,
) -> list[ChatItem]:
    """The stored conversation as chat messages. Rendering a long conversation's Markdown takes tens
    of milliseconds: in a thread, not on the event loop that streams every user's answers."""
    return await asyncio.to_thread(
        partial(conversation_items, conversation_id=detail.id, session_links=session_links),
        detail.messages,
        detail.runs,
        live_run_id,
        backend,
        servers,
    )


def exports_html(conversation_id: str, *, session: bool = False) -> str:
    markdown = html.escape(export_href(conversation_id, "markdown", session=session), quote=True)
    json_ = html.escape(export_href(conversation_id, "json", session=session), quote=True)
    return (
        '<div class="cs-exports"><span class="cs-exports-label">Export</span>'
        f'<a class="cs-link-button" href="{markdown}" download>Markdown</a>'
        f'<a class="cs-link-button" href="{json_}" download>JSON</a></div>'
    )


def _problem(exc: ApiError) -> str:
    """A sentence for a toast, from an API error."""
    if isinstance(exc, ApiUnreachable):
        return "chatstack's API is not answering. Check that the server is running, then try again."
    if exc.code == "run_in_progress":
        return "An answer is still being written. Stop it or wait for it to finish, then try again."
    if exc.code == "nothing_to_regenerate":
        return "There is no answer to regenerate yet."
    return exc.message or f"The request failed ({exc.status})."
