"""Plain text from what people send: HTML reduced to its visible text, whitespace tidied."""

from __future__ import annotations

import re
import unicodedata
from html import unescape
from html.parser import HTMLParser

HTML_HINT = re.compile(
    r"<\s*(html|body|p|br|div|span|table|a|script|style|b|i|u|em|strong|img|ul|ol|li|h[1-6]"
    r"|blockquote|pre|code|font)\b",
    re.IGNORECASE,
)
CLOSING_TAG = re.compile(r"</\s*[a-z][a-z0-9]*\s*>|<br\s*/?>", re.IGNORECASE)
BLOCK_TAGS = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
HIDDEN_TAGS = {"script", "style", "head", "title", "noscript", "template"}


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document; script and style content is dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN_TAGS:
            self.hidden_depth += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS:
            self.hidden_depth = max(0, self.hidden_depth - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden_depth:
            self.parts.append(re.sub(r"\s+", " ", data))  # in HTML a line break is a space


def html_to_text(html: str) -> str:
    """The visible text of an HTML fragment or document (scripts, styles and tags removed)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return unescape("".join(parser.parts))


def tidy_whitespace(text: str) -> str:
    """Collapse runs of spaces, keep at most one blank line, drop control characters."""
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def looks_like_html(text: str) -> bool:
    """Whether ``text`` is markup: a known tag and a closing tag (prose that mentions
    "<script>" stays text)."""
    return bool(HTML_HINT.search(text) and CLOSING_TAG.search(text))
