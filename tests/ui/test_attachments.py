"""Attachment chips and uploads (ui/attachments.py): file names from users shown as text, and what
the page may name when it removes a chip."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.ui.test_markdown import parse
from ui.api_models import AttachmentRef
from ui.attachments import (
    MAX_NAME_CHARS,
    MAX_UPLOAD_BYTES,
    UploadTooLarge,
    composer_chips_html,
    download_href,
    message_chips_html,
    pending_from,
    pending_state,
    read_uploads,
    removed_attachment,
    size_text,
    upload_paths,
)

AID = "0123456789abcdef0123456789abcdef"
HOSTILE = '"><img src=x onerror=alert(1)> & <b>x</b>.pdf'


def ref(name: str = "notes.pdf", size: int = 2048, id_: str = AID) -> AttachmentRef:
    return AttachmentRef(id=id_, name=name, media_type="application/pdf", bytes=size)


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    return parse(html).elements


def text_of(html: str) -> str:
    return "".join(parse(html).text)


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1 KB"), (1536, "2 KB"), (5 * 1024 * 1024, "5.0 MB")],
)
def test_sizes_read_as_people_expect(size: int, shown: str) -> None:
    assert size_text(size) == shown


# download links


def test_a_download_link_goes_to_the_api_or_through_the_session() -> None:
    assert download_href("c1", AID, session=False) == f"api/conversations/c1/attachments/{AID}"
    assert download_href("c1", AID, session=True) == f"ui/conversations/c1/attachments/{AID}"


def test_a_download_link_cannot_leave_its_path() -> None:
    href = download_href("../../admin", "x/../y?z#w", session=False)
    assert href.count("/") == 4  # api/conversations/ID/attachments/ID
    assert "?" not in href
    assert "#" not in href


# chips on sent questions


def test_a_sent_questions_files_are_links_with_their_names_as_text() -> None:
    html = message_chips_html("c1", [ref(HOSTILE), ref("b.md", 10)], session=True)
    found = elements(html)
    assert {tag for tag, _ in found} == {"div", "a", "span"}
    links = [attrs for tag, attrs in found if tag == "a"]
    assert [link["href"] for link in links] == [f"ui/conversations/c1/attachments/{AID}"] * 2
    assert links[0]["title"] == f"Download {HOSTILE}"
    assert HOSTILE in text_of(html)
    assert "2 KB" in text_of(html)
    assert "10 B" in text_of(html)


def test_no_files_or_no_conversation_draw_nothing() -> None:
    assert message_chips_html("c1", [], session=False) == ""
    assert message_chips_html("", [ref()], session=False) == ""


def test_a_long_name_is_cut_on_the_chip_but_whole_in_its_title() -> None:
    name = "n" * 300 + ".pdf"
    html = message_chips_html("c1", [ref(name)], session=False)
    shown = text_of(html.split('<span class="cs-chip-name">')[1].split("</span>")[0])
    assert len(shown) == MAX_NAME_CHARS
    assert shown.endswith("…")
    assert [attrs["title"] for tag, attrs in elements(html) if tag == "a"] == [f"Download {name}"]


# chips on the composer


def test_pending_chips_escape_names_and_ids_and_name_what_to_remove() -> None:
    html = composer_chips_html([ref(HOSTILE), ref("b", id_='x" onclick="y')], "bad <i>file</i>", "1.5")
    found = elements(html)
    assert {tag for tag, _ in found} == {"div", "span", "button"}
    buttons = [attrs for tag, attrs in found if tag == "button"]
    assert [b["data-attachment"] for b in buttons] == [AID, 'x" onclick="y']
    assert all(set(b) == {"class", "type", "data-attachment", "title", "aria-label"} for b in buttons)
    assert buttons[0]["title"] == f"Remove {HOSTILE}"
    assert HOSTILE in text_of(html)
    assert "bad <i>file</i>" in text_of(html)


def test_the_revision_differs_so_the_page_redraws_and_stays_hidden() -> None:
    first, second = composer_chips_html([], revision="1"), composer_chips_html([], revision="2")
    assert first != second
    marks = [attrs for tag, attrs in elements(first) if "cs-revision" in (attrs.get("class") or "")]
    assert marks == [{"class": "cs-revision", "hidden": None}]


def test_no_pending_files_and_no_problem_leave_an_empty_holder() -> None:
    html = composer_chips_html([])
    assert html == '<div class="cs-chips cs-composer-chips"></div>'


# state kept by the page


def test_pending_files_survive_the_pages_state() -> None:
    files = [ref(), ref("b.md", 3, "f" * 32)]
    assert pending_from(pending_state(files)) == files


@pytest.mark.parametrize("state", [None, "x", {"id": AID}, 5])
def test_state_that_is_no_list_is_no_files(state: Any) -> None:
    assert pending_from(state) == []


def test_entries_that_are_no_file_are_dropped() -> None:
    good = ref().model_dump()
    assert pending_from([good, {"name": "no id"}, "x", None, {"id": AID, "name": "a", "bytes": "many"}]) == [
        ref()
    ]


# what a chip's × may name


def test_a_remove_names_an_attachment_id() -> None:
    assert removed_attachment({"remove": AID}) == AID


@pytest.mark.parametrize(
    "data",
    [
        None,
        AID,
        {},
        {"remove": ""},
        {"remove": AID.upper()},
        {"remove": AID + "0"},
        {"remove": AID[:-1]},
        {"remove": AID + "\n"},
        {"remove": "../" + AID[3:]},
        {"remove": 5},
    ],
)
def test_a_remove_naming_garbage_is_ignored(data: Any) -> None:
    assert removed_attachment(data) is None


# uploads


def test_upload_paths_read_what_gradio_passes(tmp_path: Path) -> None:
    one = tmp_path / "a.txt"
    assert upload_paths(None) == []
    assert upload_paths(str(one)) == [one]
    assert upload_paths([str(one), SimpleNamespace(name=str(tmp_path / "b.md")), None, ""]) == [
        one,
        tmp_path / "b.md",
    ]


async def test_uploads_are_read_and_gradios_copies_removed(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.csv"
    first.write_bytes(b"alpha")
    second.write_bytes(b"x,y\n1,2\n")
    assert await read_uploads([first, second]) == [("a.txt", b"alpha"), ("b.csv", b"x,y\n1,2\n")]
    assert not first.exists()
    assert not second.exists()


async def test_a_file_too_large_is_refused_unread_and_removed(tmp_path: Path) -> None:
    small, huge = tmp_path / "small.txt", tmp_path / "huge.bin"
    small.write_bytes(b"ok")
    with huge.open("wb") as out:  # sparse: large on paper, nothing written
        out.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(UploadTooLarge, match=r"huge\.bin is 64\.0 MB"):
        await read_uploads([small, huge])
    assert not small.exists()
    assert not huge.exists()


async def test_a_file_gone_before_it_is_read_is_an_error_not_a_hang(tmp_path: Path) -> None:
    missing = tmp_path / "gone.txt"
    with pytest.raises(FileNotFoundError):
        await read_uploads([missing])
    assert os.listdir(tmp_path) == []
