"""What an MCP tool returned besides text, listed in its step (ui/tool_attachments.py, ui/render.py)."""

from __future__ import annotations

from protocol.run_events import ToolAttachment
from tests.ui.test_markdown import assert_inert, visible_text
from ui.api_models import RunEvent
from ui.markdown import markdown_html
from ui.render import RunView, ToolStep, tool_body
from ui.tool_attachments import MAX_SHOWN, size_text


def finished_step(attachments: list[dict[str, object]]) -> ToolStep:
    view = RunView()
    view.apply(RunEvent(1, "tool.started", {"call_id": "t", "name": "media", "arguments": {}, "server": "x"}))
    data = {"call_id": "t", "name": "media", "output": "here", "server": "x", "attachments": attachments}
    view.apply(RunEvent(2, "tool.finished", data))
    [step] = view.parts
    assert isinstance(step, ToolStep)
    return step


def test_attachments_are_listed_without_loading_anything() -> None:
    step = finished_step(
        [
            {"kind": "image", "mime_type": "image/png", "size": 2048, "name": ""},
            {"kind": "resource_link", "mime_type": "", "size": None, "name": "https://evil.test/x.png"},
            {"kind": "resource", "mime_type": "text/plain", "size": 5, "name": "file:///notes.txt"},
        ]
    )
    html = markdown_html(tool_body(step))
    found = assert_inert(html)
    assert not [tag for tag, _ in found.elements if tag in ("a", "img")]
    text = visible_text(html)
    assert "Also returned (not loaded):" in text
    assert "Image (image/png, 2.0 KB)" in text
    assert "Link to a resource https://evil.test/x.png" in text
    assert "Resource file:///notes.txt (text/plain, 5 B)" in text


def test_hostile_names_are_bounded_and_the_list_is_capped() -> None:
    many = [{"kind": "resource", "name": "[x](javascript:alert(1)) " + "y" * 500}] * (MAX_SHOWN + 3)
    html = markdown_html(tool_body(finished_step(many)))
    assert_inert(html)
    assert "and 3 more" in visible_text(html)
    assert len(html) < 4000 + MAX_SHOWN * 400


def test_a_step_without_attachments_says_nothing_of_them() -> None:
    assert "Also returned" not in tool_body(finished_step([]))


def test_sizes() -> None:
    assert [size_text(s) for s in (None, -1, 0, 1023, 1024, 5 * 1024 * 1024)] == [
        "",
        "",
        "0 B",
        "1023 B",
        "1.0 KB",
        "5.0 MB",
    ]
    assert ToolAttachment(kind="image").to_data() == {
        "kind": "image",
        "mime_type": "",
        "size": None,
        "name": "",
    }
