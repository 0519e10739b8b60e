"""Files attached to a question: the chips on the composer (before sending) and on sent questions,
reading what the browser uploaded, and the page's drag-and-drop.

The browser uploads to Gradio (its upload route is behind the same session guard as every request of
the page); the handler then sends the files to the API with the user's key, server side. The page's
script never calls the API itself, so it never needs the key.

Names come from the user's files: escaped wherever they are shown.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ui.api_models import AttachmentRef

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Larger than the API accepts in one upload: such a file is refused here without being read."""
MAX_NAME_CHARS = 80
_ATTACHMENT_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadTooLarge(Exception):
    def __init__(self, name: str, size: int) -> None:
        super().__init__(
            f"{name} is {size_text(size)}; files over {size_text(MAX_UPLOAD_BYTES)} cannot be sent"
        )


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def _short(name: str) -> str:
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…"


def download_href(conversation_id: str, attachment_id: str, *, session: bool) -> str:
    """The file's download link, relative to the page. A plain link cannot carry an API key: with
    `session`, it goes to the copy of the download the session cookie opens (app/ui_guard.py)."""
    prefix = "ui" if session else "api"
    conversation, attachment = quote(conversation_id, safe=""), quote(attachment_id, safe="")
    return f"{prefix}/conversations/{conversation}/attachments/{attachment}"


def message_chips_html(conversation_id: str, files: Sequence[AttachmentRef], *, session: bool) -> str:
    """The files of a sent question, each a link that downloads it."""
    if not files or not conversation_id:
        return ""
    chips = []
    for file in files:
        href = html.escape(download_href(conversation_id, file.id, session=session), quote=True)
        name = html.escape(_short(file.name))
        title = html.escape(f"Download {file.name}", quote=True)
        chips.append(
            f'<a class="cs-chip cs-chip-sent" href="{href}" download title="{title}">'
            f'<span class="cs-chip-name">{name}</span>'
            f'<span class="cs-chip-size">{size_text(file.bytes)}</span></a>'
        )
    return f'<div class="cs-chips cs-message-chips">{"".join(chips)}</div>'


def composer_chips_html(pending: Sequence[AttachmentRef], problem: str = "", revision: str = "") -> str:
    """The files that go with the next question, each removable, and why the last upload failed.

    `revision` makes the HTML differ from the last one sent, so the page redraws it (which also
    clears the "Uploading…" chips the page's script showed meanwhile).
    """
    chips = []
    for file in pending:
        name = html.escape(_short(file.name))
        chips.append(
            f'<span class="cs-chip cs-chip-pending" title="{html.escape(file.name, quote=True)}">'
            f'<span class="cs-chip-name">{name}</span>'
            f'<span class="cs-chip-size">{size_text(file.bytes)}</span>'
            f'<button class="cs-chip-remove" type="button" data-attachment="{html.escape(file.id, True)}"'
            f' title="Remove {html.escape(file.name, quote=True)}" aria-label="Remove">×</button></span>'
        )
    error = f'<div class="cs-attach-error" role="alert">{html.escape(problem)}</div>' if problem else ""
    mark = f'<span class="cs-revision" hidden>{html.escape(revision)}</span>' if revision else ""
    return f'<div class="cs-chips cs-composer-chips">{"".join(chips)}</div>{error}{mark}'


def pending_from(state: Any) -> list[AttachmentRef]:
    """The pending files the page's state holds (a list of dicts: Gradio state is plain data)."""
    if not isinstance(state, list):
        return []
    found = []
    for entry in state:
        try:
            found.append(AttachmentRef.model_validate(entry))
        except ValueError:
            continue
    return found


def pending_state(pending: Sequence[AttachmentRef]) -> list[dict[str, Any]]:
    return [file.model_dump() for file in pending]


def removed_attachment(data: Any) -> str | None:
    """The attachment a chip's × button named (the browser's event data: checked)."""
    if not isinstance(data, Mapping):
        return None
    value = data.get("remove")
    return value if isinstance(value, str) and _ATTACHMENT_ID.fullmatch(value) else None


def upload_paths(files: Any) -> list[Path]:
    """The paths of what Gradio's upload stored (a path, or a list of them)."""
    if files is None:
        return []
    items = files if isinstance(files, list) else [files]
    return [Path(str(getattr(item, "name", item))) for item in items if item]


def display_name(path: Path) -> str:
    return path.name or "file"


async def read_uploads(paths: Sequence[Path]) -> list[tuple[str, bytes]]:
    """(name, content) of each uploaded file, read off the event loop; the copies Gradio kept are
    deleted (the API keeps the file)."""

    def read() -> list[tuple[str, bytes]]:
        files = []
        for path in paths:
            size = path.stat().st_size
            if size > MAX_UPLOAD_BYTES:
                raise UploadTooLarge(display_name(path), size)
            files.append((display_name(path), path.read_bytes()))
        return files

    try:
        return await asyncio.to_thread(read)
    finally:
        await asyncio.to_thread(_remove, paths)


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


DROP_JS = """
window.csAttachTrigger = trigger;
if (!window.csAttachListening) {
  window.csAttachListening = true;
  const sizeText = (size) => size < 1024 ? `${size} B`
    : size < 1048576 ? `${Math.round(size / 1024)} KB` : `${(size / 1048576).toFixed(1)} MB`;
  // What is being uploaded shows at once, until the handler's answer redraws the chips.
  const showUploading = (files) => {
    const holder = document.querySelector("#cs-attachments .cs-composer-chips");
    if (!holder) { return; }
    for (const file of files) {
      const chip = document.createElement("span");
      chip.className = "cs-chip cs-chip-uploading";
      const name = document.createElement("span");
      name.className = "cs-chip-name";
      name.textContent = file.name;
      const state = document.createElement("span");
      state.className = "cs-chip-size";
      state.textContent = `${sizeText(file.size)} · uploading…`;
      const bar = document.createElement("span");
      bar.className = "cs-chip-progress";
      chip.append(name, state, bar);
      holder.appendChild(chip);
    }
  };
  document.addEventListener("change", (event) => {
    if (event.target.matches && event.target.matches("#cs-composer input[type=file]")) {
      showUploading(event.target.files || []);
    }
  }, true);
  const main = () => document.querySelector("#cs-main");
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  document.addEventListener("dragover", (event) => {
    if (carriesFiles(event) && main()?.contains(event.target)) {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      main().classList.add("cs-dropping");
    }
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget || !main()?.contains(event.relatedTarget)) {
      main()?.classList.remove("cs-dropping");
    }
  });
  document.addEventListener("drop", (event) => {
    main()?.classList.remove("cs-dropping");
    if (!carriesFiles(event) || !main()?.contains(event.target)) { return; }
    event.preventDefault();
    const input = document.querySelector("#cs-composer input[type=file]");
    if (!input || !event.dataTransfer.files.length) { return; }
    // Handing the files to the attach button's own input uploads them as a click on it would.
    input.files = event.dataTransfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("#cs-attachments .cs-chip-remove");
    if (button) {
      event.preventDefault();
      button.closest(".cs-chip")?.classList.add("cs-chip-removing");
      window.csAttachTrigger("click", { remove: button.dataset.attachment || "" });
    }
  });
}
"""
"""The page's listener for dropped files and the chips' × buttons (`js_on_load` of the chips)."""
