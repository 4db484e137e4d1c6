"""RSS 2.0 and Atom feeds: a district blog's comments, a forum, a news search, a form's feed.

The feed is fetched with httpx (timeouts, 429/5xx/4xx mapped by ``ingestion.http``) as a
conditional GET: the cursor keeps the server's ``ETag`` and ``Last-Modified``, sent back as
``If-None-Match`` / ``If-Modified-Since``, so an unchanged feed costs a 304 and no parsing.
feedparser parses the bytes, using the response's Content-Type for the character encoding.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
import re
import xml.sax
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
import httpx

from core.models import SOURCE_KINDS
from ingestion.base import Cursor, RawMessage, stable_external_id
from ingestion.errors import FatalError, RetryableError
from ingestion.http import DEFAULT_TIMEOUT, USER_AGENT, get

log = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
HTML_TYPES = ("text/html", "application/xhtml+xml")
MARKUP = re.compile(r"</?[a-zA-Z][^>]*>")


def entry_id(entry: dict[str, Any]) -> str:
    """An entry's stable id: its id/guid, else its link, else a hash of title and summary.

    Ids too long for the external_id column are replaced by their hash (still stable).
    """
    value = entry.get("id") or entry.get("link")
    if not value:
        text = f"{entry.get('title', '')}\n{entry.get('summary', '')}"
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return stable_external_id(value)


def entry_time(entry: dict[str, Any]) -> datetime | None:
    """When the entry was published (else updated), in UTC; None when it has no usable date."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # Plain dict lookup: FeedParserDict maps a missing updated_parsed to published_parsed
        # with a DeprecationWarning.
        parsed = dict.get(entry, key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def entry_body(entry: dict[str, Any]) -> str:
    """The fullest text of an entry: its content (Atom content, content:encoded), else summary.

    Markup the feed declares as HTML is wrapped in a ``<div>``, so normalisation strips it even
    when it has only inline tags (``<i>``, ``<em>``) that alone do not look like HTML.
    """
    details = [c for c in entry.get("content") or [] if c.get("value")]
    details.append(entry.get("summary_detail") or {"value": entry.get("summary") or ""})
    detail = details[0]
    value = detail.get("value") or ""
    if detail.get("type") in HTML_TYPES and MARKUP.search(value):
        return f"<div>{value}</div>"
    return value


class FeedSource:
    """Pull the entries of one RSS or Atom feed; ``kind`` says what the feed carries."""

    def __init__(
        self, name: str, url: str, interval_seconds: int = 300, kind: str = "social"
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"url = {url!r}: give the feed's http(s) URL")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"kind = {kind!r}: use one of {list(SOURCE_KINDS)}")
        self.name = name
        self.url = url
        self.interval_seconds = interval_seconds
        self.kind = kind

    def _get(self, cursor: Cursor) -> httpx.Response:
        """GET the feed, conditional on the cursor's validators; network failures are retryable."""
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
        if cursor and cursor.get("etag"):
            headers["If-None-Match"] = cursor["etag"]
        if cursor and cursor.get("modified"):
            headers["If-Modified-Since"] = cursor["modified"]
        with httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=True) as client:
            return get(client, self.url, f"feed source {self.name!r}", headers=headers)

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """The feed's entries (all of them; the runner skips stored ones) and the validators."""
        response = self._get(cursor)
        if response.status_code == 304:
            return [], cursor
        fetched_at = datetime.now(UTC)
        headers = {key.lower(): value for key, value in response.headers.items()}
        headers["content-location"] = str(response.url)  # base for relative links
        feed = feedparser.parse(io.BytesIO(response.content), response_headers=headers)
        problem = feed.get("bozo_exception")
        detail = f"{type(problem).__name__}: {problem}" if problem else "no feed element"
        if not feed.entries and not feed.get("version"):
            raise FatalError(
                f"feed source {self.name!r}: {self.url} is not an RSS or Atom feed ({detail}); "
                "check the url"
            )
        if not feed.entries and isinstance(problem, xml.sax.SAXException):
            raise RetryableError(f"feed source {self.name!r}: {self.url} is broken ({detail})")
        if problem:
            log.info("feed source %r: %s parsed leniently: %s", self.name, self.url, detail)
        feed_title = feed.feed.get("title")
        messages: dict[str, RawMessage] = {}
        for entry in feed.entries:
            message = self._message(entry, feed_title, fetched_at)
            if not (message.body or message.subject or entry.get("id") or entry.get("link")):
                log.warning("feed source %r: skipped an empty entry in %s", self.name, self.url)
                continue
            messages.setdefault(message.external_id, message)
        validators = {
            "etag": response.headers.get("ETag"),
            "modified": response.headers.get("Last-Modified"),
        }
        return list(messages.values()), {key: value for key, value in validators.items() if value}

    def _message(
        self, entry: dict[str, Any], feed_title: str | None, fetched_at: datetime
    ) -> RawMessage:
        """The RawMessage of one entry; an entry without a date is dated when it was fetched."""
        tags = [tag.get("term") for tag in entry.get("tags") or [] if tag.get("term")]
        return RawMessage(
            source_name=self.name,
            external_id=entry_id(entry),
            received_at=entry_time(entry) or fetched_at,
            body=entry_body(entry),
            author=entry.get("author") or None,
            subject=entry.get("title") or None,
            metadata={
                "link": entry.get("link"),
                "feed_title": feed_title,
                "guid": entry.get("id"),
                "tags": tags,
            },
        )
