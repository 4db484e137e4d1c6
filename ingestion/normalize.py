"""Turn a source's RawMessage into the NewMessage Pulse stores: text, hashes, flags."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import re
import unicodedata
from datetime import UTC
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser

from core.messages import NewMessage
from ingestion.base import RawMessage

HTML_HINT = re.compile(r"<\s*(html|body|p|br|div|span|table|a|script|style)\b", re.IGNORECASE)
CLOSING_TAG = re.compile(r"</\s*[a-z][a-z0-9]*\s*>|<br\s*/?>", re.IGNORECASE)
RAW_KEEP_CHARS = 1_000_000  # the original as received is kept up to this size
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
            self.parts.append(data)


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


def mime_to_text(raw: bytes) -> tuple[str, str | None, bool]:
    """Text body, subject and whether HTML was stripped, from MIME bytes; charset-proof."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg.get("subject", "")) or None
    part = msg.get_body(preferencelist=("plain", "html")) if isinstance(msg, EmailMessage) else None
    if part is None:
        return "", subject, False
    try:
        content = part.get_content()
    except (LookupError, UnicodeDecodeError):
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    is_html = part.get_content_subtype() == "html"
    return (html_to_text(content) if is_html else content), subject, is_html


def folded_words(text: str) -> list[str]:
    """The words of ``text`` with case, accents and punctuation ignored."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in folded if c.isalnum() or c.isspace()).split()


def content_hash(text: str) -> str:
    """A hash equal for texts that differ only in case, accents, punctuation and spacing."""
    return hashlib.sha256(" ".join(folded_words(text)).encode()).hexdigest()


def near_hash(text: str) -> int:
    """A 64-bit SimHash of the text's words (signed, to fit a BIGINT column).

    Near-identical texts (a campaign letter with another signature, a forwarded SMS with a
    word changed) have hashes a few bits apart; see ``core.campaigns``.
    """
    counts = [0] * 64
    for word in folded_words(text):
        value = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        for bit in range(64):
            counts[bit] += 1 if value >> bit & 1 else -1
    unsigned = sum(1 << bit for bit in range(64) if counts[bit] > 0)
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def author_hash(author: str | None, key: bytes) -> str | None:
    """A keyed hash of the author's address, so counts per author never need the address."""
    if not author or not author.strip():
        return None
    return hmac.new(key, author.strip().casefold().encode(), hashlib.sha256).hexdigest()


def normalize(raw: RawMessage, kind: str, author_key: bytes, max_body_chars: int) -> NewMessage:
    """The stored form of ``raw``: plain text body (HTML stripped, truncated), UTC time, hashes."""
    if raw.received_at.tzinfo is None:
        raise ValueError(
            f"message {raw.external_id!r} from {raw.source_name!r} has a naive received_at"
        )
    subject = raw.subject
    if isinstance(raw.body, bytes):
        text, mime_subject, stripped = mime_to_text(raw.body)
        subject = subject or mime_subject
        original = raw.body.decode("utf-8", errors="replace")
    else:
        original = raw.body
        # Only a body with real markup is HTML; prose that mentions "<script>" stays text.
        stripped = bool(HTML_HINT.search(raw.body) and CLOSING_TAG.search(raw.body))
        text = html_to_text(raw.body) if stripped else raw.body
    text = tidy_whitespace(text)
    truncated = len(text) > max_body_chars
    if truncated:
        text = text[:max_body_chars]
    return NewMessage(
        source_kind=raw.source_kind or kind,
        source_name=raw.source_name,
        external_id=raw.external_id,
        received_at=raw.received_at.astimezone(UTC),
        body=text,
        content_hash=content_hash(text),
        near_hash=near_hash(text),
        author=raw.author,
        author_hash=author_hash(raw.author, author_key),
        subject=tidy_whitespace(subject) if subject else None,
        raw=None if original == text else original[:RAW_KEEP_CHARS],
        body_html_stripped=stripped,
        body_truncated=truncated,
        school=raw.school,
        meta=raw.metadata or None,
    )
