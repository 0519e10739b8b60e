"""Approval cards: a tool call that waits for the user (`tool.approval_required`), shown in the answer
with Approve and Deny, and what became of it (`tool.approval_resolved`).

The tool's name, its server's name and its arguments come from the model and from MCP servers:
untrusted, so they are escaped, bounded and shown as text. The card is one line of HTML (newlines as
character references) so that the Chatbot's Markdown parser passes it on as one raw HTML block.

The buttons carry the call's id, hex-encoded in a class (`call_class`: the Chatbot's sanitizer drops
`data-` attributes, and a class of hex digits cannot break out of anything); `CLICKS_JS`, the page's
listener for them, turns a click into an event of a Gradio component (see wiring.py), whose handler
calls the API with the session's key.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_ARGUMENT_CHARS = 4000
MAX_NAME_CHARS = 80
MAX_REASON_CHARS = 300
MAX_CALL_ID_CHARS = 128
"""As the approvals endpoint accepts them."""
TIMEOUT_BY = "timeout"
"""`by` of a call nobody decided in time."""
CANCELLED_REASON = "cancelled"


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    by: str
    reason: str | None = None


@dataclass(slots=True)
class ApprovalCard:
    """A call that asked for approval, and its decision once it is known."""

    call_id: str
    name: str
    server: str
    arguments: dict[str, Any] | str | None
    expires_at: str = ""
    decision: Decision | None = None
    closed: bool = False
    """The run ended before a decision arrived (stopped, failed): nothing can be decided any more."""

    @property
    def waiting(self) -> bool:
        return self.decision is None and not self.closed


def card_html(card: ApprovalCard) -> str:
    """The card as HTML written here: every text from the run is escaped and bounded."""
    name = _text(card.name or "tool", MAX_NAME_CHARS)
    server = _text(card.server or "builtin", MAX_NAME_CHARS)
    source = "a built-in tool" if card.server in ("", "builtin") else f"from <strong>{server}</strong>"
    state = "waiting" if card.waiting else _state(card)
    parts = [
        f'<div class="cs-approval cs-approval-{state} {call_class(card.call_id)}">',
        '<div class="cs-approval-title">'
        f"{'Allow this tool call?' if card.waiting else 'Tool call'} "
        f'<code class="cs-approval-tool">{name}</code> '
        f'<span class="cs-approval-server">{source}</span></div>',
        f'<pre class="cs-approval-args"><code>{_multiline(arguments_text(card.arguments))}</code></pre>',
    ]
    if card.waiting:
        call = call_class(card.call_id)
        parts.append(
            '<div class="cs-approval-actions">'
            f'<button type="button" class="cs-approve {call}">Approve</button>'
            f'<button type="button" class="cs-deny {call}">Deny</button>'
            "</div>"
        )
        expires = expires_text(card.expires_at)
        if expires:
            parts.append(f'<div class="cs-approval-note">{html.escape(expires)}</div>')
    else:
        parts.append(f'<div class="cs-approval-outcome" role="status">{outcome_text(card)}</div>')
    parts.append("</div>")
    return "".join(parts)


def arguments_text(arguments: Mapping[str, Any] | str | None) -> str:
    """The arguments as indented JSON (as the model wrote them when they are not JSON), bounded."""
    if arguments is None:
        text = "{}"
    elif isinstance(arguments, str):
        text = arguments
    else:
        text = json.dumps(arguments, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_ARGUMENT_CHARS else text[:MAX_ARGUMENT_CHARS] + "\n…"


def outcome_text(card: ApprovalCard) -> str:
    """What became of the call (HTML, its parts escaped)."""
    decision = card.decision
    if decision is None:
        return "Not decided: the answer ended first."
    by = _text(decision.by, MAX_NAME_CHARS)
    reason = decision.reason or ""
    if decision.approved:
        return f"✓ Approved by {by}."
    if decision.by == TIMEOUT_BY:
        return "⏱ Timed out: nobody answered in time, so it was denied."
    if reason == CANCELLED_REASON:
        return f"Not run: the answer was stopped{f' by {by}' if decision.by else ''}."
    suffix = f" ({_text(reason, MAX_REASON_CHARS)})" if reason else ""
    return f"✕ Denied by {by}{suffix}."


def expires_text(expires_at: str) -> str:
    try:
        at = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return f"Denied automatically at {at:%H:%M} UTC if nobody answers."


def _state(card: ApprovalCard) -> str:
    if card.decision is None:
        return "closed"
    if card.decision.approved:
        return "approved"
    return "timed-out" if card.decision.by == TIMEOUT_BY else "denied"


def _text(value: str, limit: int) -> str:
    value = " ".join(value.split())
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    return html.escape(value)


def call_class(call_id: str) -> str:
    """The class naming a card's call: its id's UTF-8 bytes in hex."""
    return CALL_CLASS_PREFIX + call_id[:MAX_CALL_ID_CHARS].encode().hex()


def _multiline(text: str) -> str:
    # One line of HTML: see the module docstring.
    return html.escape(text).replace("\r", "").replace("\n", "&#10;")


# The page side

CALL_CLASS_PREFIX = "cs-call-"
EVENT = "click"
"""The event of the bridge component (`Page.approvals`) a decision arrives as."""

CLICKS_JS = """
window.csApprovalTrigger = trigger;
if (!window.csApprovalListening) {
  window.csApprovalListening = true;
  document.addEventListener("click", (event) => {
    const button = event.target.closest("#cs-chat .cs-approval-actions button");
    const hex = button && [...button.classList].find((c) => c.startsWith("cs-call-"));
    if (!hex || button.disabled) {
      return;
    }
    const bytes = (hex.slice(8).match(/../g) || []).map((pair) => parseInt(pair, 16));
    const card = button.closest(".cs-approval");
    card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    card.classList.add("cs-approval-sending");
    window.csApprovalTrigger("click", {
      call_id: new TextDecoder().decode(new Uint8Array(bytes)),
      approve: button.classList.contains("cs-approve"),
    });
  });
}
"""
"""`js_on_load` of the bridge component: a click on a card's button becomes its `click` event, with
the call and the decision as the event's data. Registered once per page (the component may mount
again), always with the newest `trigger`."""


@dataclass(frozen=True, slots=True)
class ClickedDecision:
    call_id: str
    approve: bool


def clicked_decision(data: Any) -> ClickedDecision | None:
    """The decision a click sent (the browser's event data: checked, it is the page's input)."""
    if not isinstance(data, Mapping):
        return None
    call_id, approve = data.get("call_id"), data.get("approve")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_CALL_ID_CHARS:
        return None
    if not isinstance(approve, bool):
        return None
    return ClickedDecision(call_id, approve)
