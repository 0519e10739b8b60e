"""Search over the conversation list: the results, and the jump to a result's message.

A snippet is the message's own text (untrusted): it is escaped here, and the matched words are
marked here from the server's ranges, so no text of a message can add markup. `HITS_JS` turns a
click on a result into an event (see wiring.py); `FOCUS_JS` scrolls the chat to the message and
highlights it briefly once the conversation is shown.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ui.api_models import SearchHit, SearchResults
from ui.branches import message_id_from

MAX_QUERY_CHARS = 500
MAX_TITLE_CHARS = 80
RESULTS_SHOWN = 20
_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROLES = {"user": "You", "assistant": "Answer"}


MIN_PREFIX_CHARS = 2
"""As the API's: a shorter prefix* is refused (it would match most of the index)."""
_WORD_END = re.compile(r'[\s"]')


def as_typed(query: str) -> str:
    """What a search box runs while the user is still typing `query`: the word being typed (the
    last one, unless a space ends the query) becomes a prefix*, or is left out while it is shorter
    than a prefix may be. An open "phrase becomes a "phrase"* the same way."""
    text = query[: MAX_QUERY_CHARS - 2]  # room for the `"*` added
    if not text.strip() or text[-1].isspace() or text[-1] in '*"':
        return text
    if text.count('"') % 2:  # an open phrase, which runs to the end
        words = text.rpartition('"')[2].split()
        return text + '"*' if words and _alnum(words[-1]) >= MIN_PREFIX_CHARS else text
    last = _WORD_END.split(text)[-1]
    if _alnum(last) >= MIN_PREFIX_CHARS:
        return text + "*"
    return text[: len(text) - len(last)].rstrip()


def _alnum(word: str) -> int:
    return sum(ch.isalnum() for ch in word)


def snippet_html(snippet: str, highlights: Sequence[tuple[int, int]]) -> str:
    """The snippet escaped, with each [start, end) range (code points, as Python indexes `str`) in
    `<mark>`. A range is clipped to the text and to what earlier ranges left of it; one that runs
    backwards or has nothing left is skipped. The text itself is never changed."""
    out: list[str] = []
    position = 0
    for start, end in sorted(highlights):
        start, end = max(start, position), min(end, len(snippet))
        if start >= end:
            continue
        out.append(html.escape(snippet[position:start]))
        out.append(f"<mark>{html.escape(snippet[start:end])}</mark>")
        position = end
    out.append(html.escape(snippet[position:]))
    return "".join(out)


def _title(hit: SearchHit) -> str:
    title = " ".join(hit.conversation_title.split()) or "Untitled"
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"


def hit_html(hit: SearchHit) -> str:
    role = _ROLES.get(hit.role, hit.role)
    when = hit.created_at.strftime("%Y-%m-%d") if hit.created_at else ""
    conversation = html.escape(hit.conversation_id, quote=True)
    return (
        f'<button class="cs-hit" type="button" data-conversation="{conversation}"'
        f' data-message="{hit.message_id}">'
        f'<span class="cs-hit-title">{html.escape(_title(hit))}</span>'
        f'<span class="cs-hit-meta">{html.escape(role)}{" · " + when if when else ""}</span>'
        f'<span class="cs-hit-snippet">{snippet_html(hit.snippet, hit.highlights)}</span>'
        "</button>"
    )


def results_html(query: str, results: SearchResults) -> str:
    """The result list under the search box ("" for no query: the list is hidden)."""
    if not query.strip():
        return ""
    hits = [hit for hit in results.items if _CONVERSATION_ID.fullmatch(hit.conversation_id)]
    if not hits:
        return '<div class="cs-search-results"><div class="cs-search-none">No messages match.</div></div>'
    more = results.total - len(hits)
    footer = f'<div class="cs-search-more">and {more} more: add words to narrow it</div>' if more > 0 else ""
    return f'<div class="cs-search-results">{"".join(hit_html(h) for h in hits)}{footer}</div>'


def problem_html(message: str) -> str:
    problem = f'<div class="cs-search-none" role="alert">{html.escape(message)}</div>'
    return f'<div class="cs-search-results">{problem}</div>'


@dataclass(frozen=True, slots=True)
class Jump:
    conversation_id: str
    message_id: int


def jump_from(data: Any) -> Jump | None:
    """The result a click named (the browser's event data: checked)."""
    if not isinstance(data, Mapping):
        return None
    conversation, message = data.get("conversation"), message_id_from(data.get("message"))
    if not isinstance(conversation, str) or not _CONVERSATION_ID.fullmatch(conversation) or message is None:
        return None
    return Jump(conversation, message)


def typed_query_from(data: Any) -> str | None:
    """The query the page sent as the user typed (the browser's event data: checked)."""
    if not isinstance(data, Mapping):
        return None
    query = data.get("query")
    return query if isinstance(query, str) and len(query) <= MAX_QUERY_CHARS else None


def focus_value(message_id: int, nonce: str) -> str:
    """What `Page.focus` is set to: the message to scroll to, made unique so a second jump to the
    same message scrolls again."""
    return f"{message_id}:{nonce}"


TYPING_PAUSE_MS = 300
"""Search-as-you-type waits for this pause in typing, so a word typed fast is one search."""

HITS_JS = """
window.csSearchTrigger = trigger;
if (!window.csSearchListening) {
  window.csSearchListening = true;
  // As the user types: the query once they pause, as a `submit` of the results (see wiring.py).
  let typing = null;
  document.addEventListener("input", (event) => {
    const box = event.target.closest && event.target.closest("#cs-search");
    if (!box) { return; }
    clearTimeout(typing);
    typing = setTimeout(() => {
      const field = box.querySelector("input, textarea");
      if (field) { window.csSearchTrigger("submit", { query: field.value }); }
    }, %PAUSE%);
  });
  document.addEventListener("click", (event) => {
    const hit = event.target.closest("#cs-search-results .cs-hit");
    if (!hit) { return; }
    event.preventDefault();
    for (const open of document.querySelectorAll("#cs-search-results .cs-hit-open")) {
      open.classList.remove("cs-hit-open");
    }
    hit.classList.add("cs-hit-open");
    window.csSearchTrigger("click", { conversation: hit.dataset.conversation, message: hit.dataset.message });
    // On a phone the list covers the chat: close it, as picking a conversation does.
    if (window.matchMedia("(max-width: 768px)").matches) {
      const sidebar = document.querySelector("#cs-sidebar");
      if (sidebar && sidebar.classList.contains("open")) { sidebar.querySelector(".toggle-button")?.click(); }
    }
  });
}
""".replace("%PAUSE%", str(TYPING_PAUSE_MS))
"""The page's listener for clicks on results and for typing in the search box (`js_on_load` of the
results)."""

FOCUS_JS = """(value) => {
  const id = String(value || "").split(":")[0];
  if (!/^[0-9]+$/.test(id)) { return []; }
  const started = Date.now();
  const look = () => {
    const anchor = document.querySelector(`#cs-chat .cs-m-${id}`);
    if (!anchor) {
      if (Date.now() - started < 8000) { setTimeout(look, 100); }
      return;
    }
    const target = anchor.closest(".message-row") || anchor.closest(".message") || anchor.parentElement;
    target.scrollIntoView({ block: "center" });
    // The Chatbot scrolls to its end as it redraws: scroll back once it has settled.
    setTimeout(() => target.scrollIntoView({ block: "center" }), 400);
    target.classList.remove("cs-found");
    void target.offsetWidth;
    target.classList.add("cs-found");
    setTimeout(() => target.classList.remove("cs-found"), 2500);
  };
  setTimeout(look, 50);
  return [];
}"""
"""Scrolls the chat to the message `Page.focus` names, once it is drawn, and highlights it."""
