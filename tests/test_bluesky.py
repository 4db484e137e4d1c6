"""Bluesky source against a local server speaking XRPC: sessions, notifications, cursor paging."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from core.db import read_session
from core.models import Message, SourceState
from ingestion.bluesky import BlueskySource
from ingestion.runner import sync_source

HANDLE = "lincolnusd.bsky.social"
DID = "did:plc:z72i7hdynmk6r22z27h6tvur"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
T0 = datetime(2026, 1, 14, 13, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def xrpc_error(status: int, error: str, message: str, headers: dict | None = None) -> Response:
    body = json.dumps({"error": error, "message": message})
    return Response(body, status=status, headers=headers, content_type="application/json")


class FakeBluesky:
    """A PDS's session endpoints and the AppView's listNotifications, pages of two."""

    def __init__(self, server: HTTPServer, page_size: int = 2) -> None:
        self.server = server
        self.page_size = page_size
        self.password = APP_PASSWORD
        self.notifications: list[dict] = []
        self.access: set[str] = set()
        self.refresh: set[str] = set()
        self.created = 0
        self.refreshed = 0
        self.ids = count(1)
        xrpc = "/xrpc/"
        server.expect_request(
            xrpc + "com.atproto.server.createSession", method="POST"
        ).respond_with_handler(self.create_session)
        server.expect_request(
            xrpc + "com.atproto.server.refreshSession", method="POST"
        ).respond_with_handler(self.refresh_session)
        server.expect_request(
            xrpc + "app.bsky.notification.listNotifications", method="GET"
        ).respond_with_handler(self.list_notifications)

    def _session(self) -> Response:
        n = next(self.ids)
        access, refresh = f"eyJ.access-{n}.sig", f"eyJ.refresh-{n}.sig"
        self.access.add(access)
        self.refresh.add(refresh)
        body = {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": HANDLE,
            "did": DID,
            "email": "comms@lincolnusd.example",
            "emailConfirmed": True,
            "active": True,
        }
        return Response(json.dumps(body), content_type="application/json")

    def create_session(self, request: Request) -> Response:
        body = request.get_json()
        if body != {"identifier": HANDLE, "password": self.password}:
            return xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        self.created += 1
        return self._session()

    def refresh_session(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.refresh:
            return xrpc_error(400, "ExpiredToken", "Token has been revoked")
        self.refresh.discard(token)  # refresh tokens are single-use
        self.refreshed += 1
        return self._session()

    def list_notifications(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.access:
            return xrpc_error(400, "ExpiredToken", "Token has expired")
        reasons = request.args.getlist("reasons")
        items = sorted(self.notifications, key=lambda n: n["indexedAt"], reverse=True)
        items = [n for n in items if not reasons or n["reason"] in reasons]
        start = int(request.args.get("cursor", "0"))
        chunk = items[start : start + min(int(request.args.get("limit", 50)), self.page_size)]
        body: dict = {"notifications": chunk, "priority": False, "seenAt": iso(T0)}
        if chunk:  # the AppView returns a cursor with every non-empty page
            body["cursor"] = str(start + len(chunk))
        return Response(json.dumps(body), content_type="application/json")

    def notify(
        self,
        rkey: str,
        minutes: float,
        reason: str = "mention",
        text: str | None = "@lincolnusd.bsky.social when do buses run?",
        handle: str = "parent.bsky.social",
        created: datetime | None = None,
    ) -> str:
        """Add a notification indexed ``minutes`` after T0; its at:// URI."""
        author_did = f"did:plc:{handle.split('.')[0]:x<24}"
        uri = f"at://{author_did}/app.bsky.feed.post/{rkey}"
        indexed = T0 + timedelta(minutes=minutes)
        if reason in ("mention", "reply", "quote"):
            record = {
                "$type": "app.bsky.feed.post",
                "createdAt": iso(created or indexed - timedelta(seconds=2)),
                "langs": ["en"],
            }
            if text is not None:
                record["text"] = text
            if reason == "reply":
                parent = {"uri": f"at://{DID}/app.bsky.feed.post/3kparent", "cid": "bafyparent"}
                record["reply"] = {"root": parent, "parent": parent}
        else:
            uri = f"at://{author_did}/app.bsky.feed.like/{rkey}"
            record = {
                "$type": "app.bsky.feed.like",
                "subject": {"uri": f"at://{DID}/app.bsky.feed.post/3kpost", "cid": "bafypost"},
                "createdAt": iso(indexed),
            }
        self.notifications.append(
            {
                "uri": uri,
                "cid": f"bafyrei{rkey}",
                "author": {
                    "did": author_did,
                    "handle": handle,
                    "displayName": "A Parent",
                    "avatar": "https://cdn.bsky.app/img/avatar/plain/x/y@jpeg",
                    "viewer": {"muted": False, "blockedBy": False},
                    "labels": [],
                    "createdAt": iso(T0 - timedelta(days=400)),
                },
                "reason": reason,
                "record": record,
                "isRead": False,
                "indexedAt": iso(indexed),
                "labels": [],
            }
        )
        return uri

    def calls(self, nsid: str) -> list[Request]:
        return [r for r, _ in self.server.log if r.path.endswith(nsid)]


@pytest.fixture
def bsky(httpserver: HTTPServer) -> FakeBluesky:
    return FakeBluesky(httpserver)


@pytest.fixture
def source(httpserver: HTTPServer) -> BlueskySource:
    return BlueskySource(
        name="bsky",
        handle=HANDLE,
        app_password=APP_PASSWORD,
        service_url=httpserver.url_for("/").rstrip("/"),
    )


def stored(engine) -> dict[str, Message]:
    with read_session(engine) as session:
        rows = session.scalars(select(Message).where(Message.source_name == "bsky")).all()
        return {m.external_id: m for m in rows}


def state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, "bsky")


def seed(bsky: FakeBluesky) -> dict[str, str]:
    """Five mentions, replies and quotes among likes; with pages of two."""
    uris = {
        "mention": bsky.notify("3la1", 1),
        "reply": bsky.notify("3la2", 2, "reply", "Route 4 was late again", "mom.bsky.social"),
        "quote": bsky.notify("3la3", 3, "quote", "This is the third time", "dad.bsky.social"),
        "like": bsky.notify("3la4", 4, "like"),
        "invalid": bsky.notify("3la5", 5, "mention", "Who do I call?", "handle.invalid"),
        "future": bsky.notify("3la6", 6, created=T0 + timedelta(days=2)),
    }
    return uris


LISTED = "app.bsky.notification.listNotifications"


def test_first_sync_reads_mentions_replies_and_quotes_across_pages(
    db_engine, settings, bsky, source
):
    uris = seed(bsky)
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 5
    rows = stored(db_engine)
    assert set(rows) == {uris[k] for k in ("mention", "reply", "quote", "invalid", "future")}
    reply = rows[uris["reply"]]
    assert reply.body == "Route 4 was late again" and reply.author == "mom.bsky.social"
    assert reply.received_at == T0 + timedelta(minutes=2, seconds=-2)  # the record's createdAt
    assert reply.meta == {
        "reason": "reply",
        "uri": uris["reply"],
        "cid": "bafyrei3la2",
        "langs": ["en"],
    }
    assert rows[uris["invalid"]].author == uris["invalid"].split("/")[2]  # the DID
    assert rows[uris["future"]].received_at == T0 + timedelta(minutes=6)  # not 2 days ahead
    assert state(db_engine).cursor == {"seen_at": (T0 + timedelta(minutes=6)).isoformat()}
    listed = bsky.calls(LISTED)
    assert len(listed) == 4  # pages of two, then an empty page ends the listing
    assert listed[0].args.getlist("reasons") == ["mention", "reply", "quote"]
    assert listed[0].headers["Authorization"] == "Bearer eyJ.access-1.sig"
    assert bsky.created == 1


def test_incremental_sync_stops_at_the_watermark_and_a_rerun_adds_nothing(
    db_engine, settings, bsky, source
):
    seed(bsky)
    sync_source(db_engine, source, settings)
    bsky.server.log.clear()
    fresh = [bsky.notify(f"3lb{i}", 10 + i, "reply", f"Any news {i}?") for i in range(3)]
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 3 and fresh[0] in stored(db_engine)
    # Newest first: [12, 11], [10, 6 (the watermark, read again)], [5: older, stop].
    assert len(bsky.calls(LISTED)) == 3
    assert state(db_engine).cursor == {"seen_at": (T0 + timedelta(minutes=12)).isoformat()}
    again = sync_source(db_engine, source, settings)
    assert again.error is None and again.new == 0 and len(stored(db_engine)) == 8
    assert bsky.created == 1 and bsky.calls("createSession") == []  # the session is reused


def test_an_expired_access_token_is_refreshed(db_engine, settings, bsky, source):
    seed(bsky)
    sync_source(db_engine, source, settings)
    bsky.access.clear()  # the access token (2 hours) has expired
    fresh = bsky.notify("3lc1", 30)
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 1 and fresh in stored(db_engine)
    assert (bsky.created, bsky.refreshed) == (1, 1)
    refresh_call = bsky.calls("refreshSession")[0]
    assert refresh_call.headers["Authorization"] == "Bearer eyJ.refresh-1.sig"


def test_an_expired_refresh_token_signs_in_again(db_engine, settings, bsky, source):
    seed(bsky)
    sync_source(db_engine, source, settings)
    bsky.access.clear()
    bsky.refresh.clear()  # the refresh token (90 days) has expired too
    bsky.notify("3lc2", 30)
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 1
    assert (bsky.created, bsky.refreshed) == (2, 0)


@pytest.mark.parametrize("endpoint", [LISTED, "com.atproto.server.createSession"])
def test_a_429_waits_until_the_rate_limit_resets(db_engine, settings, bsky, source, endpoint):
    seed(bsky)
    reset = int(time.time()) + 20
    headers = {
        "ratelimit-limit": "3000",
        "ratelimit-remaining": "0",
        "ratelimit-reset": str(reset),
        "ratelimit-policy": "3000;w=300",
    }
    bsky.server.expect_oneshot_request(f"/xrpc/{endpoint}").respond_with_response(
        xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers)
    )
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append, rand=lambda: 0.0)
    assert result.error is None and result.new == 5
    assert len(delays) == 1 and 10 < delays[0] <= 20  # until the reset, not a blind backoff


def test_a_429_with_retry_after_is_honoured(db_engine, settings, bsky, source):
    seed(bsky)
    bsky.server.expect_oneshot_request(f"/xrpc/{LISTED}").respond_with_response(
        xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded", {"Retry-After": "9"})
    )
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append, rand=lambda: 0.0)
    assert result.error is None and delays == [9.0]


def test_a_server_error_is_retried(db_engine, settings, bsky, source):
    seed(bsky)
    bsky.server.expect_oneshot_request(f"/xrpc/{LISTED}").respond_with_response(
        xrpc_error(502, "UpstreamFailure", "Upstream Failure")
    )
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append)
    assert result.error is None and result.new == 5 and len(delays) == 1


def test_a_wrong_app_password_is_fatal_and_keeps_the_cursor(db_engine, settings, bsky, httpserver):
    seed(bsky)
    first = BlueskySource(
        name="bsky", handle=HANDLE, app_password=APP_PASSWORD, service_url=httpserver.url_for("")
    )
    sync_source(db_engine, first, settings)
    cursor = state(db_engine).cursor
    bsky.password = "revoked-app-password"
    bsky.server.log.clear()
    restarted = BlueskySource(  # a new worker process: no cached session
        name="bsky", handle=HANDLE, app_password=APP_PASSWORD, service_url=httpserver.url_for("")
    )
    delays: list[float] = []
    result = sync_source(db_engine, restarted, settings, sleep=delays.append)
    assert delays == [] and len(bsky.server.log) == 1 and result.new == 0
    st = state(db_engine)
    assert "AuthenticationRequired" in st.last_error and "app password" in st.last_error
    assert APP_PASSWORD not in st.last_error
    assert st.cursor == cursor and st.consecutive_failures == 1


def test_items_without_text_are_skipped_and_html_is_stored_harmlessly(
    db_engine, settings, bsky, source
):
    image_only = bsky.notify("3ld1", 1, text=None)
    blank = bsky.notify("3ld2", 2, text="   ")
    html = bsky.notify("3ld3", 3, text="<p>Bus <b>late</b></p><script>fetch('/x')</script>")
    odd = {"uri": "at://x/app.bsky.feed.post/odd", "reason": "mention", "indexedAt": "soon"}
    bsky.notifications.append(odd)
    broken = bsky.notify("3ld4", 4)
    bsky.notifications[-1]["record"] = "not an object"
    fine = bsky.notify("3ld5", 5, text="Thanks for the update")
    result = sync_source(db_engine, source, settings)
    assert result.error is None
    rows = stored(db_engine)
    assert set(rows) == {html, fine}
    assert not {image_only, blank, broken} & set(rows)
    assert rows[html].body == "Bus late" and "fetch" not in rows[html].body
    assert "<script>" in rows[html].raw


def test_bad_options_are_refused_and_the_password_is_not_in_the_repr():
    with pytest.raises(ValueError, match="handle"):
        BlueskySource(name="bsky", handle=" @ ", app_password=APP_PASSWORD)
    with pytest.raises(ValueError, match="app_password"):
        BlueskySource(name="bsky", handle=HANDLE, app_password="")
    with pytest.raises(ValueError, match="service_url"):
        BlueskySource(name="bsky", handle=HANDLE, app_password=APP_PASSWORD, service_url="bsky")
    source = BlueskySource(name="bsky", handle="@" + HANDLE, app_password=APP_PASSWORD)
    assert source.handle == HANDLE and APP_PASSWORD not in repr(source)
