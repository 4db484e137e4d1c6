"""Twilio SMS, pulled: the account's Messages list read on a schedule with Twilio's own client.

Configure in ``sources.toml``::

    [[source]]
    name = "sms-main"
    type = "twilio"
    account_sid = "AC0123456789abcdef0123456789abcdef"
    auth_token_env = "PULSE_TWILIO_AUTH_TOKEN"
    to_number = "+15550100"        # optional: only texts sent to this number
    start_date = "2025-08-15"      # optional: first pull reads from this GMT day (backfill)

The cursor is ``{"watermark": <ISO date_sent of the newest inbound message seen>}``. Twilio's
``DateSent`` filter takes whole days in GMT, so every pull re-reads from the watermark's day
(``DateSent>=YYYY-MM-DD``) and returns all inbound messages listed; the messages already stored
are ignored by their (source, SID) key. The first pull reads from ``start_date``, or from
``lookback_days`` before today. Outbound messages (the district's own) are skipped.

The twilio client does not retry: its HTTP adapter has no retries, and a failed page raises
``TwilioException("Unable to fetch page", response)`` carrying the HTTP response. Those failures
become RetryableError (429 with its Retry-After, 5xx, timeouts, refused connections) or
FatalError (401/403: wrong account SID or auth token; other 4xx), and the runner retries.

Pull or webhook, not both, for one number: they are different sources, so both would store
every text once each (see ``ingestion.webhooks`` for the push alternative).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from ingestion.base import Cursor, RawMessage
from ingestion.errors import FatalError, RetryableError, SourceError
from ingestion.http import retry_after_seconds

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 1000  # Twilio's maximum: fewest requests per pull
TIMEOUT_SECONDS = 30.0


class TwilioSource:
    """Inbound SMS/MMS of a Twilio account (optionally to one number), pulled by date sent."""

    kind = "sms"

    def __init__(
        self,
        name: str,
        account_sid: str,
        auth_token: str,
        to_number: str | None = None,
        interval_seconds: int = 60,
        base_url: str | None = None,
        lookback_days: int = 1,
        start_date: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("set account_sid and auth_token_env (the account's Auth Token)")
        if not 1 <= page_size <= DEFAULT_PAGE_SIZE:
            raise ValueError(f"page_size = {page_size}: use 1 to {DEFAULT_PAGE_SIZE}")
        if lookback_days < 0 or interval_seconds < 1:
            raise ValueError("lookback_days must be >= 0 and interval_seconds >= 1")
        try:
            self.start_date = date.fromisoformat(start_date) if start_date else None
        except ValueError:
            raise ValueError(f"start_date = {start_date!r}: give a day as YYYY-MM-DD") from None
        self.name = name
        self.to_number = to_number
        self.interval_seconds = interval_seconds
        self.lookback_days = lookback_days
        self.page_size = page_size
        self.client = Client(
            account_sid, auth_token, http_client=TwilioHttpClient(timeout=TIMEOUT_SECONDS)
        )
        if base_url:
            self.client.api.base_url = base_url.rstrip("/")
            # TWILIO_EDGE / TWILIO_REGION would rewrite the host of a self-hosted base URL.
            self.client.edge = self.client.region = None

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """Inbound messages sent on or after the watermark's GMT day, and the new watermark."""
        watermark = datetime.fromisoformat(cursor["watermark"]) if cursor else None
        filters: dict[str, Any] = {
            "date_sent_after": self._since(watermark).isoformat(),  # sent as DateSent>=
            "page_size": self.page_size,
        }
        if self.to_number:
            filters["to"] = self.to_number
        try:
            raws = [raw for m in self.client.messages.stream(**filters) if (raw := self._raw(m))]
        except (TwilioException, requests.RequestException, ValueError) as exc:
            raise self._source_error(exc) from exc
        newest = max(
            [r.received_at for r in raws] + ([watermark] if watermark else []), default=None
        )
        return raws, {"watermark": newest.isoformat()} if newest else cursor

    def _since(self, watermark: datetime | None) -> date:
        if watermark:
            return watermark.astimezone(UTC).date()
        return self.start_date or (datetime.now(UTC) - timedelta(days=self.lookback_days)).date()

    def _raw(self, message: MessageInstance) -> RawMessage | None:
        if message.direction != "inbound":
            return None
        received_at = message.date_sent or message.date_created
        if not message.sid or received_at is None:
            log.warning("Twilio source %r: skipped a message without SID or date", self.name)
            return None
        metadata = {"to": message.to, "status": message.status, "num_media": message.num_media}
        if str(message.num_media or "").isdigit():
            metadata["num_media"] = int(message.num_media)
        return RawMessage(
            source_name=self.name,
            external_id=message.sid,
            received_at=received_at,
            body=message.body or "",
            author=message.from_,
            metadata={k: v for k, v in metadata.items() if v is not None},
        )

    def _source_error(self, exc: Exception) -> SourceError:
        where = f"Twilio source {self.name!r}"
        if isinstance(exc, requests.Timeout):
            return RetryableError(f"{where}: Twilio did not answer in time ({exc})")
        if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return RetryableError(f"{where}: cannot reach Twilio ({exc})")
        if isinstance(exc, requests.RequestException):
            return FatalError(f"{where}: cannot call Twilio ({exc}): check base_url")
        if isinstance(exc, ValueError):
            return RetryableError(f"{where}: Twilio's answer is not JSON ({exc})")
        status, retry_after, detail = _http_failure(exc)
        if status is None:
            return FatalError(f"{where}: unexpected answer from Twilio: {detail}")
        message = f"{where}: HTTP {status} listing messages: {detail}"
        if status == 429:
            return RetryableError(f"{message} (rate limited)", retry_after)
        if status >= 500 or status == 408:
            return RetryableError(message, retry_after)
        if status in (401, 403):
            return FatalError(f"{message}: check account_sid and the auth token (auth_token_env)")
        return FatalError(f"{message}: check the source's options (account_sid, to_number)")


def _http_failure(exc: Exception) -> tuple[int | None, float | None, str]:
    """(HTTP status, Retry-After seconds, detail) of a twilio client exception."""
    if isinstance(exc, TwilioRestException):
        return exc.status, None, str(exc.msg)
    if isinstance(exc, TwilioServiceException):
        return exc.status, None, exc.detail or exc.title
    response = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(response, Response):
        retry_after = retry_after_seconds((response.headers or {}).get("Retry-After"))
        return response.status_code, retry_after, response.text[:200].strip()
    return None, None, str(exc)
