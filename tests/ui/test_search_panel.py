"""Search results in the conversation list (ui/search_panel.py): untrusted snippets escaped, the
matched words marked from the server's ranges, and what a click on a result may name."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.ui.test_markdown import parse
from ui.api_models import SearchHit, SearchResults
from ui.search_panel import (
    MAX_QUERY_CHARS,
    MAX_TITLE_CHARS,
    Jump,
    as_typed,
    focus_value,
    hit_html,
    jump_from,
    problem_html,
    results_html,
    snippet_html,
    typed_query_from,
)

HOSTILE = '<img src=x onerror="alert(1)"> & <b>bold</b> "q"'


class Marks(HTMLParser):
    """The text inside each <mark>, as a browser reads it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.marks: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mark":
            assert self.depth == 0, "a mark inside a mark"
            self.depth += 1
            self.marks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "mark":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.marks[-1] += data


def marked(html: str) -> list[str]:
    parser = Marks()
    parser.feed(html)
    parser.close()
    return parser.marks


def text_of(html: str) -> str:
    return "".join(parse(html).text)


def tags(html: str) -> set[str]:
    return {tag for tag, _ in parse(html).elements}


# snippets


def test_a_snippet_is_escaped_and_its_matches_marked() -> None:
    snippet = f"before {HOSTILE} match after"
    start = snippet.index("match")
    html = snippet_html(snippet, [(start, start + len("match"))])
    assert text_of(html) == snippet
    assert tags(html) == {"mark"}
    assert marked(html) == ["match"]


def test_a_match_on_markup_text_is_marked_as_text() -> None:
    snippet = "say <b>hi</b> now"
    html = snippet_html(snippet, [(4, 13)])
    assert marked(html) == ["<b>hi</b>"]
    assert tags(html) == {"mark"}
    assert text_of(html) == snippet


def test_ranges_count_code_points_so_multi_byte_text_is_marked_where_it_matched() -> None:
    snippet = "🎉 naïve café — 東京 ünïcode"
    ranges = [(snippet.index(w), snippet.index(w) + len(w)) for w in ("naïve", "東京", "ünïcode")]
    html = snippet_html(snippet, ranges)
    assert marked(html) == ["naïve", "東京", "ünïcode"]
    assert text_of(html) == snippet


def test_an_escaped_character_before_a_match_does_not_shift_it() -> None:
    snippet = "&&&<<< target"
    html = snippet_html(snippet, [(7, 13)])
    assert marked(html) == ["target"]
    assert "&amp;&amp;&amp;&lt;&lt;&lt; " in html


def test_ranges_out_of_order_are_marked_in_order() -> None:
    assert marked(snippet_html("one two three", [(8, 13), (0, 3)])) == ["one", "three"]


def test_overlapping_ranges_never_mark_a_character_twice_nor_change_the_text() -> None:
    snippet = "abcdefghij"
    html = snippet_html(snippet, [(0, 5), (3, 8), (1, 2)])
    assert marked(html) == ["abcde", "fgh"]
    assert text_of(html) == snippet
    assert "<mark><mark>" not in html


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([(5, 3)], []),  # backwards
        ([(3, 3)], []),  # empty
        ([(20, 30)], []),  # past the end
        ([(-4, 2)], ["ab"]),  # before the start: clipped
        ([(8, 99)], ["ij"]),  # past the end: clipped
        ([(-10, -2)], []),
        ([], []),
    ],
)
def test_ranges_outside_the_text_are_clipped_or_skipped(
    ranges: list[tuple[int, int]], expected: list[str]
) -> None:
    html = snippet_html("abcdefghij", ranges)
    assert marked(html) == expected
    assert text_of(html) == "abcdefghij"


def test_an_empty_snippet_is_empty() -> None:
    assert snippet_html("", [(0, 4)]) == ""


# results


def hit(**fields: Any) -> SearchHit:
    values: dict[str, Any] = {
        "conversation_id": "c0ffee",
        "conversation_title": "Trip planning",
        "message_id": 7,
        "role": "user",
        "snippet": "the garden party",
        "highlights": [(4, 10)],
        "created_at": datetime(2026, 3, 4, 5, 6, tzinfo=UTC),
    }
    return SearchHit(**{**values, **fields})


def test_a_hit_names_its_conversation_and_message_for_the_click() -> None:
    html = hit_html(hit())
    buttons = [attrs for tag, attrs in parse(html).elements if tag == "button"]
    assert buttons == [
        {"class": "cs-hit", "type": "button", "data-conversation": "c0ffee", "data-message": "7"}
    ]
    assert "You · 2026-03-04" in text_of(html)
    assert marked(html) == ["garden"]


def test_a_hostile_title_role_and_snippet_stay_text() -> None:
    html = hit_html(hit(conversation_title=HOSTILE, role=HOSTILE, snippet=HOSTILE, highlights=[(0, 4)]))
    assert tags(html) == {"button", "span", "mark"}
    assert HOSTILE in text_of(html)


def test_a_long_title_is_cut_and_its_whitespace_folded() -> None:
    html = hit_html(hit(conversation_title="word\n\t" + "x" * 200))
    title = text_of(html.split('<span class="cs-hit-title">')[1].split("</span>")[0])
    assert title.startswith("word x")
    assert len(title) == MAX_TITLE_CHARS
    assert title.endswith("…")
    assert "Untitled" in hit_html(hit(conversation_title="  "))


def test_an_answer_hit_says_so_and_a_hit_without_a_date_shows_none() -> None:
    assert "Answer" in text_of(hit_html(hit(role="assistant", created_at=None)))
    assert "·" not in text_of(hit_html(hit(role="assistant", created_at=None)))


def test_no_query_hides_the_list() -> None:
    assert results_html("  ", SearchResults(items=[hit()], total=1)) == ""


def test_no_results_say_so() -> None:
    assert "No messages match." in results_html("garden", SearchResults(items=[], total=0))


def test_results_beyond_those_shown_are_counted() -> None:
    html = results_html("garden", SearchResults(items=[hit(), hit(message_id=8)], total=12))
    assert html.count('class="cs-hit"') == 2
    assert "and 10 more" in html
    assert "more" not in results_html("garden", SearchResults(items=[hit()], total=1))


@pytest.mark.parametrize("conversation_id", ['x" onclick="alert(1)', "", "a/b", "../x", "c" * 65])
def test_a_hit_whose_conversation_id_is_not_one_is_dropped(conversation_id: str) -> None:
    html = results_html("garden", SearchResults(items=[hit(conversation_id=conversation_id)], total=1))
    assert "cs-hit" not in html.replace("cs-hit-", "")
    assert "onclick" not in html


def test_a_problem_is_escaped() -> None:
    html = problem_html(HOSTILE)
    assert tags(html) == {"div"}
    assert text_of(html) == HOSTILE


# what a click may name


def test_a_click_on_a_result_names_a_jump() -> None:
    assert jump_from({"conversation": "c0ffee", "message": "7"}) == Jump("c0ffee", 7)


@pytest.mark.parametrize(
    "data",
    [
        None,
        "c0ffee",
        {},
        {"conversation": "c0ffee"},
        {"conversation": "c0ffee", "message": "seven"},
        {"conversation": "c0ffee", "message": "0"},
        {"conversation": "c0ffee", "message": "+7"},
        {"conversation": "../admin", "message": "7"},
        {"conversation": "c0ffee\n", "message": "7"},
        {"conversation": 12, "message": "7"},
        {"conversation": "", "message": "7"},
    ],
)
def test_a_click_naming_garbage_is_no_jump(data: Any) -> None:
    assert jump_from(data) is None


def test_a_second_jump_to_the_same_message_is_a_new_value() -> None:
    first, second = focus_value(7, "1.0"), focus_value(7, "2.0")
    assert first != second
    assert first.split(":")[0] == second.split(":")[0] == "7"


# searching as the user types


@pytest.mark.parametrize(
    ("typed", "searched"),
    [
        ("garden par", "garden par*"),  # the word being typed is a prefix
        ("garden ", "garden "),  # a space ended it: a whole word
        ("garden p", "garden"),  # too short for a prefix yet: left out
        ("p", ""),
        ("🎉", ""),
        ('"new yor', '"new yor"*'),  # an open phrase
        ('"new y', '"new y'),
        ('"new york"', '"new york"'),
        ("ital*", "ital*"),  # already a prefix
        ("naïve caf", "naïve caf*"),
        ("", ""),
        ("   ", "   "),
    ],
)
def test_the_word_being_typed_is_searched_as_a_prefix(typed: str, searched: str) -> None:
    assert as_typed(typed) == searched


def test_a_typed_query_stays_within_the_apis_limit() -> None:
    assert len(as_typed("x" * (MAX_QUERY_CHARS + 100))) <= MAX_QUERY_CHARS


def test_a_typed_query_is_taken_from_the_pages_event() -> None:
    assert typed_query_from({"query": "garden pa"}) == "garden pa"
    assert typed_query_from({"query": ""}) == ""


@pytest.mark.parametrize(
    "data", [None, "garden", {}, {"query": 5}, {"query": None}, {"query": "x" * (MAX_QUERY_CHARS + 1)}]
)
def test_a_typed_query_that_is_no_text_is_ignored(data: Any) -> None:
    assert typed_query_from(data) is None
