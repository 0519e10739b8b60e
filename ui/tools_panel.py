"""The tools panel: which tools a conversation's answers may use, grouped by the server they come from.

A `<details>` block above the chat, drawn here as HTML: each tool a checkbox with its description,
the ones that ask before they run marked, the unavailable ones greyed out with the reason, the ones
the operator denied shown but locked. Names, descriptions and reasons come from MCP servers
(untrusted: a description may carry HTML or instructions for a model) and are escaped and bounded.

The panel's script (`CHANGES_JS`) sends the whole new selection with every toggle, as the data of
the panel component's `input` event (see wiring.py), so the last toggle always wins.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from ui.api_models import ToolInfo

BUILTIN = "builtin"
MAX_NAME_CHARS = 64
MAX_SERVER_CHARS = 64
MAX_DESCRIPTION_CHARS = 300
MAX_REASON_CHARS = 200
MAX_SELECTED = 512
"""As the API accepts a conversation's `tools`."""


def enabled(tools: Sequence[ToolInfo], selection: Sequence[str] | None) -> set[str]:
    """The tools a conversation has on: its selection, or by default every tool not denied."""
    if selection is None:
        return {t.name for t in tools if t.approval != "deny"}
    chosen = set(selection)
    return {t.name for t in tools if t.name in chosen and t.approval != "deny"}


def signature(tools: Sequence[ToolInfo]) -> str:
    """What the panel shows of the tools list, in short: a change means the panel needs redrawing."""
    shown = [(t.name, t.server, t.description, t.approval, t.status, t.reason) for t in tools]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:16]


_SIGNATURE = re.compile(r'data-signature="([0-9a-f]{16})"')


def shown_signature(panel: str | None) -> str:
    """The `signature` of the tools list a panel the page shows was drawn from ("" if none)."""
    found = _SIGNATURE.search(panel or "")
    return found.group(1) if found else ""


def panel_html(
    tools: Sequence[ToolInfo],
    selection: Sequence[str] | None,
    *,
    revision: str = "",
    refresh: bool = False,
) -> str:
    """The panel for a conversation with `selection` (None: the default); "" without any tool.
    A new `revision` makes the page redraw it even if nothing else changed; `refresh` keeps it open
    if it was (a redraw for a change of the tools, not for another conversation)."""
    if not tools:
        return ""
    on = enabled(tools, selection)
    offerable = [t for t in tools if t.approval != "deny"]
    count = f"{len(on & {t.name for t in offerable})} of {len(offerable)} on"
    groups = []
    ordered = sorted(tools, key=lambda t: (t.server != BUILTIN, t.server))
    for server, members in groupby(ordered, key=lambda t: t.server):
        rows = "".join(_tool_row(tool, tool.name in on) for tool in members)
        label = "Built-in" if server == BUILTIN else f"MCP server {_text(server, MAX_SERVER_CHARS)}"
        groups.append(
            f'<fieldset class="cs-tools-server" data-server="{_attr(server)}">'
            f"<legend>{label}</legend>{rows}</fieldset>"
        )
    kept_open = ' data-refresh=""' if refresh else ""
    return (
        f'<details class="cs-tools" data-revision="{_attr(revision)}" data-signature="{signature(tools)}"'
        f"{kept_open}>"
        f'<summary>Tools <span class="cs-tools-count">{count}</span></summary>'
        f'<div class="cs-tools-body">{"".join(groups)}</div></details>'
    )


def _tool_row(tool: ToolInfo, checked: bool) -> str:
    denied = tool.approval == "deny"
    unavailable = tool.status != "available"
    classes = ["cs-tool"]
    badges = []
    if tool.approval == "ask":
        badges.append('<span class="cs-tool-badge cs-tool-ask">asks first</span>')
    if denied:
        classes.append("cs-tool-denied")
        badges.append('<span class="cs-tool-badge">turned off by the operator</span>')
    if unavailable:
        classes.append("cs-tool-unavailable")
    # A tool whose server is down keeps its place in the selection (a disabled box still counts as
    # checked), so that it is back on when its server is.
    attributes = [f'data-tool="{_attr(tool.name)}"']
    if checked:
        attributes.append("checked")
    if denied or unavailable:
        attributes.append("disabled")
    description = _text(tool.description, MAX_DESCRIPTION_CHARS)
    reason = ""
    if unavailable:
        why = _text(tool.reason or "its server is not connected", MAX_REASON_CHARS)
        reason = f'<span class="cs-tool-reason">Unavailable: {why}</span>'
    return (
        f'<label class="{" ".join(classes)}">'
        f'<input type="checkbox" {" ".join(attributes)}>'
        f'<span class="cs-tool-text"><span class="cs-tool-head"><span class="cs-tool-name">'
        f"{_text(tool.name, MAX_NAME_CHARS)}</span>{''.join(badges)}</span>"
        f'<span class="cs-tool-description">{description}</span>{reason}</span></label>'
    )


def _text(value: str, limit: int) -> str:
    """Escaped, on one line, bounded. Braces and `$` too: Gradio's HTML component fills its template
    with the value, and a description must not be able to reach that."""
    value = " ".join(value.split())
    value = value if len(value) <= limit else value[: limit - 1].rstrip() + "…"
    return html.escape(value).replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;")


def _attr(value: str) -> str:
    return _text(value, MAX_NAME_CHARS).replace('"', "&quot;")


def selection_from(data: Any) -> list[str] | None:
    """The selection the panel's script sent (the browser's event data), or None if it is not one."""
    names = data.get("tools") if isinstance(data, Mapping) else None
    if not isinstance(names, list) or len(names) > MAX_SELECTED:
        return None
    if not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME_CHARS for n in names):
        return None
    return list(dict.fromkeys(names))


def draft_text(selection: Sequence[str] | None) -> str:
    """A new chat's selection, kept in the page until its first message creates the conversation."""
    return "" if selection is None else json.dumps(list(selection))


def draft_selection(text: str) -> list[str] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return selection_from({"tools": value})


EVENT = "input"
"""The panel component's event a new selection arrives as."""

CHANGES_JS = """
element.addEventListener("change", (event) => {
  if (!event.target.matches("input[data-tool]")) {
    return;
  }
  const boxes = [...element.querySelectorAll("input[data-tool]")];
  const count = element.querySelector(".cs-tools-count");
  if (count) {
    const counted = boxes.filter((b) => !b.closest(".cs-tool-denied"));
    count.textContent = `${counted.filter((b) => b.checked).length} of ${counted.length} on`;
  }
  trigger("input", { tools: boxes.filter((b) => b.checked).map((b) => b.dataset.tool) });
});
let open = false;
element.addEventListener("toggle", (event) => { open = event.target.open; }, true);
watch("value", () => {
  const details = element.querySelector("details.cs-tools");
  if (details && open && details.hasAttribute("data-refresh")) {
    details.open = true;
  }
});
"""
"""`js_on_load` of the panel component: every toggle sends the whole selection (and updates the
count in the summary, which the server does not redraw). A refresh of the panel (its tools changed)
leaves it open if it was."""
