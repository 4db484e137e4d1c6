"""A small HTTP client for JSON APIs, mapping HTTP failures to retryable or fatal source errors."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

import httpx

from ingestion.errors import FatalError, RetryableError

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "Pulse/1.0 (school district community inbox)"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def check_response(response: httpx.Response, what: str) -> None:
    """Raise RetryableError (429, 5xx) or FatalError (other 4xx) for a failed response."""
    status = response.status_code
    if status < 400:
        return
    detail = f"{what}: HTTP {status} from {response.request.url}"
    body = response.text[:200].strip()
    if body:
        detail += f": {body}"
    if status == 429:
        raise RetryableError(
            detail + " (rate limited)", retry_after_seconds(response.headers.get("Retry-After"))
        )
    if status >= 500 or status == 408:
        raise RetryableError(detail, retry_after_seconds(response.headers.get("Retry-After")))
    if status in (401, 403):
        raise FatalError(detail + " (check the source's credentials)")
    raise FatalError(detail)


def json_client(base_url: str, headers: dict[str, str] | None = None) -> httpx.Client:
    """An httpx client for one API: base URL, timeouts, a clear User-Agent."""
    return httpx.Client(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        timeout=DEFAULT_TIMEOUT,
        follow_redirects=True,
    )


def get(
    client: httpx.Client,
    url: str,
    what: str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    """GET ``url``; network failures and HTTP errors become source errors (a 304 is fine)."""
    # no params at all keeps the query of an absolute "next page" URL (httpx would drop it)
    query = {k: v for k, v in params.items() if v is not None} or None
    try:
        response = client.get(url, params=query, headers=headers)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what}: {url} timed out ({exc})") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"{what}: cannot connect to {url} ({exc})") from exc
    check_response(response, what)
    return response


def get_json(client: httpx.Client, url: str, what: str, **params: Any) -> Any:
    """GET ``url`` and return its JSON; network failures and HTTP errors become source errors."""
    response = get(client, url, what, **params)
    try:
        return response.json()
    except ValueError as exc:
        raise RetryableError(f"{what}: the response from {response.url} is not JSON") from exc
