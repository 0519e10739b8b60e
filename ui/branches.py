"""Branches in the chat: the edit pencil on questions, the "< 2 / 3 >" switchers, and the anchors a
search result scrolls to.

The Chatbot sanitizes what it shows and drops `data-*` attributes, so what a control acts on rides in
its class names (`cs-to-<id>`, `cs-parent-<id>`); the text an editor opens with rides in a hidden
element, every character but letters and digits written as an entity so that neither Markdown nor
HTML can read anything into it. `ACTIONS_JS`, the page's listener for the controls, opens the inline
editor and turns a choice into an event of a hidden component (see wiring.py) whose handler calls the
API with the session's key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ui.api_models import Message
from ui.markdown import join_blocks
from ui.render import ChatItem, chat_item

MAX_MESSAGE_ID = 2**63 - 1
MAX_EDIT_CHARS = 1_000_000
"""Bounds what the page may send as an edit; the API applies its own (smaller) message limit."""
_PLAIN = re.compile(r"[A-Za-z0-9 ]")
_DIGITS = re.compile(r"[0-9]{1,19}")


def inert_text(text: str) -> str:
    """`text` as HTML whose text content is exactly `text`, with no character left for the Markdown
    pass or the sanitizer to interpret (newlines included: a blank line would end an HTML block)."""
    return "".join(c if _PLAIN.fullmatch(c) else f"&#{ord(c)};" for c in text)


def anchor_html(message_ids: Sequence[int]) -> str:
    """An empty mark that names the messages a chat item shows, for scrolling to one of them."""
    names = " ".join(f"cs-m-{i}" for i in message_ids)
    # A block of its own: the Chatbot's Markdown pass leaves one-line HTML blocks alone.
    return f'<div class="cs-anchor {names}"></div>' if names else ""


def switcher_html(message_id: int, siblings: Sequence[int], what: str) -> str:
    """ "< 2 / 3 >" for a message with alternatives ("" without): each arrow names the sibling it
    shows. `what` says what the alternatives are, for the arrows' titles ("question", "answer")."""
    if len(siblings) < 2 or message_id not in siblings:
        return ""
    at = siblings.index(message_id)
    previous = siblings[at - 1] if at > 0 else None
    following = siblings[at + 1] if at + 1 < len(siblings) else None
    return (
        '<span class="cs-branches">'
        f"{_arrow(previous, '‹', f'Previous {what}')}"
        f'<span class="cs-branch-position">{at + 1} / {len(siblings)}</span>'
        f"{_arrow(following, '›', f'Next {what}')}"
        "</span>"
    )


def _arrow(target: int | None, label: str, title: str) -> str:
    if target is None:
        off = "cs-branch-go cs-branch-off"
        return f'<button class="{off}" type="button" title="{title}" disabled>{label}</button>'
    return f'<button class="cs-branch-go cs-to-{target}" type="button" title="{title}">{label}</button>'


def question_tools_html(message_id: int, parent_id: int | None, siblings: Sequence[int], text: str) -> str:
    """Under a question: its switcher (if it was edited), and the pencil that edits it (with the text
    the editor opens with). An edit is sent as a new question after the same parent."""
    parent = f"cs-parent-{parent_id}" if parent_id is not None else "cs-parent-root"
    return (
        '<div class="cs-question-tools">'
        f"{switcher_html(message_id, siblings, 'version')}"
        f'<button class="cs-edit {parent}" type="button" title="Edit this message">✎</button>'
        f'<span class="cs-raw">{inert_text(text)}</span>'
        "</div>"
    )


def answer_branches_item(first_reply_id: int, siblings: Sequence[int]) -> ChatItem | None:
    """A line under an answer that was regenerated: "< 1 / 2 >" between the answers."""
    switcher = switcher_html(first_reply_id, siblings, "answer")
    if not switcher:
        return None
    # `cs-meta`: not part of the answer's text (its Copy button skips it).
    return chat_item("assistant", f'<div class="cs-meta cs-answer-branches">{switcher}</div>')


def answer_has_alternatives(messages: Sequence[Message], run_id: str) -> bool:
    """Whether the answer `run_id` wrote has alternatives (it was a regeneration)."""
    first = next((m for m in messages if m.run_id == run_id and m.role != "user"), None)
    return first is not None and len(first.siblings) > 1


def mark_answer(items: list[ChatItem], reply_ids: Sequence[int]) -> None:
    """Put the anchor of an answer's messages on its first text (its steps may be closed: a closed
    step cannot be scrolled to), or on its last item if it has no text."""
    anchor = anchor_html(reply_ids)
    if not anchor or not items:
        return
    target = next((item for item in items if not item.get("metadata")), items[-1])
    content = target["content"]
    if isinstance(content, list) and content and content[0].get("type") == "text":
        first: Any = content[0]
        first["text"] = join_blocks(anchor, str(first.get("text", "")))


# What the page sends


@dataclass(frozen=True, slots=True)
class EditQuestion:
    parent_id: int | None
    """None: the edited question was the conversation's first."""
    text: str


@dataclass(frozen=True, slots=True)
class SwitchBranch:
    message_id: int


BranchAction = EditQuestion | SwitchBranch


def message_id_from(value: Any) -> int | None:
    """A message id the page sent (an int, or the digits of a class name such as `cs-to-12`), or None.
    Only ASCII digits: `int()` would also take "+7", " 7", "7_0" and other scripts' digits."""
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_MESSAGE_ID else None


def branch_action(data: Any) -> BranchAction | None:
    """What a click or an edit sent (the browser's event data: checked, it is the page's input)."""
    if not isinstance(data, Mapping):
        return None
    kind = data.get("kind")
    if kind == "switch":
        target = message_id_from(data.get("to"))
        return SwitchBranch(target) if target is not None else None
    if kind == "edit":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_EDIT_CHARS:
            return None
        raw_parent = data.get("parent")
        if raw_parent in (None, "root"):
            return EditQuestion(None, text)
        parent = message_id_from(raw_parent)
        return EditQuestion(parent, text) if parent is not None else None
    return None


ACTIONS_JS = """
window.csBranchTrigger = trigger;
if (!window.csBranchListening) {
  window.csBranchListening = true;
  const named = (element, prefix) => {
    for (const name of element.classList) {
      if (name.startsWith(prefix)) { return name.slice(prefix.length); }
    }
    return null;
  };
  const closeEditor = (bubble) => {
    bubble.querySelector(".cs-editor")?.remove();
    bubble.classList.remove("cs-editing");
  };
  const openEditor = (pencil) => {
    const bubble = pencil.closest(".message-content") || pencil.closest(".message");
    if (!bubble || bubble.querySelector(".cs-editor")) { return; }
    document.querySelectorAll("#cs-chat .cs-editing").forEach(closeEditor);
    const raw = pencil.parentElement.querySelector(".cs-raw");
    const parent = named(pencil, "cs-parent-");
    const editor = document.createElement("div");
    editor.className = "cs-editor";
    const box = document.createElement("textarea");
    box.className = "cs-editor-text";
    box.value = raw ? raw.textContent : "";
    box.rows = Math.min(8, Math.max(2, box.value.split("\\n").length));
    box.setAttribute("aria-label", "Edit the message; Enter sends, Shift+Enter adds a line, Escape cancels");
    const actions = document.createElement("div");
    actions.className = "cs-editor-actions";
    const cancel = document.createElement("button");
    cancel.type = "button"; cancel.className = "cs-editor-cancel"; cancel.textContent = "Cancel";
    const send = document.createElement("button");
    send.type = "button"; send.className = "cs-editor-send"; send.textContent = "Send";
    actions.append(cancel, send);
    editor.append(box, actions);
    bubble.classList.add("cs-editing");
    bubble.appendChild(editor);
    const submit = () => {
      const text = box.value;
      if (!text.trim()) { return; }
      box.disabled = true; send.disabled = true;
      send.textContent = "Sending…";
      // The chat keeps its elements when it redraws: close the editor once the answer redraws it.
      const chat = document.querySelector("#cs-chat");
      const done = new MutationObserver((changes) => {
        if (changes.some((change) => !editor.contains(change.target))) {
          done.disconnect();
          closeEditor(bubble);
        }
      });
      done.observe(chat, { childList: true, subtree: true, characterData: true });
      window.csBranchTrigger("click", { kind: "edit", parent: parent === "root" ? null : parent, text });
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault(); submit();
      } else if (event.key === "Escape") {
        event.preventDefault(); closeEditor(bubble);
      }
      event.stopPropagation();
    });
    cancel.addEventListener("click", (event) => { event.stopPropagation(); closeEditor(bubble); });
    send.addEventListener("click", (event) => { event.stopPropagation(); submit(); });
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  };
  document.addEventListener("click", (event) => {
    const go = event.target.closest("#cs-chat .cs-branch-go");
    if (go) {
      event.preventDefault();
      const to = named(go, "cs-to-");
      if (to && !go.disabled) {
        go.closest(".cs-branches")?.classList.add("cs-branch-busy");
        window.csBranchTrigger("click", { kind: "switch", to });
      }
      return;
    }
    const pencil = event.target.closest("#cs-chat .cs-edit");
    if (pencil) {
      event.preventDefault();
      openEditor(pencil);
    }
  });
}
"""
"""The page's listener for the branch controls in the chat (`js_on_load` of a hidden gr.HTML)."""
