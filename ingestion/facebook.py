"""Facebook Page source: the community's comments on the Page's posts, over the Graph API.

Finding new comments. The Graph API has no "comments on this Page since T" edge (Page webhooks
do that, but need a public HTTPS endpoint and an app review). What it does offer is the Post's
``updated_time``: the time the post was created, edited or last commented on. So each sync reads
the Page feed (``/{page-id}/feed``, newest posts first, up to ``max_pages`` pages) and reads
``/{post-id}/comments`` only for posts updated since the watermark, which finds a new comment on
an old post too. ``since`` on the feed is not used: Facebook does not document whether it filters
on ``created_time`` or ``updated_time``, and the wrong guess would silently lose exactly those
comments on old posts. The cost is one feed request per 100 posts per sync, bounded by
``max_pages`` (Facebook lists about 600 posts a year in a feed); a comment on a post beyond that
window is missed. The first sync reads the comments of posts updated in the last
``backfill_days``, so a large Page does not cost one request per post it ever made.

Comments are read with ``filter=stream`` (replies to comments included) and
``order=reverse_chronological``: newest first, so an incremental read of a busy post stops at the
first page that reaches the watermark instead of paging through its whole history.

Cursor: ``{"since": unix time}`` of the newest comment seen. Each sync re-reads from
``OVERLAP_SECONDS`` before it (a comment Facebook makes visible late) and the upsert drops what is
already stored; a comment that becomes visible later than that after a newer one is missed.

Only IDs are kept: ``author`` is the commenter's app-scoped ``from.id``, never the name. Comments
by the Page itself (the district's replies) and comments without text (a sticker or photo only)
are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from core.models import utcnow
from ingestion.base import Cursor, RawMessage
from ingestion.errors import FatalError, RetryableError, SourceError
from ingestion.http import get_json, json_client, retry_after_seconds

log = logging.getLogger(__name__)

FIELDS = "id,message,created_time,from,permalink_url"
FEED_FIELDS = FIELDS + ",updated_time"
PAGE_SIZE = 100  # the Graph API's largest page for feeds and comments
OVERLAP_SECONDS = 300
GRAPH_TIME = "%Y-%m-%dT%H:%M:%S%z"  # "2026-01-14T13:05:00+0000"

TOKEN_ERROR = 190  # invalid, expired or revoked access token
RATE_LIMIT_ERRORS = {4, 17, 32, 613, 80001}  # app, user, page, custom and Page (BUC) limits
TRANSIENT_ERRORS = {1, 2}  # "unknown error", "service temporarily unavailable"
PERMISSION_ERRORS = {10, *range(200, 300)}


def graph_time(value: object) -> datetime | None:
    """A Graph API timestamp ("2026-01-14T13:05:00+0000") as UTC, or None when malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, GRAPH_TIME).astimezone(UTC)
    except ValueError:
        return None


def regain_access_seconds(response: httpx.Response) -> float | None:
    """Seconds until a rate-limited Page may call again, from ``X-Business-Use-Case-Usage``."""
    try:
        usage = json.loads(response.headers.get("X-Business-Use-Case-Usage", ""))
        minutes = max(
            entry.get("estimated_time_to_regain_access") or 0
            for entries in usage.values()
            for entry in entries
        )
    except (ValueError, TypeError, AttributeError):
        return None
    return float(minutes) * 60 if minutes > 0 else None


def graph_error(response: httpx.Response, source: str) -> SourceError | None:
    """The source error a Graph API error body means, or None to map by HTTP status alone.

    Facebook signals rate limits and token problems with an error code, often on HTTP 400/403,
    which the HTTP status alone would wrongly call fatal or retryable.
    """
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        return None
    code, subcode = error["code"], error.get("error_subcode")
    detail = (
        f"Facebook source {source!r}: Graph API error {code}"
        + (f"/{subcode}" if subcode else "")
        + f" (HTTP {response.status_code}) on {response.request.url.path}: "
        + str(error.get("message", ""))[:200]
    )
    if code == TOKEN_ERROR:
        return FatalError(
            detail + "; the Page access token is invalid or expired: renew the Page token (a "
            "long-lived Page token from a long-lived user token) and update the environment "
            "variable that access_token_env names"
        )
    if code in RATE_LIMIT_ERRORS:
        wait = regain_access_seconds(response) or retry_after_seconds(
            response.headers.get("Retry-After")
        )
        return RetryableError(detail + " (rate limited)", wait)
    if code in TRANSIENT_ERRORS or error.get("is_transient") is True:
        return RetryableError(detail)
    if code in PERMISSION_ERRORS:
        return FatalError(
            detail + "; give the token the pages_read_engagement and pages_read_user_content "
            "permissions for this Page"
        )
    return None


@dataclass
class FacebookPageSource:
    """Comments (and optionally visitors' posts) on a Facebook Page, via the Graph API.

    ``page_id`` is the numeric Page ID; ``access_token`` a Page access token with
    ``pages_read_engagement`` and ``pages_read_user_content``. ``include_posts`` also stores
    posts others wrote on the Page (never the Page's own posts).
    """

    name: str
    page_id: str
    access_token: str = field(repr=False)
    base_url: str = "https://graph.facebook.com/v21.0"
    interval_seconds: int = 300
    max_pages: int = 20
    include_posts: bool = False
    backfill_days: int = 30
    kind: str = field(default="social", init=False)

    def __post_init__(self) -> None:
        self.page_id = str(self.page_id).strip()
        if not self.page_id.isdigit():
            raise ValueError(
                f"page_id = {self.page_id!r}: use the numeric Page ID (Page settings → "
                "About → Page transparency, or GET /me with the Page token)"
            )
        if not self.access_token or not self.access_token.strip():
            raise ValueError("access_token is empty: set the Page access token")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url = {self.base_url!r}: use an http(s) URL")
        for option in ("interval_seconds", "max_pages", "backfill_days"):
            if not isinstance(getattr(self, option), int) or getattr(self, option) < 1:
                raise ValueError(f"{option} = {getattr(self, option)!r}: use a positive integer")

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """Comments newer than the cursor's ``since`` (minus an overlap), and the new cursor."""
        since = (cursor or {}).get("since")
        if isinstance(since, int):
            newest = datetime.fromtimestamp(since, UTC)
            floor = newest - timedelta(seconds=OVERLAP_SECONDS)
        else:
            newest = floor = utcnow() - timedelta(days=self.backfill_days)
        messages: list[RawMessage] = []
        with self._client() as client:
            for post in self._pages(client, f"{self.page_id}/feed", FEED_FIELDS, "the Page feed"):
                post_id = post.get("id")
                if not isinstance(post_id, str):
                    continue
                if self.include_posts:
                    newest = self._collect(post, post_id, floor, newest, messages)
                updated = graph_time(post.get("updated_time") or post.get("created_time"))
                if updated is not None and updated < floor:
                    continue
                for comment in self._comments(client, post_id, floor):
                    newest = self._collect(comment, post_id, floor, newest, messages)
        if cursor is None and newest == floor:
            return messages, None  # nothing yet: the next sync backfills again
        return messages, {"since": int(newest.timestamp())}

    def _client(self) -> httpx.Client:
        client = json_client(self.base_url, {"Authorization": f"Bearer {self.access_token}"})
        client.event_hooks = {"response": [self._raise_graph_error]}
        return client

    def _raise_graph_error(self, response: httpx.Response) -> None:
        """Response hook: raise what a Graph error body means before get_json maps the status."""
        if response.status_code >= 400:
            response.read()
            error = graph_error(response, self.name)
            if error is not None:
                raise error

    def _pages(
        self, client: httpx.Client, path: str, fields: str, what: str, **params: str
    ) -> Iterator[dict[str, Any]]:
        """The items of a Graph edge, following ``paging.next`` for up to ``max_pages`` pages."""
        what = f"Facebook source {self.name!r}: reading {what}"
        base = httpx.URL(self.base_url)
        url: str | httpx.URL = path
        query: dict[str, Any] = {"fields": fields, "limit": PAGE_SIZE, **params}
        for _ in range(self.max_pages):
            body = get_json(client, str(url), what, **query)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise RetryableError(f"{what}: the response has no 'data' list")
            yield from (item for item in data if isinstance(item, dict))
            following = (body.get("paging") or {}).get("next")
            if not data or not isinstance(following, str):
                return
            link = httpx.URL(following).copy_remove_param("access_token")  # sent as a header
            if (link.scheme, link.host, link.port) != (base.scheme, base.host, base.port):
                raise FatalError(f"{what}: paging link to another server ({link.host}) refused")
            # the link's own query (without the token) becomes the next request's params
            url, query = link.copy_with(query=None), dict(link.params)
        log.warning("%s: stopped after max_pages=%d pages", what, self.max_pages)

    def _comments(
        self, client: httpx.Client, post_id: str, floor: datetime
    ) -> Iterator[dict[str, Any]]:
        """A post's comments and replies, newest first, down to ``floor``."""
        for comment in self._pages(
            client,
            f"{post_id}/comments",
            FIELDS,
            f"the comments on post {post_id}",
            filter="stream",
            order="reverse_chronological",
        ):
            created = graph_time(comment.get("created_time"))
            if created is not None and created < floor:
                return
            yield comment

    def _collect(
        self,
        item: dict[str, Any],
        post_id: str,
        floor: datetime,
        newest: datetime,
        messages: list[RawMessage],
    ) -> datetime:
        """Append ``item`` (a comment or post) if it is new community text; the new watermark."""
        created = graph_time(item.get("created_time"))
        item_id = item.get("id")
        if created is None or not isinstance(item_id, str):
            log.info("Facebook source %r: skipped an item without id or time", self.name)
            return newest
        if created < floor:
            return newest
        author = (item.get("from") or {}).get("id")
        text = item.get("message")
        if author != self.page_id and isinstance(text, str) and text.strip():
            messages.append(
                RawMessage(
                    source_name=self.name,
                    external_id=item_id,
                    received_at=created,
                    body=text,
                    author=str(author) if author else None,
                    metadata={"permalink_url": item.get("permalink_url"), "post_id": post_id},
                )
            )
        return max(newest, created)
