"""What the chat shows: run events and stored messages turned into Chatbot messages.

Pure functions and plain data, so the whole look of an answer is testable without a browser.
A run (one answer) is a `RunView`: text parts and tool steps in the order they happened, then a
notice if it failed and a footer with its outcome and timings.

Text that came from a model, a tool, a search result or a user is Markdown, and reaches the Chatbot
only as the inert HTML `ui.markdown` renders it into; everything else here is HTML written here.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from gradio.components.chatbot import MetadataDict, NormalizedMessageDict

from protocol import run_events
from protocol.run_events import RunEvent, Source
from ui.api_models import AUTO_BACKEND, LIVE_RUN_STATUSES, Message, Run, RunStatus
from ui.approval_card import ApprovalCard, Decision, card_html
from ui.markdown import StreamingMarkdown, join_blocks, markdown_html
from ui.tool_attachments import summaries

ChatItem = NormalizedMessageDict
"""One Chatbot message; the content is text parts, which Gradio shows one after the other (`str`
content would be passed through `inspect.cleandoc`, which strips indentation from answers)."""

TextStatus = Literal["streaming", "complete", "cancelled", "error", "interrupted"]

MAX_TITLE_ARG_CHARS = 80
MAX_SNIPPET_CHARS = 220
MAX_TOOL_OUTPUT_CHARS = 2000


def chat_item(
    role: Literal["user", "assistant"], html: str | Sequence[str], metadata: MetadataDict | None = None
) -> ChatItem:
    """A Chatbot message of HTML (written here, or by `ui.markdown`), in one or more parts."""
    parts = [html] if isinstance(html, str) else html
    item: ChatItem = {"role": role, "content": [{"type": "text", "text": part} for part in parts]}
    if metadata is not None:
        item["metadata"] = metadata
    return item


def markdown_item(
    role: Literal["user", "assistant"], markdown: str, metadata: MetadataDict | None = None
) -> ChatItem:
    """A Chatbot message of untrusted Markdown, rendered inert."""
    return chat_item(role, markdown_html(markdown), metadata)


# Markdown safety: tool arguments and search results are untrusted text. Escaping them keeps them
# from adding structure (a link, a heading) to the Markdown written around them here.

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md_escape(text: str) -> str:
    """Text that renders literally in Markdown (and cannot open a link or an HTML tag)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def inline_code(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def safe_url(url: str) -> str | None:
    """The URL if it is http(s), with the characters that would end a Markdown link encoded."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(url.strip(), safe=":/?#@!$&'*+,;=%~-._[]")


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# Run parts


@dataclass(slots=True)
class TextPart:
    text: str
    status: TextStatus = "streaming"
    markdown: StreamingMarkdown = field(default_factory=StreamingMarkdown, compare=False, repr=False)
    """What of the text is rendered already, while it streams in."""

    def html(self) -> list[str]:
        """The text as inert HTML: while it streams, the settled blocks and the last one apart, so
        that each update changes only the last part; once written, in one part."""
        if self.status == "streaming":
            settled, last = self.markdown.render(self.text)
            if not settled:
                return [last] if last else []
            # The last block shows as a message of its own: give it the space it has once joined.
            return [settled, f'<div class="cs-last-block">{last}</div>'] if last else [settled]
        if self.markdown.started:
            return [join_blocks(*self.markdown.render(self.text))]
        return [markdown_html(self.text)]


@dataclass(slots=True)
class ToolStep:
    call_id: str
    name: str
    arguments: dict[str, Any] | str
    done: bool = False
    output: str = ""
    sources: list[Source] = field(default_factory=list)
    error: str | None = None
    duration_ms: float | None = None
    server: str = ""
    """`builtin` or the MCP server the tool comes from ("" when not known)."""
    attachments: list[run_events.ToolAttachment] = field(default_factory=list)
    """What it returned besides text (live only: stored tool messages do not keep it)."""


@dataclass(frozen=True, slots=True)
class Timings:
    ttft_ms: float | None
    total_ms: float | None
    tool_calls: int


@dataclass(slots=True)
class RunView:
    """One answer as it is shown, built from live events or from the stored conversation."""

    parts: list[TextPart | ToolStep | ApprovalCard] = field(default_factory=list)
    outcome: RunStatus | None = None
    """None while the answer is still running."""
    error_code: str | None = None
    error_message: str | None = None
    timings: Timings | None = None
    answered_by: tuple[str, ...] = ()
    """The backends that wrote this answer, when they are not the conversation's (see `writers`)."""
    starting: tuple[str, float] | None = None
    """(backend, longest wait in seconds) while a backend that scaled to zero starts."""

    @property
    def finished(self) -> bool:
        return self.outcome is not None and self.outcome != "running"

    def apply(self, event: RunEvent) -> None:
        """Fold one event of the run's stream into the view. An event of a type this version does not
        know (a newer server's), or whose data does not fit its type, shows nothing."""
        try:
            data = event.parsed()
        except run_events.InvalidEvent:
            return
        if isinstance(data, run_events.MessageDelta):
            self._delta(data.text)
        elif isinstance(data, run_events.MessageCompleted):
            self._completed(data.content, _text_status(data.status))
        elif isinstance(data, run_events.ToolStarted):
            self._tool_started(data.call_id, data.name, data.arguments, data.server)
        elif isinstance(data, run_events.ToolFinished):
            step = self._tool_started(data.call_id, data.name, None, data.server)
            step.done = True
            step.output = data.output
            step.sources = list(data.sources)
            step.error = data.error or None
            step.duration_ms = data.duration_ms
            step.attachments = list(data.attachments)
        elif isinstance(data, run_events.ToolApprovalRequired):
            self._approval_required(data)
        elif isinstance(data, run_events.ToolApprovalResolved):
            for card in self._cards(data.call_id):
                card.decision = Decision(data.approved, data.by, data.reason)
        elif isinstance(data, run_events.BackendStarting):
            self.starting = (data.backend, data.timeout_s)
        elif isinstance(data, run_events.BackendReady):
            self.starting = None
        elif isinstance(data, run_events.RunError):
            self.error_code = data.code or "internal_error"
            self.error_message = data.message
        elif isinstance(data, run_events.RunFinished):
            timings = data.timings
            self._finish(
                _run_status(data.status), Timings(timings.ttft_ms, timings.total_ms, timings.tool_calls)
            )

    def lose_connection(self, detail: str) -> None:
        """The event stream could not be followed any further; the answer may still be running."""
        self.error_code, self.error_message = "connection_lost", detail

    @classmethod
    def from_history(
        cls,
        replies: Sequence[Message],
        run: Run | None,
        conversation_backend: str | None = None,
        servers: Mapping[str, str] | None = None,
    ) -> RunView:
        """A finished answer from its stored assistant and tool messages, and its run record.
        `servers` names the server of each tool (stored messages do not), as `GET /api/tools` does."""
        servers = servers or {}
        view = cls(answered_by=writers(replies, conversation_backend))
        steps: dict[str, ToolStep] = {}
        for message in replies:
            if message.role == "assistant":
                if message.content or message.status != "complete":
                    view.parts.append(TextPart(message.content, message.status))
                for call in message.tool_calls:
                    arguments = _parse_arguments(call.arguments)
                    step = ToolStep(call.id, call.name, arguments, server=servers.get(call.name, ""))
                    steps[call.id] = step
                    view.parts.append(step)
            elif message.role == "tool":
                step = steps.get(message.tool_call_id or "") or ToolStep(
                    message.tool_call_id or "",
                    message.name or "tool",
                    {},
                    server=servers.get(message.name or "", ""),
                )
                if step.call_id not in steps:
                    view.parts.append(step)
                step.done = True
                step.output = message.content
                step.sources = list(message.sources)
                step.error = "failed" if message.status == "error" else None
                step.duration_ms = message.duration_ms
        if run is None:
            # The run's record could not be read: show the stored text, without outcome or timings.
            view._finish("completed", None)
        else:
            view.error_code, view.error_message = run.error_code, run.error_message
            timings = Timings(run.ttft_ms, run.total_ms, run.tool_calls)
            live = run.status in LIVE_RUN_STATUSES
            view._finish("running" if live else run.status, None if live else timings)
        return view

    def messages(self) -> list[ChatItem]:
        items = []
        for part in self.parts:
            if isinstance(part, ToolStep):
                items.append(tool_step_item(part))
            elif isinstance(part, ApprovalCard):
                items.append(chat_item("assistant", card_html(part)))
            elif part.text.strip():
                items.append(chat_item("assistant", part.html()))
        if self.error_code:
            items.append(markdown_item("assistant", error_notice(self.error_code, self.error_message or "")))
        elif not self.finished and not self._visibly_working():
            items.append(
                chat_item("assistant", starting_notice(*self.starting) if self.starting else THINKING)
            )
        if self.finished and (self.timings is not None or self.outcome != "completed" or self.answered_by):
            items.append(chat_item("assistant", footer(self.outcome, self.timings, self.answered_by)))
        return items

    # internals

    def _visibly_working(self) -> bool:
        last = self.parts[-1] if self.parts else None
        if isinstance(last, ToolStep):
            return not last.done
        if isinstance(last, ApprovalCard):
            return last.waiting  # the card says what the answer waits for
        return isinstance(last, TextPart) and last.status == "streaming" and bool(last.text)

    def _streaming_part(self) -> TextPart | None:
        last = self.parts[-1] if self.parts else None
        return last if isinstance(last, TextPart) and last.status == "streaming" else None

    def _delta(self, text: str) -> None:
        part = self._streaming_part()
        if part is None:
            self.parts.append(TextPart(text))
        else:
            part.text += text

    def _completed(self, content: str, status: TextStatus) -> None:
        part = self._streaming_part()
        if part is None:
            part = TextPart(content, status)
            self.parts.append(part)
        # The completed message is authoritative: deltas may have been coalesced or cut short.
        part.text, part.status = content, status
        if not content:
            self.parts.remove(part)

    def _tool_started(self, call_id: str, name: str, arguments: Any, server: str = "") -> ToolStep:
        for part in self.parts:
            if isinstance(part, ToolStep) and part.call_id == call_id:
                part.server = part.server or server
                return part
        args: dict[str, Any] | str = arguments if isinstance(arguments, dict | str) else {}
        step = ToolStep(call_id, name or "tool", args, server=server)
        self.parts.append(step)
        return step

    def _cards(self, call_id: str) -> list[ApprovalCard]:
        return [p for p in self.parts if isinstance(p, ApprovalCard) and p.call_id == call_id]

    def _approval_required(self, data: run_events.ToolApprovalRequired) -> None:
        if self._cards(data.call_id):
            return  # the same request again (a resumed run announces nothing twice, but be sure)
        self.parts.append(ApprovalCard(data.call_id, data.name, data.server, data.arguments, data.expires_at))

    def _finish(self, outcome: RunStatus, timings: Timings | None) -> None:
        self.outcome, self.timings = outcome, timings
        final: TextStatus = "complete" if outcome == "completed" else "cancelled"
        for part in self.parts:
            if isinstance(part, TextPart) and part.status == "streaming":
                part.status = final
            elif isinstance(part, ToolStep):
                part.done = True
            elif isinstance(part, ApprovalCard) and part.decision is None and outcome != "running":
                part.closed = True


THINKING = '<span class="cs-thinking" aria-label="Thinking">Thinking…</span>'


def starting_notice(backend: str, timeout_s: float) -> str:
    minutes = f"{timeout_s / 60:.0f} min" if timeout_s >= 90 else f"{timeout_s:.0f} s"
    return (
        f'<span class="cs-thinking cs-starting">Starting {html.escape(backend)}: it was scaled to zero and '
        f"a replica is loading the model. This can take up to {minutes}…</span>"
    )


# Tool steps


def tool_arguments_text(step: ToolStep, key: str) -> str:
    if isinstance(step.arguments, dict):
        value = step.arguments.get(key)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return step.arguments


def tool_title(step: ToolStep) -> str:
    if step.name == "web_search":
        subject = shorten(tool_arguments_text(step, "query"), MAX_TITLE_ARG_CHARS)
        verbs = ("Searching the web", "Searched the web", "Web search failed")
    elif step.name == "calculator":
        subject = shorten(tool_arguments_text(step, "expression"), MAX_TITLE_ARG_CHARS)
        verbs = ("Calculating", "Calculated", "Calculation failed")
    else:
        # MCP tools' names and their servers' are untrusted: bounded like any argument.
        subject = shorten(step.name, MAX_TITLE_ARG_CHARS)
        if step.server and step.server != "builtin":
            subject = f"{subject} · {shorten(step.server, MAX_TITLE_ARG_CHARS)}"
        verbs = ("Using", "Used", "Failed")
    verb = verbs[2] if step.error else verbs[1] if step.done else verbs[0]
    # Gradio renders thought titles as Markdown.
    return f"{verb}: {md_escape(subject)}"


def tool_body(step: ToolStep) -> str:
    if not step.done:
        return "Waiting for the result…"
    if step.error:
        return md_escape(_strip_error_prefix(step.output) or step.error)
    if step.name == "web_search":
        return sources_markdown(step.sources) if step.sources else "No results."
    if step.name == "calculator":
        expression = inline_code(tool_arguments_text(step, "expression"))
        return f"{expression} = **{md_escape(step.output.strip())}**"
    arguments = step.arguments if isinstance(step.arguments, str) else json.dumps(step.arguments)
    body = f"Arguments: {inline_code(arguments)}\n\n{code_block(shorten_block(step.output))}"
    returned = attachments_markdown(step.attachments)
    return f"{body}\n\n{returned}" if returned else body


def attachments_markdown(attachments: Sequence[run_events.ToolAttachment]) -> str:
    """What a tool returned besides text, listed (names as code: no name becomes a link)."""
    shown, more = summaries(attachments)
    if not shown:
        return ""
    lines = []
    for item in shown:
        line = f"- {item.label}"
        if item.name:
            line += f" {inline_code(item.name)}"
        if item.details:
            line += f" ({md_escape(item.details)})"
        lines.append(line)
    if more:
        lines.append(f"- and {more} more")
    return "Also returned (not loaded):\n\n" + "\n".join(lines)


def shorten_block(text: str, limit: int = MAX_TOOL_OUTPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def sources_markdown(sources: Sequence[Source]) -> str:
    lines = []
    for number, source in enumerate(sources, 1):
        url = safe_url(source.url)
        host = urlsplit(source.url).netloc
        title = md_escape(shorten(source.title or host or source.url, 120))
        link = f"[{title}]({url})" if url else title
        line = f"{number}. {link} · {md_escape(host)}" if host else f"{number}. {link}"
        if source.snippet:
            line += f"  \n   {md_escape(shorten(source.snippet, MAX_SNIPPET_CHARS))}"
        lines.append(line)
    return "\n".join(lines)


def tool_step_item(step: ToolStep) -> ChatItem:
    metadata: MetadataDict = {
        "title": tool_title(step),
        "id": step.call_id,
        "status": "done" if step.done else "pending",
    }
    if step.duration_ms is not None:
        # Seconds; Gradio shows sub-second values in ms and hides a duration of 0.
        metadata["duration"] = round(step.duration_ms / 1000, 4)
    return markdown_item("assistant", tool_body(step), metadata)


# Notices and the footer

_ERRORS: Mapping[str, tuple[str, str]] = {
    "backend_unavailable": (
        "The model backend is not reachable",
        "Pick another backend from the menu at the top, or try again in a moment.",
    ),
    "backend_timeout": ("The model backend took too long to answer", "Try again, or pick another backend."),
    "backend_http_error": ("The model backend returned an error", "Try again, or pick another backend."),
    "backend_bad_response": (
        "The model backend sent a reply chatstack could not read",
        "Try again, or pick another backend.",
    ),
    "step_limit": ("Step limit reached", ""),
    "interrupted": ("Interrupted", "Use regenerate to ask again."),
    "connection_lost": ("Lost the connection to chatstack", "Reload the page to pick the answer back up."),
}


def error_notice(code: str, message: str) -> str:
    """Markdown: why a run failed (its message is the server's, escaped), and what to do."""
    title, hint = _ERRORS.get(code, _UNKNOWN_ERROR)
    lines = [f"⚠ **{title}.**"]
    if message:
        lines.append(md_escape(message))
    if hint:
        lines.append(f"*{hint}*")
    return "  \n".join(lines)


_UNKNOWN_ERROR = ("Something went wrong", "Try again; if it keeps failing, see the server log.")

_OUTCOME_BADGES: Mapping[str, str] = {
    "cancelled": "Stopped",
    "interrupted": "Interrupted",
    "failed": "Failed",
}


def duration_text(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def timing_text(timings: Timings) -> str:
    parts = []
    if timings.ttft_ms is not None:
        parts.append(f"first token {duration_text(timings.ttft_ms)}")
    if timings.total_ms is not None:
        parts.append(f"total {duration_text(timings.total_ms)}")
    calls = timings.tool_calls
    parts.append("no tool calls" if calls == 0 else "1 tool call" if calls == 1 else f"{calls} tool calls")
    return " · ".join(parts)


COPY = "Copy"


def footer(outcome: RunStatus | None, timings: Timings | None, answered_by: Sequence[str] = ()) -> str:
    badge = _OUTCOME_BADGES.get(outcome or "")
    pieces = []
    if badge:
        pieces.append(f'<span class="cs-badge cs-badge-{outcome}">{badge}</span>')
    line = [timing_text(timings)] if timings is not None else []
    if answered_by:
        line.append(f"by {_names(answered_by)}")
    if line:
        pieces.append(f'<span class="cs-timing">{html.escape(" · ".join(line))}</span>')
    # Copies the answer as it reads (chat.js): the Chatbot's own copy button would copy its HTML.
    pieces.append(f'<button class="cs-copy-answer" type="button" title="Copy the answer">{COPY}</button>')
    return f'<div class="cs-meta">{" ".join(pieces)}</div>'


def writers(replies: Sequence[Message], conversation_backend: str | None) -> tuple[str, ...]:
    """The backends that wrote an answer's messages, in order, if any is not `conversation_backend`.

    With `auto` (or after a failover) an answer is written by backends other than the one the
    conversation names; that is worth a word under the answer, the usual case is not.
    """
    names: dict[str, None] = {}
    for message in replies:
        # A stopped or failed answer's partial text is stored under the run's choice (`auto`), which
        # names no writer.
        if message.role == "assistant" and message.backend and message.backend != AUTO_BACKEND:
            names.setdefault(message.backend)
    return tuple(names) if any(n != conversation_backend for n in names) else ()


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# helpers


def _text_status(value: Any) -> TextStatus:
    return value if value in ("complete", "cancelled", "error", "interrupted") else "complete"


def _run_status(value: Any) -> RunStatus:
    return value if value in ("completed", "cancelled", "failed", "interrupted") else "failed"


def _parse_arguments(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _strip_error_prefix(text: str) -> str:
    return text.removeprefix("Error:").strip()
