"""The page: its components and their arrangement, and how a `Screen` updates them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui import approval_card, branches, search_panel, tools_panel
from ui import attachments as attachment_ui
from ui.attachments import composer_chips_html
from ui.screen import NEW_CHAT_TITLE, Screen

REFRESH_BACKENDS_S = 30.0

EMPTY_CHAT = """<div class="cs-empty">
<div class="cs-empty-title">What can I help with?</div>
<div class="cs-empty-hint">Answers stream in as they are written. When the model searches the web or
calculates, each step shows up in the answer, and you can open it to see the sources.</div>
</div>"""

SIGN_IN_INTRO = """<div class="cs-brand cs-sign-in-brand">chat<span>stack</span></div>
<h1 class="cs-sign-in-title">Sign in</h1>
<p class="cs-sign-in-hint">Paste your API key. This browser stays signed in for 30 days, or until you
sign out.</p>"""

SIGN_IN_HELP = """<p class="cs-sign-in-help">No key yet? Whoever runs chatstack creates one with
<code>chatstack users create NAME</code>.</p>"""

SIDEBAR_LINKS = (
    '<div class="cs-sidebar-links"><a href="docs" target="_blank" rel="noopener">API docs</a></div>'
)


@dataclass(frozen=True, slots=True)
class Page:
    session: gr.Textbox
    """Set by the page's script once the browser holds a session ("start:…" or "sign-in:…"): its
    change runs the first handler that needs the session (see wiring.py)."""
    refresh: gr.Timer
    sign_in_view: gr.Column
    key_input: gr.Textbox
    sign_in_error: gr.HTML
    sign_in: gr.Button
    sidebar: gr.Sidebar
    budget: gr.HTML
    account: gr.HTML
    sign_out: gr.Button
    main: gr.Column
    chat: gr.Chatbot
    conversation_id: gr.Textbox
    live_run: gr.Textbox
    conversations: gr.Radio
    title: gr.Textbox
    known_title: gr.State
    backend: gr.Dropdown
    backend_info: gr.HTML
    exports: gr.HTML
    delete: gr.Button
    send: gr.Button
    stop: gr.Button
    composer: gr.Textbox
    confirm_row: gr.Row
    new_chat: gr.Button
    cancel_delete: gr.Button
    confirm_delete: gr.Button
    tools_panel: gr.HTML
    """The open conversation's tools (tools_panel.py); a toggle arrives as its `input` event."""
    draft_tools: gr.State
    approvals: gr.HTML
    branch_actions: gr.HTML
    """Not shown: an edit or a switch of branch in the chat arrives as its `click` event (branches.py)."""
    search: gr.Textbox
    search_results: gr.HTML
    """A click on a result arrives as its `click` event (search_panel.py)."""
    focus: gr.Textbox
    """The message to scroll to once the chat is drawn; its change runs the page's script only."""
    attach: gr.UploadButton
    attachments: gr.HTML
    """The files for the next question; a click on a chip's × arrives as its `click` event."""
    pending_files: gr.State
    """Not shown: a click on an approval card's button arrives as its `click` event (approval_card.py)."""

    def changes(self, screen: Screen) -> list[tuple[Any, Any]]:
        """(component, Gradio update) for everything a `Screen` can change; None fields are skipped."""
        opened = None if screen.conversation_id is None else bool(screen.conversation_id)
        signed_in = screen.signed_in
        return [
            (self.chat, _value(screen.chat)),
            (self.conversation_id, _value(screen.conversation_id)),
            (self.live_run, _value(screen.live_run)),
            (self.conversations, _conversation_list(screen)),
            (self.title, _update(value=screen.title, interactive=opened)),
            (self.known_title, _value(screen.title)),
            (self.backend, _update(choices=screen.backends, value=screen.backend)),
            (self.backend_info, _value(screen.backend_info)),
            (self.exports, _value(screen.exports)),
            (self.delete, _update(visible=opened)),
            (self.send, _update(visible=None if screen.busy is None else not screen.busy)),
            (self.stop, _update(visible=screen.busy)),
            (self.composer, _value(screen.composer)),
            (self.confirm_row, _update(visible=screen.confirm_delete)),
            (self.sign_in_view, _update(visible=None if signed_in is None else not signed_in)),
            (self.sidebar, _update(visible=signed_in)),
            (self.main, _update(visible=signed_in)),
            # Every tick is a request that needs the session: none while signed out.
            (self.refresh, _update(active=signed_in)),
            (
                self.budget,
                _update(value=screen.budget, visible=None if screen.budget is None else bool(screen.budget)),
            ),
            (self.account, _value(screen.account)),
            (self.key_input, _value(screen.key_input)),
            (self.sign_in_error, _value(screen.sign_in_error)),
            (
                self.tools_panel,
                _update(
                    value=screen.tools_panel,
                    visible=None if screen.tools_panel is None else bool(screen.tools_panel),
                ),
            ),
            (self.draft_tools, _value(screen.draft_tools)),
            (self.pending_files, _value(screen.pending_files)),
            (self.attachments, _value(screen.attachments)),
            # Always shown (chat.css hides it while empty): its script listens for typing.
            (self.search_results, _value(screen.search_results)),
            (self.focus, _value(screen.focus)),
        ]

    @property
    def outputs(self) -> list[Any]:
        """What a `Screen` can change, in the order `apply` returns updates."""
        return [component for component, _ in self.changes(Screen())]

    def apply(self, screen: Screen) -> list[Any]:
        """Gradio updates for a `Screen`, in `outputs` order."""
        if screen.notice:
            gr.Info(screen.notice)
        if screen.warning:
            gr.Warning(screen.warning)
        return [update for _, update in self.changes(screen)]


def _value(value: Any) -> Any:
    return gr.skip() if value is None else value


def _update(**changes: Any) -> Any:
    """An update of the given properties; those given as None are left as they are."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return gr.update(**changes) if changes else gr.skip()


def _conversation_list(screen: Screen) -> Any:
    changes: dict[str, Any] = {}
    if screen.conversations is not None:
        changes["choices"] = screen.conversations
    if screen.conversation_id is not None:
        # A new chat has no entry in the list: nothing is selected.
        changes["value"] = screen.conversation_id or None
    return gr.update(**changes) if changes else gr.skip()


def build_page(auth_required: bool) -> Page:
    """The page's components (inside a `gr.Blocks` context), without their events."""
    # With authentication on, neither view shows until the page load has checked the session.
    chat_shown = not auth_required
    session = gr.Textbox(value="", visible=False)
    refresh = gr.Timer(REFRESH_BACKENDS_S, active=chat_shown)
    conversation_id = gr.Textbox(value="", visible=False)
    live_run = gr.Textbox(value="", visible=False)
    known_title = gr.State(NEW_CHAT_TITLE)
    draft_tools = gr.State("")
    pending_files = gr.State([])
    focus = gr.Textbox(value="", visible=False)
    with gr.Column(visible=False, elem_id="cs-sign-in") as sign_in_view:
        gr.HTML(SIGN_IN_INTRO, js_on_load=None)
        key_input = gr.Textbox(
            type="password",
            label="API key",
            placeholder="cs_…",
            max_lines=1,
            elem_id="cs-key",
        )
        sign_in_error = gr.HTML("", elem_id="cs-sign-in-error", js_on_load=None)
        sign_in = gr.Button("Sign in", variant="primary", elem_id="cs-sign-in-button")
        gr.HTML(SIGN_IN_HELP, js_on_load=None)
    with gr.Sidebar(width=280, elem_id="cs-sidebar", label="Conversations", visible=chat_shown) as sidebar:
        gr.HTML('<div class="cs-brand">chat<span>stack</span></div>', js_on_load=None)
        new_chat = gr.Button("New chat", variant="primary", elem_id="cs-new-chat")
        search = gr.Textbox(
            placeholder="Search messages…",
            label="Search messages",
            show_label=False,
            container=False,
            max_lines=1,
            max_length=search_panel.MAX_QUERY_CHARS,
            elem_id="cs-search",
        )
        search_results = gr.HTML("", elem_id="cs-search-results", js_on_load=search_panel.HITS_JS)
        conversations = gr.Radio(
            choices=[], label="Conversations", show_label=False, container=False, elem_id="cs-conversations"
        )
        with gr.Column(elem_id="cs-sidebar-footer"):
            budget = gr.HTML("", elem_id="cs-budget", visible=False, js_on_load=None)
            with gr.Row(elem_id="cs-account-row", visible=auth_required, equal_height=True):
                account = gr.HTML("", elem_id="cs-account", js_on_load=None)
                sign_out = gr.Button("Sign out", size="sm", elem_id="cs-sign-out", scale=0, min_width=72)
            gr.HTML(SIDEBAR_LINKS, js_on_load=None)
    with gr.Column(elem_id="cs-main", scale=1, visible=chat_shown) as main:
        with gr.Row(elem_id="cs-header", equal_height=True):
            title = gr.Textbox(
                value=NEW_CHAT_TITLE,
                label="Conversation title",
                show_label=False,
                container=False,
                interactive=False,
                max_length=200,
                elem_id="cs-title",
                scale=3,
                min_width=160,
            )
            backend = gr.Dropdown(
                choices=[],
                value=None,
                label="Backend",
                show_label=False,
                container=False,
                filterable=False,
                elem_id="cs-backend",
                scale=2,
                min_width=200,
            )
        with gr.Row(elem_id="cs-subheader", equal_height=True):
            backend_info = gr.HTML("", elem_id="cs-backend-info", js_on_load=None)
            exports = gr.HTML("", elem_id="cs-exports", js_on_load=None)
            delete = gr.Button("Delete", size="sm", visible=False, elem_id="cs-delete", scale=0, min_width=70)
        with gr.Row(visible=False, elem_id="cs-confirm", equal_height=True) as confirm_row:
            gr.HTML(
                '<div class="cs-confirm-text">Delete this conversation? This cannot be undone.</div>',
                js_on_load=None,
            )
            cancel_delete = gr.Button("Cancel", size="sm", elem_id="cs-cancel-delete", scale=0, min_width=80)
            confirm_delete = gr.Button(
                "Delete", size="sm", variant="stop", elem_id="cs-confirm-delete", scale=0, min_width=80
            )
        tools = gr.HTML("", elem_id="cs-tools", visible=False, js_on_load=tools_panel.CHANGES_JS)
        approvals = gr.HTML("", elem_id="cs-approvals", visible="hidden", js_on_load=approval_card.CLICKS_JS)
        branch_actions = gr.HTML(
            "", elem_id="cs-branch-actions", visible="hidden", js_on_load=branches.ACTIONS_JS
        )
        chat = gr.Chatbot(
            value=[],
            show_label=False,
            elem_id="cs-chat",
            scale=1,
            height=None,
            layout="bubble",
            placeholder=EMPTY_CHAT,
            # Not "copy": it copies a message's HTML. Answers have a Copy button of their own.
            buttons=[],
            feedback_options=None,
            group_consecutive_messages=True,
            # Messages arrive as HTML that ui/markdown.py rendered inert; the Chatbot's Markdown only
            # passes it on. No LaTeX (KaTeX would lay out text from the model: \kern and \rule
            # can move it over the page) and no custom tags.
            render_markdown=True,
            sanitize_html=True,
            latex_delimiters=[],
            allow_tags=False,
        )
        attachments = gr.HTML(
            composer_chips_html([]), elem_id="cs-attachments", js_on_load=attachment_ui.DROP_JS
        )
        with gr.Row(elem_id="cs-composer", equal_height=True):
            # The label is the button's name for screen readers; chat.css draws a paperclip over it
            # (an emoji would need a font that not every system has).
            attach = gr.UploadButton(
                "Attach files",
                file_count="multiple",
                elem_id="cs-attach",
                scale=0,
                min_width=44,
                variant="secondary",
            )
            composer = gr.Textbox(
                placeholder="Message chatstack…",
                label="Message",
                show_label=False,
                container=False,
                lines=1,
                max_lines=8,
                autofocus=True,
                elem_id="cs-input",
                scale=1,
            )
            send = gr.Button("Send", variant="primary", elem_id="cs-send", scale=0, min_width=80)
            stop = gr.Button("Stop", variant="stop", visible=False, elem_id="cs-stop", scale=0, min_width=80)
    return Page(
        session=session,
        refresh=refresh,
        sign_in_view=sign_in_view,
        key_input=key_input,
        sign_in_error=sign_in_error,
        sign_in=sign_in,
        sidebar=sidebar,
        budget=budget,
        account=account,
        sign_out=sign_out,
        main=main,
        chat=chat,
        conversation_id=conversation_id,
        live_run=live_run,
        conversations=conversations,
        title=title,
        known_title=known_title,
        backend=backend,
        backend_info=backend_info,
        exports=exports,
        delete=delete,
        send=send,
        stop=stop,
        composer=composer,
        confirm_row=confirm_row,
        new_chat=new_chat,
        cancel_delete=cancel_delete,
        confirm_delete=confirm_delete,
        tools_panel=tools,
        draft_tools=draft_tools,
        approvals=approvals,
        branch_actions=branch_actions,
        search=search,
        search_results=search_results,
        focus=focus,
        attach=attach,
        attachments=attachments,
        pending_files=pending_files,
    )
