"""Feed connector against a local server serving RSS 2.0 and Atom with conditional GET (304)."""

from __future__ import annotations

import email.utils
import hashlib
from datetime import UTC, datetime

import pytest
from conftest import free_port
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from core.db import read_session
from core.models import Message, SourceState
from ingestion.rss import FeedSource
from ingestion.runner import sync_source
from ingestion.sources import build_source

LAST_MODIFIED = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

RSS_HEAD = """<?xml version="1.0" encoding="{encoding}"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>Lincoln High parent forum</title>
  <link>https://forum.district.example/</link>
  <description>Latest posts</description>
"""

ITEM = """  <item>
    <title>{title}</title>
    <link>https://forum.district.example/t/{guid}</link>
    <guid isPermaLink="false">forum-{guid}</guid>
    <pubDate>{date}</pubDate>
    <dc:creator>{author}</dc:creator>
    <category>{category}</category>
    <description><![CDATA[{body}]]></description>
  </item>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>District board comments</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2026-03-02T15:00:00Z</updated>
  <link href="https://board.district.example/comments"/>
  <entry>
    <title>Budget hearing</title>
    <id>tag:board.district.example,2026:comment-17</id>
    <link href="https://board.district.example/comments/17"/>
    <published>2026-03-02T09:30:00-05:00</published>
    <updated>2026-03-02T10:00:00-05:00</updated>
    <author><name>Maria Lopez</name></author>
    <summary>Short version</summary>
    <content type="html">&lt;p&gt;Please keep the &lt;b&gt;music&lt;/b&gt; program \
&lt;script&gt;steal(document.cookie)&lt;/script&gt;funded.&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>Only updated</title>
    <id>tag:board.district.example,2026:comment-18</id>
    <updated>2026-03-02T16:45:00Z</updated>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">\
Bus <i>route 9</i> is full</div></content>
  </entry>
</feed>
"""


class FeedServer:
    """Serves one feed at /feed.xml like a real web server: ETag, Last-Modified, and a 304
    for a request whose If-None-Match or If-Modified-Since says the client is current."""

    def __init__(self, server: HTTPServer, content_type: str, validators: bool = True):
        self.server = server
        self.content_type = content_type
        self.validators = validators
        self.body = b""
        self.requests: list[dict[str, str]] = []
        self.statuses: list[int] = []
        server.expect_request("/feed.xml").respond_with_handler(self.serve)

    @property
    def url(self) -> str:
        return self.server.url_for("/feed.xml")

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    def serve(self, request: Request) -> Response:
        self.requests.append(dict(request.headers))
        response = Response(self.body, content_type=self.content_type)
        if self.validators:
            modified = email.utils.format_datetime(LAST_MODIFIED, usegmt=True)
            since = request.headers.get("If-Modified-Since")
            if request.headers.get("If-None-Match") == self.etag or (
                since and "If-None-Match" not in request.headers and since == modified
            ):
                response = Response(status=304)
            response.headers["ETag"] = self.etag
            response.headers["Last-Modified"] = modified
        self.statuses.append(response.status_code)
        return response

    def fail_next(self, status: int, body: str = "", headers: dict | None = None) -> None:
        """The next request fails with ``status``; later ones are served again."""
        self.server.expect_oneshot_request("/feed.xml").respond_with_data(
            body, status=status, headers=headers or {}
        )


def rss(items: list[dict], encoding: str = "utf-8") -> bytes:
    entries = "".join(
        ITEM.format(
            title=i["title"],
            guid=i["guid"],
            date=i.get("date", "Mon, 02 Mar 2026 09:00:00 -0500"),
            author=i.get("author", "jparent"),
            category=i.get("category", "Transportation"),
            body=i["body"],
        )
        for i in items
    )
    return (RSS_HEAD.format(encoding=encoding) + entries + "</channel>\n</rss>\n").encode(encoding)


ITEMS = [
    {"guid": 1, "title": "Bus 14 late", "body": "<p>Bus 14 was <b>late</b> again.</p>"},
    {
        "guid": 2,
        "title": "Lunch menu",
        "body": "Why is there no vegetarian option?",
        "date": "Tue, 03 Mar 2026 08:15:00 GMT",
        "author": "cook.fan",
        "category": "Food",
    },
]


@pytest.fixture
def feed(httpserver: HTTPServer) -> FeedServer:
    server = FeedServer(httpserver, "application/rss+xml; charset=utf-8")
    server.body = rss(ITEMS)
    return server


def source(url: str, **options) -> FeedSource:
    return FeedSource(name="forum", url=url, **options)


def messages(engine) -> list[Message]:
    with read_session(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.received_at)))


def state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, "forum")


def test_rss_first_sync_stores_items(db_engine, settings, feed):
    result = sync_source(db_engine, source(feed.url), settings)
    assert (result.error, result.fetched, result.new) == (None, 2, 2)
    bus, lunch = messages(db_engine)
    assert (bus.external_id, bus.subject, bus.author) == ("forum-1", "Bus 14 late", "jparent")
    assert bus.body == "Bus 14 was late again." and bus.body_html_stripped
    assert bus.received_at == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert bus.source_kind == "social" and bus.meta["tags"] == ["Transportation"]
    assert bus.meta["link"] == "https://forum.district.example/t/1"
    assert bus.meta["feed_title"] == "Lincoln High parent forum"
    assert lunch.body == "Why is there no vegetarian option?" and not lunch.body_html_stripped
    assert lunch.received_at == datetime(2026, 3, 3, 8, 15, tzinfo=UTC)
    assert state(db_engine).cursor == {
        "etag": feed.etag,
        "modified": "Mon, 02 Mar 2026 15:00:00 GMT",
    }


def test_unchanged_feed_costs_a_304_and_a_changed_one_adds_only_new_items(
    db_engine, settings, feed
):
    connector = source(feed.url)
    sync_source(db_engine, connector, settings)
    first_etag = feed.etag

    again = sync_source(db_engine, connector, settings)
    assert (again.error, again.fetched, again.new) == (None, 0, 0)
    assert feed.requests[-1]["If-None-Match"] == first_etag
    assert feed.requests[-1]["If-Modified-Since"] == "Mon, 02 Mar 2026 15:00:00 GMT"
    assert feed.statuses == [200, 304]
    assert state(db_engine).cursor["etag"] == first_etag and len(messages(db_engine)) == 2

    snow = {
        "guid": 3,
        "title": "Snow day?",
        "body": "Any news?",
        "date": "Wed, 04 Mar 2026 06:00:00 GMT",
    }
    feed.body = rss([*ITEMS, snow])
    changed = sync_source(db_engine, connector, settings)
    assert (changed.error, changed.fetched, changed.new) == (None, 3, 1)
    assert feed.statuses == [200, 304, 200]
    assert state(db_engine).cursor["etag"] == feed.etag != first_etag
    assert [m.external_id for m in messages(db_engine)][-1] == "forum-3"


def test_without_validators_a_rerun_refetches_and_adds_nothing(db_engine, settings, httpserver):
    feed = FeedServer(httpserver, "application/rss+xml", validators=False)
    feed.body = rss(ITEMS)
    connector = source(feed.url)
    assert sync_source(db_engine, connector, settings).new == 2
    assert state(db_engine).cursor == {}
    rerun = sync_source(db_engine, connector, settings)
    assert (rerun.error, rerun.fetched, rerun.new) == (None, 2, 0)
    assert "If-None-Match" not in feed.requests[-1] and len(messages(db_engine)) == 2


def test_atom_feed_content_without_script(db_engine, settings, httpserver):
    feed = FeedServer(httpserver, "application/atom+xml")
    feed.body = ATOM.encode()
    result = sync_source(db_engine, source(feed.url, kind="webform"), settings)
    assert (result.error, result.new) == (None, 2)
    budget, bus = messages(db_engine)
    assert budget.external_id == "tag:board.district.example,2026:comment-17"
    assert budget.body == "Please keep the music program funded."
    assert "steal" not in budget.body and "cookie" not in (budget.raw or "")
    assert (budget.subject, budget.author, budget.source_kind) == (
        "Budget hearing",
        "Maria Lopez",
        "webform",
    )
    assert budget.received_at == datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # published wins
    assert bus.body == "Bus route 9 is full"
    assert bus.received_at == datetime(2026, 3, 2, 16, 45, tzinfo=UTC)  # updated as fallback
    assert sync_source(db_engine, source(feed.url), settings).new == 0  # 304


def test_rate_limit_honours_retry_after(db_engine, settings, feed):
    feed.fail_next(429, "slow down", {"Retry-After": "7"})
    slept: list[float] = []
    result = sync_source(
        db_engine, source(feed.url), settings, sleep=slept.append, rand=lambda: 0.0
    )
    assert (result.error, result.new, slept) == (None, 2, [7.0])


def test_server_error_then_success(db_engine, settings, feed):
    feed.fail_next(503, "<html>maintenance</html>")
    slept: list[float] = []
    result = sync_source(db_engine, source(feed.url), settings, sleep=slept.append)
    assert (result.error, result.new, len(slept)) == (None, 2, 1)


@pytest.mark.parametrize("status", [401, 404])
def test_unauthorized_or_missing_feed_is_fatal(db_engine, settings, feed, status):
    connector = source(feed.url)
    sync_source(db_engine, connector, settings)
    cursor = state(db_engine).cursor
    feed.fail_next(status, "nope")
    slept: list[float] = []
    result = sync_source(db_engine, connector, settings, sleep=slept.append)
    assert result.error and result.error.startswith("FatalError")
    assert f"HTTP {status}" in result.error and feed.url in result.error
    assert slept == [] and len(feed.server.log) == 2  # the failed request was not repeated
    st = state(db_engine)
    assert st.cursor == cursor and st.last_error == result.error and st.consecutive_failures == 1


def test_an_unreachable_server_is_retried(db_engine, settings):
    slept: list[float] = []
    connector = source(f"http://127.0.0.1:{free_port()}/feed.xml")
    result = sync_source(db_engine, connector, settings, sleep=slept.append)
    assert result.error and result.error.startswith("RetryableError")
    assert "cannot connect" in result.error and len(slept) == settings.sync_max_attempts - 1


def test_a_page_that_is_not_a_feed_is_fatal_and_names_the_url(db_engine, settings, httpserver):
    feed = FeedServer(httpserver, "text/html; charset=utf-8")
    feed.body = b"<html><body><h1>Welcome to our school!</h1><p>Login</p></body></html>"
    slept: list[float] = []
    result = sync_source(db_engine, source(feed.url), settings, sleep=slept.append)
    assert result.error and result.error.startswith("FatalError")
    assert feed.url in result.error and "not an RSS or Atom feed" in result.error
    assert slept == [] and messages(db_engine) == []


def test_a_feed_with_broken_xml_and_no_items_is_retried(db_engine, settings, httpserver):
    feed = FeedServer(httpserver, "application/rss+xml")
    feed.body = rss(ITEMS)[: len(RSS_HEAD) - 40]  # the channel's head, cut off
    slept: list[float] = []
    result = sync_source(db_engine, source(feed.url), settings, sleep=slept.append)
    assert result.error and result.error.startswith("RetryableError") and "broken" in result.error
    assert feed.url in result.error
    assert len(slept) == settings.sync_max_attempts - 1 and state(db_engine).cursor is None


def test_odd_encodings_do_not_crash(db_engine, settings, httpserver):
    latin = FeedServer(httpserver, "application/rss+xml")  # charset only in the XML prolog
    latin.body = rss([{"guid": 1, "title": "Année scolaire", "body": "Café à 8h"}], "iso-8859-1")
    assert sync_source(db_engine, source(latin.url), settings).new == 1
    [row] = messages(db_engine)
    assert (row.subject, row.body) == ("Année scolaire", "Café à 8h")

    httpserver.clear()
    lying = FeedServer(httpserver, "text/xml; charset=utf-8")  # really windows-1252
    lying.body = rss([{"guid": 2, "title": "Niño’s class", "body": "señora"}]).replace(
        "Niño’s".encode(), "Niño’s".encode("cp1252")
    )
    result = sync_source(db_engine, source(lying.url), settings)
    assert (result.error, result.new) == (None, 1)
    assert "Ni" in messages(db_engine)[-1].subject

    httpserver.clear()
    empty = FeedServer(httpserver, "text/xml")  # no charset: us-ascii, but the title is not
    empty.body = rss([]).replace(b"Lincoln High", "Lycée Lincoln".encode())
    result = sync_source(db_engine, source(empty.url), settings)
    assert (result.error, result.fetched) == (None, 0)


def test_odd_entries_do_not_crash_the_batch(db_engine, settings, httpserver):
    feed = FeedServer(httpserver, "application/rss+xml")
    long_guid = "https://forum.district.example/t/" + "x" * 300
    feed.body = (
        b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Odd</title>
<item><title>No guid</title><link>https://forum.district.example/t/9</link>
  <pubDate>not a date</pubDate></item>
<item><title>Only a title</title></item>
<item><title>Only a title</title></item>
<item><description>Untitled &amp; undated</description></item>
<item><guid>"""
        + long_guid.encode()
        + b"""</guid><title>Long id</title></item>
<item></item>
</channel></rss>"""
    )
    before = datetime.now(UTC)
    result = sync_source(db_engine, source(feed.url), settings)
    after = datetime.now(UTC)
    assert (result.error, result.fetched, result.new) == (None, 4, 4)
    rows = {m.subject: m for m in messages(db_engine)}
    assert rows["No guid"].external_id == "https://forum.district.example/t/9"
    assert rows["Only a title"].external_id.startswith("sha256:")
    assert rows[None].body == "Untitled & undated"
    assert rows["Long id"].external_id.startswith("sha256:")
    assert rows["Long id"].meta["guid"] == long_guid
    assert all(before <= m.received_at <= after for m in rows.values())  # undated: fetch time
    assert sync_source(db_engine, source(feed.url), settings).new == 0


def test_configured_from_the_sources_file(settings):
    table = {"name": "forum", "type": "rss", "url": "https://forum.district.example/feed"}
    built = build_source("sources.toml", table, settings)
    assert isinstance(built, FeedSource) and built.kind == "social"


@pytest.mark.parametrize(
    ("options", "complaint"),
    [({"url": "forum.district.example/feed"}, "url"), ({"kind": "blog"}, "kind")],
)
def test_bad_options_are_explained(options, complaint):
    with pytest.raises(ValueError, match=complaint):
        FeedSource(**{"name": "forum", "url": "https://forum.district.example/feed", **options})
