"""Mastodon: posts mentioning the district's account and posts with the hashtags it follows.

Talks to the instance through Mastodon.py. Each stream (the account's notifications, one timeline
per hashtag) is read newest first with ``since_id`` from the cursor, following the ``Link``
header's next page (``max_id``) until nothing newer remains or ``max_pages`` is reached. A post
is stored under its ActivityPub ``uri``, so one seen both as a mention and under a hashtag (or on
two hashtags) is stored once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from ingestion.base import Cursor, RawMessage, stable_external_id
from ingestion.errors import FatalError, RetryableError, SourceError
from ingestion.http import USER_AGENT, retry_after_seconds

log = logging.getLogger(__name__)

# Notification types whose ``status`` is someone else's post (reblog and favourite notifications
# carry the district's own post, which is not community input).
STATUS_NOTIFICATION_TYPES = ("mention", "status", "quote")
MENTIONS_KEY = "mentions"
TAG_KEY_PREFIX = "tag:"
MAX_PAGE_LIMIT = 80  # the most Mastodon returns per page (40 for timelines; it clamps)
REQUEST_TIMEOUT_SECONDS = 30.0


def id_order(value: str) -> tuple[int, str]:
    """A sort key for Mastodon ids: snowflake digits, or fixed-width flake/ULID strings."""
    return len(value), value


class MastodonSource:
    """Pull mentions of the account (its notifications) and hashtag timelines from an instance.

    ``access_token`` needs the ``read:notifications`` and ``read:statuses`` scopes. ``hashtags``
    are tag names without ``#``. Posts by ``own_account`` (the district's acct, e.g.
    ``district`` or ``district@example.social``) are skipped. ``notification_types`` chooses
    which notifications count as input: ``mention`` (default), ``status``, ``quote``.
    """

    kind = "social"

    def __init__(
        self,
        name: str,
        api_base_url: str,
        access_token: str | None,
        hashtags: Sequence[str] = (),
        include_mentions: bool = True,
        interval_seconds: int = 120,
        page_limit: int = 40,
        max_pages: int = 20,
        own_account: str | None = None,
        notification_types: Sequence[str] = ("mention",),
    ) -> None:
        if not isinstance(api_base_url, str) or urlsplit(api_base_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError(
                f"api_base_url = {api_base_url!r}: give the instance's URL, "
                "e.g. 'https://mastodon.social'"
            )
        if isinstance(hashtags, str):
            raise ValueError(f"hashtags = {hashtags!r}: give a list, e.g. ['schools']")
        tags = [str(tag).removeprefix("#").casefold() for tag in hashtags]
        bad = [tag for tag in tags if not tag.replace("_", "a").isalnum()]
        if bad:
            raise ValueError(f"hashtags: {bad} are not hashtag names (letters, digits, '_')")
        unknown = sorted(set(notification_types) - set(STATUS_NOTIFICATION_TYPES))
        if isinstance(notification_types, str) or unknown or not notification_types:
            raise ValueError(
                f"notification_types = {notification_types!r}: use a list of "
                f"{list(STATUS_NOTIFICATION_TYPES)}"
            )
        if not include_mentions and not tags:
            raise ValueError("nothing to read: set include_mentions = true or list hashtags")
        if include_mentions and not access_token:
            raise ValueError("reading mentions needs an access_token (set access_token_env)")
        if not 1 <= page_limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"page_limit = {page_limit!r}: use 1 to {MAX_PAGE_LIMIT}")
        if max_pages < 1:
            raise ValueError(f"max_pages = {max_pages!r}: use 1 or more")
        self.name = name
        self.api_base_url = api_base_url.rstrip("/")
        self.access_token = access_token or None
        self.hashtags = list(dict.fromkeys(tags))
        self.include_mentions = include_mentions
        self.interval_seconds = interval_seconds
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.own_account = own_account.removeprefix("@").casefold() if own_account else None
        self.notification_types = list(notification_types)
        self._host = urlsplit(self.api_base_url).hostname or ""
        self._client: Mastodon | None = None
        self._last_response: requests.Response | None = None

    def _api(self) -> Mastodon:
        """The Mastodon.py client (made once; it caches the instance's capabilities)."""
        if self._client is None:
            session = requests.Session()
            session.hooks["response"].append(self._remember_response)
            self._client = Mastodon(
                api_base_url=self.api_base_url,
                access_token=self.access_token,
                version_check_mode="none",
                ratelimit_method="throw",
                request_timeout=REQUEST_TIMEOUT_SECONDS,
                session=session,
                user_agent=USER_AGENT,
            )
        return self._client

    def _remember_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Keep the last HTTP response: its Retry-After and error text explain a failure."""
        self._last_response = response

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """Posts since ``cursor`` (``{"mentions": id, "tag:<name>": id}``) and the new cursor."""
        cursor = dict(cursor or {})
        found: dict[str, RawMessage] = {}
        try:
            api = self._api()
            if self.include_mentions:
                notifications = self._read(
                    MENTIONS_KEY,
                    lambda **page: api.notifications(types=self.notification_types, **page),
                    cursor,
                )
                for notification in notifications:
                    self._collect(
                        found,
                        notification.get("status"),
                        f"notification:{notification.get('type')}",
                    )
            for tag in self.hashtags:
                key = TAG_KEY_PREFIX + tag
                statuses = self._read(
                    key, lambda tag=tag, **page: api.timeline_hashtag(tag, **page), cursor
                )
                for status in statuses:
                    self._collect(found, status, key)
        except MastodonError as exc:
            raise self._source_error(exc) from exc
        return list(found.values()), cursor

    def _read(
        self, key: str, get_page: Callable[..., Any], cursor: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Items of one stream newer than ``cursor[key]``, newest first; advances the cursor."""
        api = self._api()
        since_id = cursor.get(key)
        page = get_page(since_id=since_id, limit=self.page_limit)
        items: list[dict[str, Any]] = []
        newest = since_id
        for number in range(1, self.max_pages + 1):
            reached = False
            for item in page or []:
                item_id = str(item.get("id") or "")
                if item_id and since_id is not None and id_order(item_id) <= id_order(since_id):
                    reached = True  # the server ignored since_id: stop at the cursor
                    continue
                items.append(item)
                if item_id and (newest is None or id_order(item_id) > id_order(newest)):
                    newest = item_id
            following = api.get_pagination_info(page, "next") if page else None
            if reached or following is None:
                break
            if number == self.max_pages:
                if since_id is not None:
                    log.warning(
                        "Mastodon source %r: more than %d pages new in %s; older ones skipped "
                        "(raise max_pages or shorten interval_seconds)",
                        self.name,
                        self.max_pages,
                        key,
                    )
                break
            if since_id is not None:
                following["since_id"] = since_id  # Mastodon.py drops it from the next page
            page = api.fetch_next(following)
        if newest is not None:
            cursor[key] = newest
        return items

    def _collect(self, found: dict[str, RawMessage], status: Any, via: str) -> None:
        """Add ``status`` (the reblogged post for a reblog) to ``found``, once per post."""
        if status and status.get("reblog"):
            status = status["reblog"]
        message = self._message(status, via) if status else None
        if message is None:
            return
        seen = found.get(message.external_id)
        if seen is None:
            found[message.external_id] = message
        elif via not in seen.metadata["via"]:
            seen.metadata["via"].append(via)

    def _is_own(self, acct: str) -> bool:
        acct = acct.casefold()
        return self.own_account is not None and self.own_account in (
            acct,
            f"{acct}@{self._host}".casefold(),
        )

    def _message(self, status: dict[str, Any], via: str) -> RawMessage | None:
        """The RawMessage of one status, or None (logged) for one without date or author."""
        account = status.get("account") or {}
        acct = account.get("acct")
        created = status.get("created_at")
        status_id = status.get("id")
        uri = status.get("uri") or status.get("url")
        if not uri and status_id is not None:
            uri = f"{self.api_base_url}/statuses/{status_id}"
        if not acct or not isinstance(created, datetime) or created.tzinfo is None or not uri:
            log.warning(
                "Mastodon source %r: skipped status %r in %s: no author, id or valid created_at",
                self.name,
                status_id,
                via,
            )
            return None
        if self._is_own(acct):
            return None
        tags = [tag.get("name") for tag in status.get("tags") or [] if tag.get("name")]
        return RawMessage(
            source_name=self.name,
            external_id=stable_external_id(str(uri)),
            received_at=created.astimezone(UTC),
            body=status.get("content") or "",
            author=acct,
            subject=status.get("spoiler_text") or None,
            metadata={
                "status_id": str(status_id),
                "uri": str(uri),
                "url": status.get("url"),
                "visibility": status.get("visibility"),
                "language": status.get("language"),
                "replies_count": status.get("replies_count"),
                "reblogs_count": status.get("reblogs_count"),
                "favourites_count": status.get("favourites_count"),
                "tags": tags,
                "in_reply_to_id": _str_or_none(status.get("in_reply_to_id")),
                "media_count": len(status.get("media_attachments") or []),
                "via": [via],
            },
        )

    def _retry_after(self, rate_limited: bool) -> float | None:
        """Seconds the server asked us to wait: ``Retry-After``, else its rate-limit reset."""
        response = self._last_response
        seconds = (
            retry_after_seconds(response.headers.get("Retry-After"))
            if response is not None
            else None
        )
        reset = self._client.ratelimit_reset if self._client else None
        if seconds is None and rate_limited and reset:
            seconds = max(0.0, reset - time.time())
        return seconds

    def _source_error(self, exc: MastodonError) -> SourceError:
        """The retryable or fatal error a Mastodon.py exception means, with what to do."""
        where = f"Mastodon source {self.name!r} ({self.api_base_url})"
        status = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        detail = f"HTTP {status}" if status else str(exc)
        if self._last_response is not None and self._last_response.status_code == status:
            detail += f" ({self._last_response.text[:200].strip()})"
        if isinstance(exc, MastodonRatelimitError):
            return RetryableError(
                f"{where}: rate limited ({exc}); waiting for the limit to reset",
                self._retry_after(rate_limited=True),
            )
        if isinstance(exc, MastodonNetworkError):
            return RetryableError(f"{where}: cannot reach the instance ({exc}); check api_base_url")
        if isinstance(exc, MastodonServerError) or status in (408, 425):
            return RetryableError(
                f"{where}: the instance failed with {detail}; retrying",
                self._retry_after(rate_limited=False),
            )
        if isinstance(exc, MastodonUnauthorizedError) or status in (401, 403):
            return FatalError(
                f"{where}: {detail}: the access token is invalid, revoked or lacks the "
                "read:notifications / read:statuses scopes; create a new token and set it "
                "in the variable access_token_env names"
            )
        if status == 404:
            return FatalError(f"{where}: {detail}: not a Mastodon API; check api_base_url")
        if isinstance(exc, MastodonAPIError) and status is None:
            return FatalError(f"{where}: not a Mastodon API response ({exc}); check api_base_url")
        return FatalError(f"{where}: {detail}: the instance refused the request")


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
