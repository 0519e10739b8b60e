"""Markdown from a model, a tool, a search result or a user, rendered here as inert HTML.

The Chatbot's own Markdown pipeline passes raw HTML through a sanitizer that keeps forms, inputs,
`style` attributes and remote images, so a prompt-injected answer could draw a working password form,
cover the page, or leak data through an image URL as soon as it is shown. So the text is rendered
here, with markdown-it, and the Chatbot only ever receives HTML this module wrote:

- raw HTML is shown as text, except a few formatting tags without attributes (`<br>`, `<b>`, `<sub>`…),
  kept balanced;
- links are http(s) or mailto only, open in a new tab with `rel="noopener noreferrer"`; bare URLs
  become such links;
- images are never loaded: an image becomes a link to it, which the user may follow;
- no element gets a `style` or event attribute (table alignment becomes a class).

Each top-level block becomes one line of HTML that starts with a block tag, and blocks are separated
by a blank line: the Chatbot's Markdown parser then sees each as one raw HTML block and passes it on
untouched, and re-renders only the blocks that changed while an answer streams in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

LINK_SCHEMES = frozenset({"http", "https", "mailto"})
ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "s", "del", "ins", "sub", "sup", "kbd", "mark", "small"}
)
"""Formatting tags kept from raw HTML when they carry no attributes; `<br>` is kept too."""
MAX_LANGUAGE_CHARS = 32

_SIMPLE_TAG = re.compile(r"^<(/?)([a-zA-Z]+)\s*(/?)>$")
_BARE_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,:;!?'\"*_~"
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]+")
_COPY_BUTTON = (
    # The markup of Gradio's own code blocks, so that its copy handler and styles apply; the icons
    # are drawn by chat.css.
    '<button title="Copy code" class="copy_code_button" type="button">'
    '<span class="copy-text"></span><span class="check"></span></button>'
)


def allowed_url(url: str) -> bool:
    """Whether a link may point at `url`: absolute http(s) with a host, or mailto."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "mailto":
        return bool(parts.path)
    return scheme in LINK_SCHEMES and bool(parts.netloc)


class _Renderer(RendererHTML):
    """markdown-it's HTML renderer with what this module promises (see the module docstring)."""

    def html_block(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        # A raw HTML block is shown as the text it is.
        lines = escapeHtml(tokens[idx].content.rstrip("\n")).split("\n")
        return '<p class="cs-raw-html">' + "<br />".join(lines) + "</p>\n"

    def html_inline(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        # Only the tags `_balance_tags` left as HTML reach here; anything else became text.
        return tokens[idx].content

    def image(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        alt = escapeHtml(self.renderInlineAsText(token.children or [], options, env).strip() or "image")
        src = str(token.attrGet("src") or "")
        if not allowed_url(src):
            return f"[{alt}]"
        # Not loaded: the user decides whether to open it.
        return (
            f'<a class="cs-image-link" href="{escapeHtml(src)}" target="_blank" '
            f'rel="noopener noreferrer nofollow" title="Open the image (not loaded here)">Image: {alt}</a>'
        )

    def fence(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        words = token.info.split()
        language = words[0] if words else ""
        return _code_block(token.content, language)

    def code_block(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return _code_block(tokens[idx].content, "")


def _code_block(code: str, language: str) -> str:
    css = ""
    if language and len(language) <= MAX_LANGUAGE_CHARS and _LANGUAGE.fullmatch(language):
        css = f' class="language-{escapeHtml(language)}"'
    body = escapeHtml(code.removesuffix("\n"))
    return f'<div class="code_wrap">{_COPY_BUTTON}<pre><code{css}>{body}</code></pre></div>\n'


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _link_open(href: str) -> Token:
    token = Token("link_open", "a", 1)
    token.attrs = {"href": href}
    return token


def _safe_tokens(state: StateCore) -> None:
    """A core rule: every inline token's children made inert (see the module docstring)."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = str(token.attrs.pop("style", ""))
            align = style.removeprefix("text-align:")
            if align in ("left", "center", "right"):
                token.attrSet("class", f"cs-align-{align}")
        elif token.type == "inline" and token.children:
            token.children = _balance_tags(_safe_links(_linkify(token.children)))


def _safe_links(children: list[Token]) -> list[Token]:
    """Links get target and rel; `validateLink` already refused those it does not allow."""
    for child in children:
        if child.type == "link_open":
            child.attrSet("target", "_blank")
            child.attrSet("rel", "noopener noreferrer nofollow")
    return children


def _linkify(children: list[Token]) -> list[Token]:
    """Bare http(s) URLs in text (outside links) become links."""
    result: list[Token] = []
    depth = 0
    for child in children:
        if child.type == "link_open":
            depth += 1
        elif child.type == "link_close":
            depth -= 1
        if child.type != "text" or depth > 0 or "://" not in child.content:
            result.append(child)
            continue
        text, position = child.content, 0
        for match in _BARE_URL.finditer(text):
            url = _trim_url(match.group(0))
            if not allowed_url(url):
                continue
            result.append(_text(text[position : match.start()]))
            result.extend([_link_open(url), _text(url), Token("link_close", "a", -1)])
            position = match.start() + len(url)
        result.append(_text(text[position:]))
    return result


def _trim_url(url: str) -> str:
    """A URL found in prose without the punctuation that ends its sentence (or closes a bracket)."""
    while url and (url[-1] in _TRAILING_PUNCTUATION or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def _balance_tags(children: list[Token]) -> list[Token]:
    """Raw inline HTML as text, except allowed tags, which are written afresh and kept balanced."""
    result: list[Token] = []
    open_tags: list[str] = []
    for child in children:
        if child.type != "html_inline":
            result.append(child)
            continue
        match = _SIMPLE_TAG.match(child.content)
        name = match.group(2).lower() if match else ""
        if match and name == "br" and not match.group(1):
            child.content = "<br />"
        elif match and name in ALLOWED_TAGS and not match.group(1) and not match.group(3):
            open_tags.append(name)
            child.content = f"<{name}>"
        elif match and name in ALLOWED_TAGS and match.group(1) and open_tags and open_tags[-1] == name:
            open_tags.pop()
            child.content = f"</{name}>"
        else:
            result.append(_text(child.content))
            continue
        result.append(child)
    for name in reversed(open_tags):
        closing = Token("html_inline", "", 0)
        closing.content = f"</{name}>"
        result.append(closing)
    return result


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True, "breaks": True}, renderer_cls=_Renderer)
    md.enable(["table", "strikethrough"])
    md.validateLink = allowed_url  # type: ignore[method-assign]
    md.core.ruler.push("cs_safe", _safe_tokens)
    return md


_MD = _parser()


def _blocks(tokens: Sequence[Token]) -> list[list[Token]]:
    """The tokens of each top-level block, in order."""
    blocks: list[list[Token]] = []
    depth = 0
    for token in tokens:
        if depth == 0:
            blocks.append([])
        blocks[-1].append(token)
        depth += token.nesting
    return blocks


def _render_block(tokens: Sequence[Token], env: EnvType) -> str:
    # One line per block: a newline inside a block (in code, say) is written as a character
    # reference, so that the Chatbot's parser sees one raw HTML block.
    html: str = _MD.renderer.render(tokens, _MD.options, env)
    return html.strip("\n").replace("\n", "&#10;")


def join_blocks(*html: str) -> str:
    """Rendered blocks (or runs of them) as one text, each still its own raw HTML block."""
    return "\n\n".join(block for block in html if block)


def _lines(text: str) -> str:
    # As markdown-it reads lines, so that line numbers in its tokens index `text.split("\n")`.
    return text.replace("\r\n", "\n").replace("\r", "\n")


@lru_cache(maxsize=256)
def markdown_html(text: str) -> str:
    """`text` as inert HTML (see the module docstring); "" for blank text."""
    env: EnvType = {}
    return join_blocks(*[_render_block(block, env) for block in _blocks(_MD.parse(_lines(text), env))])


@dataclass(slots=True)
class StreamingMarkdown:
    """`markdown_html` of a text that grows, rendering each block once it can no longer change.

    Every top-level block but the last is settled: text appended later cannot change it. So each
    `render` parses only from the start of the last block, and the settled HTML only ever grows,
    which keeps both the work per update and what is sent to the browser small.
    """

    _settled_source: str = ""
    _settled_html: list[str] = field(default_factory=list)
    _env: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    """Whether `render` was called since the text started."""

    def render(self, text: str) -> tuple[str, str]:
        """(settled HTML, HTML of the last block) of `text`."""
        text = _lines(text)
        self.started = True
        if not text.startswith(self._settled_source):
            # Not a continuation (a completed message replaced the streamed text): start over.
            self._settled_source, self._settled_html, self._env = "", [], {}
        rest = text[len(self._settled_source) :]
        blocks = _blocks(_MD.parse(rest, self._env))
        last_start = next((t.map[0] for t in blocks[-1] if t.map is not None), 0) if blocks else 0
        if len(blocks) > 1 and last_start > 0:
            self._settled_html.extend(_render_block(block, self._env) for block in blocks[:-1])
            self._settled_source += "".join(line + "\n" for line in rest.split("\n")[:last_start])
            blocks = blocks[-1:]
        tail = join_blocks(*[_render_block(block, self._env) for block in blocks])
        return join_blocks(*self._settled_html), tail
