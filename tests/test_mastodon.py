"""Mastodon connector against a local server speaking Mastodon's REST API and Link-header paging."""

from __future__ import annotations

import email.utils
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from conftest import free_port
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from core.db import read_session
from core.models import Message, SourceState
from ingestion.errors import FatalError
from ingestion.mastodon import MastodonSource
from ingestion.runner import backoff_delay, sync_source
from ingestion.sources import build_source

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
TOKEN = "district-token"
FIRST_ID = 112_000_000_000_000_000
INSTANCE_V2 = {
    "domain": "district.example",
    "title": "District",
    "version": "4.3.2",
    "configuration": {
        "timelines_access": {
            "live_feeds": {"local": "public", "remote": "public"},
            "hashtag_feeds": {"local": "public", "remote": "public"},
            "trending_link_feeds": {"local": "public", "remote": "public"},
        }
    },
}


def account(acct: str) -> dict:
    """An Account entity as Mastodon 4.x serialises it."""
    username, _, domain = acct.partition("@")
    host = domain or "district.example"
    return {
        "id": str(abs(hash(acct)) % 10**17),
        "username": username,
        "acct": acct,
        "display_name": username.title(),
        "locked": False,
        "bot": False,
        "discoverable": True,
        "group": False,
        "created_at": "2023-01-05T00:00:00.000Z",
        "note": "<p>Parent</p>",
        "url": f"https://{host}/@{username}",
        "uri": f"https://{host}/users/{username}",
        "avatar": f"https://{host}/avatars/original/missing.png",
        "avatar_static": f"https://{host}/avatars/original/missing.png",
        "header": f"https://{host}/headers/original/missing.png",
        "header_static": f"https://{host}/headers/original/missing.png",
        "followers_count": 3,
        "following_count": 5,
        "statuses_count": 42,
        "last_status_at": "2026-03-02",
        "emojis": [],
        "fields": [],
    }


class FakeInstance:
    """A Mastodon instance: notifications and hashtag timelines, paged as Mastodon pages them.

    Lists are returned newest first; ``since_id``/``max_id``/``min_id``/``limit`` filter as on
    a real server, and a non-empty page carries ``Link: <..max_id=..>; rel="next", <..min_id=..>;
    rel="prev"``. Every response carries the X-RateLimit-* headers Mastodon sends.
    """

    def __init__(self, server: HTTPServer):
        self.server = server
        self.notifications: list[dict] = []
        self.tags: dict[str, list[dict]] = {}
        self.last_id = FIRST_ID
        self.requests: list[tuple[str, dict]] = []
        server.expect_request("/api/v2/instance/").respond_with_json(INSTANCE_V2)
        server.expect_request("/api/v1/notifications").respond_with_handler(
            self.serve_notifications
        )
        server.expect_request(re.compile(r"/api/v1/timelines/tag/\w+")).respond_with_handler(
            self.serve_tag
        )

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def new_id(self) -> str:
        self.last_id += 1000
        return str(self.last_id)

    def status(
        self,
        acct: str,
        content: str,
        minute: int = 0,
        tags: tuple[str, ...] = (),
        **fields,
    ) -> dict:
        """A Status entity with Mastodon's full field set."""
        status_id = self.new_id()
        username, _, domain = acct.partition("@")
        host = domain or "district.example"
        return {
            "id": status_id,
            "created_at": (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", ".000Z"),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": "public",
            "language": "en",
            "uri": f"https://{host}/users/{username}/statuses/{status_id}",
            "url": f"https://{host}/@{username}/{status_id}",
            "replies_count": 1,
            "reblogs_count": 2,
            "favourites_count": 3,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "content": content,
            "filtered": [],
            "reblog": None,
            "application": None,
            "account": account(acct),
            "media_attachments": [],
            "mentions": [],
            "tags": [{"name": t, "url": f"https://district.example/tags/{t}"} for t in tags],
            "emojis": [],
            "card": None,
            "poll": None,
            **fields,
        }

    def mention(self, status: dict | None, kind: str = "mention") -> dict:
        """Add a notification of ``kind`` carrying ``status``; returns it."""
        note = {
            "id": self.new_id(),
            "type": kind,
            "created_at": status["created_at"] if status else "2026-03-02T14:00:00.000Z",
            "group_key": f"ungrouped-{self.last_id}",
            "account": status["account"] if status else account("someone@else.example"),
            "status": status,
        }
        self.notifications.append(note)
        return note

    def post(self, tag: str, status: dict) -> dict:
        self.tags.setdefault(tag, []).append(status)
        return status

    def page(self, request: Request, items: list[dict], default: int, most: int) -> Response:
        args = request.args
        self.requests.append((request.path, args.to_dict(flat=True)))
        limit = min(int(args.get("limit", default)), most)
        chosen = sorted(items, key=lambda item: int(item["id"]), reverse=True)
        if "max_id" in args:
            chosen = [i for i in chosen if int(i["id"]) < int(args["max_id"])]
        if "since_id" in args:
            chosen = [i for i in chosen if int(i["id"]) > int(args["since_id"])]
        if "min_id" in args:
            chosen = [i for i in chosen if int(i["id"]) > int(args["min_id"])][-limit:]
        chosen = chosen[:limit]
        headers = rate_limit_headers()
        if chosen:
            keep = [(k, v) for k, v in args.items(multi=True) if k in ("limit", "types[]")]
            base = request.base_url
            next_url = f"{base}?{urlencode([*keep, ('max_id', chosen[-1]['id'])])}"
            prev_url = f"{base}?{urlencode([*keep, ('min_id', chosen[0]['id'])])}"
            headers["Link"] = f'<{next_url}>; rel="next", <{prev_url}>; rel="prev"'
        return Response(json.dumps(chosen), headers=headers, content_type="application/json")

    def serve_notifications(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error_response(401, "The access token is invalid")
        types = request.args.getlist("types[]")
        items = [n for n in self.notifications if not types or n["type"] in types]
        return self.page(request, items, default=40, most=80)

    def serve_tag(self, request: Request) -> Response:
        tag = request.path.rsplit("/", 1)[1].lower()
        return self.page(request, self.tags.get(tag, []), default=20, most=40)

    def fail_next(self, path: str, status: int, headers: dict | None = None) -> None:
        """The next request to ``path`` fails with ``status`` (later ones are served again)."""
        message = {429: "Too many requests", 500: "Internal server error"}.get(status, "Denied")
        self.server.expect_oneshot_request(path).respond_with_response(
            error_response(status, message, headers)
        )

    def since_ids(self, path: str) -> list[str | None]:
        return [args.get("since_id") for p, args in self.requests if p == path]


def rate_limit_headers() -> dict[str, str]:
    """The X-RateLimit-* headers Mastodon sends on every API response (reset: window end)."""
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    return {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "299",
        "X-RateLimit-Reset": reset.isoformat().replace("+00:00", ".000000Z"),
    }


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(
        json.dumps({"error": message}),
        status=status,
        headers=headers or {},
        content_type="application/json",
    )


@pytest.fixture
def instance(httpserver: HTTPServer) -> FakeInstance:
    return FakeInstance(httpserver)


def source(instance: FakeInstance, **options) -> MastodonSource:
    options.setdefault("hashtags", ["schools"])
    return MastodonSource(name="masto", api_base_url=instance.url, access_token=TOKEN, **options)


def messages(engine) -> list[Message]:
    with read_session(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.received_at)))


def state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, "masto")


def test_first_sync_stores_mentions_and_hashtag_posts(db_engine, settings, instance):
    shared = instance.status(
        "parent@other.example",
        '<p>@district the <a href="https://district.example/tags/schools">#schools</a> bus '
        "was late again</p>",
        minute=1,
        tags=("schools",),
    )
    instance.mention(shared)
    instance.post("schools", shared)
    instance.mention(instance.status("teacher", "<p>Thanks for the snow day notice</p>", 2))
    instance.post("schools", instance.status("neighbour@town.example", "<p>Board meeting?</p>"))

    result = sync_source(db_engine, source(instance), settings)

    assert (result.error, result.fetched, result.new) == (None, 3, 3)
    rows = messages(db_engine)
    by_author = {m.author: m for m in rows}
    assert set(by_author) == {"parent@other.example", "teacher", "neighbour@town.example"}
    bus = by_author["parent@other.example"]
    assert bus.external_id == shared["uri"]
    assert bus.body == "@district the #schools bus was late again"
    assert bus.body_html_stripped and bus.source_kind == "social"
    assert bus.received_at == T0 + timedelta(minutes=1)
    assert bus.meta["url"] == shared["url"] and bus.meta["visibility"] == "public"
    assert bus.meta["language"] == "en" and bus.meta["tags"] == ["schools"]
    assert (bus.meta["replies_count"], bus.meta["reblogs_count"], bus.meta["favourites_count"]) == (
        1,
        2,
        3,
    )
    assert bus.meta["via"] == ["notification:mention", "tag:schools"]
    newest_note = instance.notifications[-1]["id"]
    newest_tag = max(s["id"] for s in instance.tags["schools"])
    assert state(db_engine).cursor == {"mentions": newest_note, "tag:schools": newest_tag}


def test_incremental_sync_asks_since_the_cursor_and_a_rerun_adds_nothing(
    db_engine, settings, instance
):
    instance.mention(instance.status("parent", "<p>first</p>"))
    instance.post("schools", instance.status("parent", "<p>tagged</p>"))
    connector = source(instance)
    assert sync_source(db_engine, connector, settings).new == 2
    cursor = state(db_engine).cursor

    rerun = sync_source(db_engine, connector, settings)
    assert (rerun.error, rerun.fetched, rerun.new) == (None, 0, 0)
    assert instance.since_ids("/api/v1/notifications")[-1] == cursor["mentions"]
    assert instance.since_ids("/api/v1/timelines/tag/schools")[-1] == cursor["tag:schools"]

    later = instance.mention(instance.status("parent", "<p>second</p>", minute=5))
    result = sync_source(db_engine, connector, settings)
    assert (result.fetched, result.new) == (1, 1)
    assert [m.body for m in messages(db_engine)] == ["first", "tagged", "second"]
    assert state(db_engine).cursor == {
        "mentions": later["id"],
        "tag:schools": cursor["tag:schools"],
    }
    # A new connector (a restarted worker) with the stored cursor asks the same way.
    assert sync_source(db_engine, source(instance), settings).new == 0
    assert len(messages(db_engine)) == 3


def test_paging_follows_link_headers_and_keeps_since_id(db_engine, settings, instance):
    for minute in range(5):
        instance.mention(instance.status("parent", f"<p>old {minute}</p>", minute))
    connector = source(instance, hashtags=[], page_limit=2)
    assert sync_source(db_engine, connector, settings).new == 5
    first_sync = [args for _, args in instance.requests]
    notes = instance.notifications
    assert [a.get("max_id") for a in first_sync] == [
        None,
        notes[3]["id"],
        notes[1]["id"],
        notes[0]["id"],
    ]
    assert all(a["limit"] == "2" and a["types[]"] == "mention" for a in first_sync)

    cursor = state(db_engine).cursor["mentions"]
    instance.requests.clear()
    for minute in range(10, 15):
        instance.mention(instance.status("parent", f"<p>new {minute}</p>", minute))
    assert sync_source(db_engine, connector, settings).new == 5
    assert {args.get("since_id") for _, args in instance.requests} == {cursor}
    assert len(instance.requests) == 4  # 2 + 2 + 1 new, then an empty page at the cursor
    assert len(messages(db_engine)) == 10


def test_max_pages_bounds_the_first_sync_to_the_newest_posts(db_engine, settings, instance):
    for minute in range(6):
        instance.post("schools", instance.status("parent", f"<p>post {minute}</p>", minute))
    connector = source(instance, include_mentions=False, page_limit=2, max_pages=2)
    assert sync_source(db_engine, connector, settings).new == 4
    assert [m.body for m in messages(db_engine)] == ["post 2", "post 3", "post 4", "post 5"]
    assert state(db_engine).cursor == {"tag:schools": instance.tags["schools"][-1]["id"]}


def test_a_status_seen_via_mention_and_two_hashtags_is_stored_once(db_engine, settings, instance):
    status = instance.status("parent", "<p>#schools #lunch menu</p>", tags=("schools", "lunch"))
    instance.mention(status)
    instance.post("schools", status)
    instance.post("lunch", status)
    connector = source(instance, hashtags=["#Schools", "lunch"])
    result = sync_source(db_engine, connector, settings)
    assert (result.fetched, result.new) == (1, 1)
    [row] = messages(db_engine)
    assert row.meta["via"] == ["notification:mention", "tag:schools", "tag:lunch"]
    assert sync_source(db_engine, connector, settings).new == 0


def test_rate_limit_waits_until_the_reset_time_then_succeeds(db_engine, settings, instance):
    instance.mention(instance.status("parent", "<p>hello</p>"))
    now = datetime.now(UTC).replace(microsecond=0)
    instance.fail_next(
        "/api/v1/notifications",
        429,
        {
            "Date": email.utils.format_datetime(now, usegmt=True),
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": (now + timedelta(seconds=7)).isoformat(),
        },
    )
    slept: list[float] = []
    result = sync_source(
        db_engine, source(instance), settings, sleep=slept.append, rand=lambda: 0.0
    )
    assert (result.error, result.new) == (None, 1)
    assert len(slept) == 1 and 6.0 < slept[0] <= 7.0  # the server's reset, not the backoff


def test_rate_limit_honours_retry_after(db_engine, settings, instance):
    instance.post("schools", instance.status("parent", "<p>hello</p>"))
    instance.fail_next("/api/v1/timelines/tag/schools", 429, {"Retry-After": "12"})
    slept: list[float] = []
    connector = source(instance, include_mentions=False)
    result = sync_source(db_engine, connector, settings, sleep=slept.append, rand=lambda: 0.0)
    assert (result.error, result.new, slept) == (None, 1, [12.0])


def test_server_error_is_retried_with_backoff(db_engine, settings, instance):
    instance.mention(instance.status("parent", "<p>hello</p>"))
    instance.fail_next("/api/v1/notifications", 500)
    slept: list[float] = []
    result = sync_source(
        db_engine, source(instance), settings, sleep=slept.append, rand=lambda: 0.5
    )
    assert (result.error, result.new) == (None, 1)
    # The runner's backoff, not the rate-limit reset (5 minutes) every response carries.
    assert slept == [backoff_delay(1, settings, None, lambda: 0.5)]


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_are_fatal_without_retry(db_engine, settings, instance, status):
    instance.mention(instance.status("parent", "<p>hello</p>"))
    connector = source(instance)
    sync_source(db_engine, connector, settings)
    cursor = state(db_engine).cursor
    instance.mention(instance.status("parent", "<p>unseen</p>", 3))
    instance.requests.clear()
    instance.fail_next("/api/v1/notifications", status)
    slept: list[float] = []
    result = sync_source(db_engine, connector, settings, sleep=slept.append)
    assert result.error and "FatalError" in result.error and "access token" in result.error
    assert slept == [] and instance.requests == []  # the one failed request was not repeated
    st = state(db_engine)
    assert st.cursor == cursor and st.last_error == result.error and st.consecutive_failures == 1
    assert len(messages(db_engine)) == 1


def test_an_unreachable_instance_is_retried(db_engine, settings):
    connector = MastodonSource("masto", f"http://127.0.0.1:{free_port()}", access_token=TOKEN)
    slept: list[float] = []
    result = sync_source(db_engine, connector, settings, sleep=slept.append)
    assert result.error and result.error.startswith("RetryableError")
    assert "cannot reach the instance" in result.error
    assert len(slept) == settings.sync_max_attempts - 1


def test_a_revoked_token_is_reported_as_fatal(instance):
    connector = MastodonSource("masto", instance.url, access_token="revoked")
    with pytest.raises(FatalError, match=r"HTTP 401 .*The access token is invalid"):
        connector.fetch(None)


def test_html_reblogs_own_posts_and_malformed_items(db_engine, settings, instance):
    hostile = instance.status(
        "parent",
        "<p>Pickup <script>alert('x')</script>moved to <b>3pm</b></p><style>p{}</style>",
        spoiler_text="schedule",
    )
    instance.mention(hostile)
    original = instance.status("coach@club.example", "<p>Game moved to Friday</p>", 4)
    instance.post("schools", instance.status("parent", "", 5, reblog=original))
    instance.post("schools", instance.status("district", "<p>Our own announcement</p>", 6))
    instance.mention(None)  # the status was deleted
    instance.mention(instance.status("parent", "<p>no date</p>", created_at="not a date"))
    instance.mention(instance.status("parent", "<p>no author</p>", account=None))
    instance.post("schools", instance.status("teacher", "<p>still here</p>", 9))

    connector = source(instance, own_account="@district@localhost")
    result = sync_source(db_engine, connector, settings)

    assert result.error is None
    rows = {m.author: m for m in messages(db_engine)}
    assert len(messages(db_engine)) == 3
    assert set(rows) == {"parent", "coach@club.example", "teacher"}
    assert rows["parent"].body == "Pickup moved to 3pm"
    assert "alert" not in rows["parent"].body and rows["parent"].subject == "schedule"
    assert rows["coach@club.example"].external_id == original["uri"]
    assert rows["coach@club.example"].body == "Game moved to Friday"
    assert state(db_engine).cursor["mentions"] == instance.notifications[-1]["id"]


def test_configured_from_the_sources_file(monkeypatch, settings):
    monkeypatch.setenv("PULSE_MASTODON_TOKEN", "secret")
    table = {
        "name": "masto",
        "type": "mastodon",
        "api_base_url": "https://district.example/",
        "access_token_env": "PULSE_MASTODON_TOKEN",
        "hashtags": ["schools"],
    }
    built = build_source("sources.toml", table, settings)
    assert isinstance(built, MastodonSource)
    assert (built.access_token, built.api_base_url, built.kind) == (
        "secret",
        "https://district.example",
        "social",
    )


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"api_base_url": "district.example"}, "api_base_url"),
        ({"hashtags": "schools"}, "give a list"),
        ({"hashtags": ["two words"]}, "not hashtag names"),
        ({"include_mentions": False, "hashtags": []}, "nothing to read"),
        ({"access_token": None}, "access_token"),
        ({"notification_types": ["favourite"]}, "notification_types"),
        ({"page_limit": 500}, "page_limit"),
    ],
)
def test_bad_options_are_explained(options, complaint):
    arguments = {"api_base_url": "https://district.example", "access_token": TOKEN, **options}
    with pytest.raises(ValueError, match=complaint):
        MastodonSource(name="masto", **arguments)
