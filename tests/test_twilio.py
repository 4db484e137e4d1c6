"""Twilio SMS pull: the real twilio client against a local server speaking Twilio's Messages API.

The server below answers ``GET /2010-04-01/Accounts/{sid}/Messages.json`` like Twilio: Basic auth
with the account SID and auth token, newest message first, the ``To`` and whole-GMT-day
``DateSent>`` filters, ``PageSize`` pages chained by ``next_page_uri`` with a ``PageToken``, and
Twilio's JSON error bodies.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from werkzeug import Request, Response

from core.db import read_session
from core.models import Message, SourceState
from ingestion.errors import FatalError, RetryableError
from ingestion.runner import sync_source
from ingestion.twilio_sms import TwilioSource

SID = "AC" + "0" * 32
TOKEN = "test-auth-token"
SCHOOL_LINE = "+15550100"
OTHER_LINE = "+15550199"
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
T0 = datetime(2026, 1, 13, 9, 0, tzinfo=UTC)


def twilio_message(n: int, sent: datetime | None, direction: str = "inbound", **fields):
    sid = f"SM{n:032x}"
    stamp = format_datetime(sent) if sent else None
    message = {
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": f"text {n}",
        "date_created": stamp,
        "date_sent": stamp,
        "date_updated": stamp,
        "direction": direction,
        "error_code": None,
        "error_message": None,
        "from": f"+1555020{n % 10}",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "received" if direction == "inbound" else "delivered",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{SID}/Messages/{sid}/Media.json"},
        "to": SCHOOL_LINE,
        "uri": f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
    }
    message.update(fields)
    return message


def _sent(message: dict) -> datetime:
    return parsedate_to_datetime(message["date_sent"] or message["date_created"] or "")


@dataclass
class FakeTwilio:
    """Twilio's Messages list: filters, pages, auth; ``failures`` by request number (1-based)."""

    messages: list[dict] = field(default_factory=list)
    failures: dict[int, tuple[int, dict[str, str]]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        args = request.args.to_dict()
        self.requests.append(args)
        if len(self.requests) in self.failures:
            return self.error(*self.failures[len(self.requests)])
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (SID, TOKEN):
            return self.error(401)
        listed = sorted(self.messages, key=_sent, reverse=True)
        if "To" in args:
            listed = [m for m in listed if m["to"] == args["To"]]
        if "DateSent>" in args:
            day = date.fromisoformat(args["DateSent>"])
            listed = [m for m in listed if _sent(m).date() >= day]
        size = int(args.get("PageSize", 50))
        page = int(args.get("Page", 0))
        start = 0
        if "PageToken" in args:  # the SID of the last message of the previous page
            start = 1 + [m["sid"] for m in listed].index(args["PageToken"].removeprefix("PA"))
        chunk = listed[start : start + size]
        filters = {k: v for k, v in args.items() if k in ("To", "DateSent>")}

        def uri(page_number: int, token: str | None = None) -> str:
            query = {**filters, "PageSize": size, "Page": page_number}
            if token:
                query["PageToken"] = token
            return f"{PATH}?{urlencode(query)}"

        more = start + size < len(listed)
        body = {
            "messages": chunk,
            "end": start + len(chunk) - 1,
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + chunk[-1]["sid"]) if more else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1) if page else None,
            "start": start,
            "uri": uri(page, args.get("PageToken")),
        }
        return Response(json.dumps(body), 200, content_type="application/json")

    @staticmethod
    def error(status: int, headers: dict[str, str] | None = None) -> Response:
        messages = {401: "Authenticate", 429: "Too Many Requests", 500: "Internal Server Error"}
        body = {
            "code": 20000 + status,
            "message": messages.get(status, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{20000 + status}",
            "status": status,
        }
        return Response(json.dumps(body), status, headers, content_type="application/json")


@pytest.fixture
def twilio(httpserver):
    fake = FakeTwilio()
    httpserver.expect_request(PATH, method="GET").respond_with_handler(fake.handle)
    return fake


def source(httpserver, **options) -> TwilioSource:
    options = {"to_number": SCHOOL_LINE, "start_date": "2026-01-13", "page_size": 2, **options}
    base_url = httpserver.url_for("/")
    token = options.pop("auth_token", TOKEN)
    return TwilioSource("sms-main", SID, token, base_url=base_url, **options)


def stored(engine) -> dict[str, Message]:
    with read_session(engine) as session:
        return {m.external_id: m for m in session.scalars(select(Message))}


def state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, "sms-main")


def sync(engine, settings, src):
    recorded: list[float] = []
    result = sync_source(engine, src, settings, sleep=recorded.append, rand=lambda: 0.0)
    return result, recorded


def first_day(twilio: FakeTwilio) -> list[dict]:
    """Five inbound texts over 13-14 January, plus one outbound and one to another line."""
    inbound = [twilio_message(i, T0 + timedelta(hours=7 * i)) for i in range(5)]
    twilio.messages += [
        *inbound,
        twilio_message(90, T0 + timedelta(hours=1), direction="outbound-api"),
        twilio_message(91, T0 + timedelta(hours=2), to=OTHER_LINE),
    ]
    return inbound


def test_first_pull_reads_every_page_of_inbound_texts(db_engine, settings, httpserver, twilio):
    inbound = first_day(twilio)
    result, recorded = sync(db_engine, settings, source(httpserver))
    assert (result.error, result.fetched, result.new, recorded) == (None, 5, 5, [])
    assert [r["DateSent>"] for r in twilio.requests] == ["2026-01-13"] * 3  # 5 texts, 2 a page
    assert all(r["To"] == SCHOOL_LINE and r["PageSize"] == "2" for r in twilio.requests)
    assert [r.get("PageToken", "")[:2] for r in twilio.requests] == ["", "PA", "PA"]
    messages = stored(db_engine)
    assert set(messages) == {m["sid"] for m in inbound}  # no outbound, no other line
    text = messages[inbound[4]["sid"]]
    assert (text.body, text.author, text.source_kind) == ("text 4", "+15550204", "sms")
    assert text.received_at == datetime(2026, 1, 14, 13, 0, tzinfo=UTC)
    assert text.meta == {"to": SCHOOL_LINE, "status": "received", "num_media": 0}
    assert state(db_engine).cursor == {"watermark": "2026-01-14T13:00:00+00:00"}


def test_incremental_pull_rereads_the_watermark_day_and_stores_only_new(
    db_engine, settings, httpserver, twilio
):
    first_day(twilio)
    sync(db_engine, settings, source(httpserver))
    later = [
        twilio_message(10, datetime(2026, 1, 14, 22, 30, tzinfo=UTC)),
        twilio_message(11, datetime(2026, 1, 15, 6, 45, tzinfo=UTC)),
        twilio_message(12, datetime(2026, 1, 15, 7, 0, tzinfo=UTC), direction="outbound-reply"),
    ]
    twilio.messages += later
    twilio.requests.clear()
    result, _ = sync(db_engine, settings, source(httpserver))
    assert all(r["DateSent>"] == "2026-01-14" for r in twilio.requests)  # the watermark's day
    assert (result.new, result.fetched) == (2, 4)  # 14 Jan re-read: 2 old, 2 new inbound
    assert len(stored(db_engine)) == 7 and later[2]["sid"] not in stored(db_engine)
    assert state(db_engine).cursor == {"watermark": "2026-01-15T06:45:00+00:00"}
    rerun, _ = sync(db_engine, settings, source(httpserver))
    assert (rerun.error, rerun.new) == (None, 0)
    assert state(db_engine).cursor == {"watermark": "2026-01-15T06:45:00+00:00"}


def test_without_a_cursor_or_start_date_it_looks_back_lookback_days(httpserver, twilio):
    before = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    messages, cursor = source(httpserver, start_date=None, lookback_days=3).fetch(None)
    after = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    assert (messages, cursor) == ([], None)
    assert twilio.requests[0]["DateSent>"] in (before, after)


def test_a_429_is_retried_after_the_time_twilio_asks(db_engine, settings, httpserver, twilio):
    first_day(twilio)
    twilio.failures[2] = (429, {"Retry-After": "7"})  # the second page
    result, recorded = sync(db_engine, settings, source(httpserver))
    assert (result.error, result.new, recorded) == (None, 5, [7.0])  # rand() = 0: only Retry-After
    assert len(twilio.requests) == 5  # pages 1, 2 (429), then 1, 2, 3 again


def test_a_500_is_retried_then_succeeds(db_engine, settings, httpserver, twilio):
    first_day(twilio)
    twilio.failures[1] = (500, {})
    result, recorded = sync(db_engine, settings, source(httpserver))
    assert (result.error, result.new, len(recorded)) == (None, 5, 1)
    assert len(twilio.requests) == 4  # the failed first page, then three pages


def test_a_401_is_fatal_not_retried_and_keeps_the_cursor(db_engine, settings, httpserver, twilio):
    first_day(twilio)
    sync(db_engine, settings, source(httpserver))
    twilio.requests.clear()
    result, recorded = sync(db_engine, settings, source(httpserver, auth_token="wrong"))
    assert result.error.startswith("FatalError: Twilio source 'sms-main': HTTP 401")
    assert "auth token" in result.error and "Authenticate" in result.error
    assert (recorded, len(twilio.requests)) == ([], 1)
    st = state(db_engine)
    assert st.last_error == result.error and st.consecutive_failures == 1
    assert st.cursor == {"watermark": "2026-01-14T13:00:00+00:00"}


def test_odd_messages_do_not_spoil_the_batch(db_engine, settings, httpserver, twilio):
    twilio.messages += [
        twilio_message(1, T0, body="fine"),
        twilio_message(2, T0 + timedelta(minutes=1), body=None, num_media="1"),  # a photo only
        twilio_message(3, T0 + timedelta(minutes=2), sid=None),
        twilio_message(4, T0 + timedelta(minutes=3), date_sent=None),  # date_created used
        twilio_message(5, T0 + timedelta(minutes=4), body="<p>Hi</p><script>x()</script>"),
    ]
    result, _ = sync(db_engine, settings, source(httpserver))
    assert (result.error, result.new) == (None, 4)
    bodies = {sid[-1]: (m.body, m.meta["num_media"]) for sid, m in stored(db_engine).items()}
    assert bodies == {"1": ("fine", 0), "2": ("", 1), "4": ("text 4", 0), "5": ("Hi", 0)}


def test_connection_refused_and_bad_options_are_reported(httpserver):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    src = TwilioSource("sms-main", SID, TOKEN, base_url=closed, start_date="2026-01-13")
    with pytest.raises(RetryableError, match=r"sms-main.*cannot reach Twilio"):
        src.fetch(None)
    with pytest.raises(ValueError, match="page_size"):
        TwilioSource("sms-main", SID, TOKEN, page_size=5000)
    with pytest.raises(ValueError, match="auth_token"):
        TwilioSource("sms-main", SID, "")


def test_other_client_errors_are_fatal(httpserver, twilio):
    twilio.failures[1] = (404, {})
    with pytest.raises(FatalError, match=r"HTTP 404.*account_sid"):
        source(httpserver).fetch(None)
