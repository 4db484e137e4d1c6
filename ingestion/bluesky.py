"""Bluesky source: mentions, replies and quotes of the district's account, over plain XRPC.

The account signs in with an app password (``com.atproto.server.createSession``); the session is
kept on the connector and renewed with ``com.atproto.server.refreshSession`` when the access token
expires, so a sync does not sign in again (Bluesky allows few sign-ins per day). Notifications
(``app.bsky.notification.listNotifications``) arrive newest first; paging stops at the watermark.

Cursor: ``{"seen_at": indexedAt of the newest notification seen}``. Notifications indexed at the
watermark itself are read again; the upsert drops what is already stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ingestion.base import Cursor, RawMessage
from ingestion.errors import FatalError, RetryableError
from ingestion.http import check_response, json_client, retry_after_seconds

log = logging.getLogger(__name__)

REASONS = ("mention", "reply", "quote")
PAGE_SIZE = 100  # listNotifications' largest page
SESSION_ERRORS = {"ExpiredToken", "InvalidToken"}


def atproto_time(value: object) -> datetime | None:
    """An AT Protocol datetime ("2026-01-14T13:05:00.123Z") as UTC; None when malformed or naive."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def xrpc_error(response: httpx.Response) -> str | None:
    """The XRPC error name of a failed response ({"error": "ExpiredToken", "message": ...})."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


def rate_limit_delay(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds to wait after a 429: ``ratelimit-reset`` (unix time) or ``Retry-After``."""
    reset = response.headers.get("ratelimit-reset", "")
    if reset.strip().isdigit():
        return max(0.0, int(reset) - (time.time() if now is None else now))
    return retry_after_seconds(response.headers.get("Retry-After"))


@dataclass
class BlueskySource:
    """Mentions, replies and quotes of a Bluesky account.

    ``handle`` is the account's handle (or DID); ``app_password`` an app password made for Pulse
    in Bluesky's Settings → Privacy and security → App passwords (never the account password).
    """

    name: str
    handle: str
    app_password: str = field(repr=False)
    service_url: str = "https://bsky.social"
    interval_seconds: int = 120
    max_pages: int = 20
    kind: str = field(default="social", init=False)
    _session: dict[str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.handle = self.handle.strip().removeprefix("@")
        if not self.handle:
            raise ValueError("handle is empty: set the account's handle, e.g. district.bsky.social")
        if not self.app_password or not self.app_password.strip():
            raise ValueError("app_password is empty: set an app password made for Pulse")
        if not self.service_url.startswith(("https://", "http://")):
            raise ValueError(f"service_url = {self.service_url!r}: use an http(s) URL")
        for option in ("interval_seconds", "max_pages"):
            if not isinstance(getattr(self, option), int) or getattr(self, option) < 1:
                raise ValueError(f"{option} = {getattr(self, option)!r}: use a positive integer")

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """Notifications indexed since the cursor's ``seen_at``, and the new cursor."""
        seen_at = atproto_time((cursor or {}).get("seen_at"))
        newest = seen_at
        messages: list[RawMessage] = []
        with json_client(self.service_url) as client:
            for item in self._notifications(client):
                indexed = atproto_time(item.get("indexedAt"))
                if indexed is None:
                    log.info("%s: skipped a notification without indexedAt", self._who)
                    continue
                if seen_at is not None and indexed < seen_at:
                    break  # newest first: the rest was read by an earlier sync
                newest = indexed if newest is None else max(newest, indexed)
                message = self._message(item, indexed)
                if message is not None:
                    messages.append(message)
        return messages, {"seen_at": newest.isoformat()} if newest is not None else None

    def _notifications(self, client: httpx.Client) -> Iterator[dict[str, Any]]:
        """The account's notifications, newest first, for up to ``max_pages`` pages."""
        page: str | None = None
        for _ in range(self.max_pages):
            body = self._get(
                client,
                "app.bsky.notification.listNotifications",
                "reading notifications",
                {"limit": PAGE_SIZE, "cursor": page, "reasons": list(REASONS)},
            )
            notifications = body.get("notifications")
            if not isinstance(notifications, list):
                raise RetryableError(f"{self._who}: the response has no 'notifications' list")
            yield from (item for item in notifications if isinstance(item, dict))
            page = body.get("cursor")
            if not notifications or not isinstance(page, str):
                return
        log.warning("%s: stopped after max_pages=%d pages", self._who, self.max_pages)

    @property
    def _who(self) -> str:
        return f"Bluesky source {self.name!r} ({self.handle})"

    def _message(self, item: dict[str, Any], indexed: datetime) -> RawMessage | None:
        """The RawMessage for a mention, reply or quote with text; None for anything else."""
        record = item.get("record")
        uri = item.get("uri")
        if item.get("reason") not in REASONS or not isinstance(record, dict):
            return None
        text = record.get("text")
        if not isinstance(uri, str) or not isinstance(text, str) or not text.strip():
            return None
        author = item.get("author") if isinstance(item.get("author"), dict) else {}
        handle = author.get("handle")
        if not isinstance(handle, str) or handle == "handle.invalid":
            handle = author.get("did")
        # createdAt is set by the writer's app: a future one would distort the timeline.
        created = atproto_time(record.get("createdAt"))
        langs = record.get("langs")
        return RawMessage(
            source_name=self.name,
            external_id=uri,
            received_at=created if created is not None and created <= indexed else indexed,
            body=text,
            author=handle if isinstance(handle, str) else None,
            metadata={
                "reason": item["reason"],
                "uri": uri,
                "cid": item.get("cid"),
                "langs": langs if isinstance(langs, list) else None,
            },
        )

    def _send(
        self,
        client: httpx.Client,
        method: str,
        nsid: str,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One XRPC call; network failures become RetryableError."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            return client.request(method, f"/xrpc/{nsid}", headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"{self._who}: {nsid} timed out ({exc})") from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"{self._who}: cannot connect for {nsid} ({exc})") from exc

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The JSON object of a successful response; 429 and other failures become errors."""
        what = f"{self._who}: {what}"
        if response.status_code == 429:
            raise RetryableError(f"{what}: rate limited (HTTP 429)", rate_limit_delay(response))
        check_response(response, what)
        try:
            body = response.json()
        except ValueError as exc:
            raise RetryableError(f"{what}: the response is not JSON") from exc
        if not isinstance(body, dict):
            raise RetryableError(f"{what}: the response is not a JSON object")
        return body

    def _get(
        self, client: httpx.Client, nsid: str, what: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """GET an authenticated XRPC query, renewing an expired session once."""
        params = {k: v for k, v in params.items() if v is not None}
        session = self._session or self._create_session(client)
        response = self._send(client, "GET", nsid, session["accessJwt"], params=params)
        if self._session_expired(response):
            session = self._refresh_session(client)
            response = self._send(client, "GET", nsid, session["accessJwt"], params=params)
        return self._json(response, what)

    @staticmethod
    def _session_expired(response: httpx.Response) -> bool:
        return response.status_code == 401 or (
            response.status_code == 400 and xrpc_error(response) in SESSION_ERRORS
        )

    def _create_session(self, client: httpx.Client) -> dict[str, str]:
        """Sign in with the app password; bad credentials are fatal."""
        self._session = None
        response = self._send(
            client,
            "POST",
            "com.atproto.server.createSession",
            json={"identifier": self.handle, "password": self.app_password},
        )
        if response.status_code == 401:
            raise FatalError(
                f"{self._who}: sign-in refused ({xrpc_error(response) or 'HTTP 401'}): check the "
                "handle and the app password (Bluesky Settings → Privacy and security → App "
                "passwords; make a new one if it was revoked)"
            )
        return self._keep(self._json(response, "signing in"))

    def _refresh_session(self, client: httpx.Client) -> dict[str, str]:
        """A fresh access token from the refresh token; sign in again if that has expired too."""
        refresh = (self._session or {}).get("refreshJwt")
        if refresh:
            response = self._send(client, "POST", "com.atproto.server.refreshSession", refresh)
            if not self._session_expired(response):
                return self._keep(self._json(response, "refreshing the session"))
        return self._create_session(client)

    def _keep(self, body: dict[str, Any]) -> dict[str, str]:
        """Cache the session tokens of a createSession or refreshSession answer."""
        access, refresh = body.get("accessJwt"), body.get("refreshJwt")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise RetryableError(f"{self._who}: the session answer has no tokens")
        self._session = {"accessJwt": access, "refreshJwt": refresh}
        return self._session
