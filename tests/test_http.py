"""The JSON HTTP helper: status codes become retryable or fatal errors; next-page URLs survive."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingestion.errors import FatalError, RetryableError
from ingestion.http import get_json, json_client, retry_after_seconds


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 14, 13, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 14 Jan 2026 13:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 14 Jan 2026 12:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_statuses_map_to_retryable_and_fatal_errors(httpserver):
    httpserver.expect_request("/limited").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "9"}
    )
    httpserver.expect_request("/broken").respond_with_data("oops", status=503)
    httpserver.expect_request("/denied").respond_with_data("no", status=401)
    httpserver.expect_request("/missing").respond_with_data("?", status=404)
    httpserver.expect_request("/garbage").respond_with_data("<html>", status=200)
    with json_client(httpserver.url_for("/")) as client:
        with pytest.raises(RetryableError) as limited:
            get_json(client, "/limited", "feed")
        assert limited.value.retry_after == 9.0 and "rate limited" in str(limited.value)
        with pytest.raises(RetryableError, match="HTTP 503"):
            get_json(client, "/broken", "feed")
        with pytest.raises(FatalError, match="check the source's credentials"):
            get_json(client, "/denied", "feed")
        with pytest.raises(FatalError, match="HTTP 404"):
            get_json(client, "/missing", "feed")
        with pytest.raises(RetryableError, match="not JSON"):
            get_json(client, "/garbage", "feed")


def test_an_absolute_next_page_url_keeps_its_query(httpserver):
    httpserver.expect_request("/items", query_string="after=abc&limit=2").respond_with_json(
        {"page": 2}
    )
    with json_client(httpserver.url_for("/")) as client:
        assert get_json(client, httpserver.url_for("/items?after=abc&limit=2"), "x") == {"page": 2}
        assert get_json(client, "/items", "x", after="abc", limit=2, cursor=None) == {"page": 2}


def test_a_dead_server_is_retryable():
    with (
        json_client("http://127.0.0.1:9") as client,
        pytest.raises(RetryableError, match="connect"),
    ):
        get_json(client, "/x", "feed")
