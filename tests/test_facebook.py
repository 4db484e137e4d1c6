"""Facebook Page source against a local server speaking the Graph API's JSON and cursor paging."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from core.db import read_session
from core.models import Message, SourceState
from ingestion.facebook import FacebookPageSource
from ingestion.runner import sync_source

PAGE = "104729000000001"
TOKEN = "EAAGm0PX4ZCpsBAPageToken"
VERSION = "v21.0"


def fb_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def graph_error_body(code: int, message: str, subcode: int | None = None, **extra) -> dict:
    error = {"message": message, "type": "OAuthException", "code": code, **extra}
    if subcode:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AbCdEfGhIjK"
    return {"error": error}


def _cursor(index: int) -> str:
    return base64.b64encode(f"QVFI:{index}".encode()).decode()


class FakeGraph:
    """/{page-id}/feed and /{post-id}/comments as the Graph API serves them, pages of two."""

    def __init__(self, server: HTTPServer, page_size: int = 2) -> None:
        self.server = server
        self.page_size = page_size
        self.token = TOKEN
        self.posts: dict[str, dict] = {}
        self.comments: dict[str, list[dict]] = {}
        self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
        server.expect_request(
            re.compile(rf"/{VERSION}/{PAGE}/feed"), method="GET"
        ).respond_with_handler(self.feed)
        server.expect_request(
            re.compile(rf"/{VERSION}/{PAGE}_\d+/comments"), method="GET"
        ).respond_with_handler(self.comment_edge)

    def at(self, minutes: float) -> datetime:
        return self.base + timedelta(minutes=minutes)

    def post(self, number: int, minutes: float, message: str, author: str = PAGE) -> str:
        post_id = f"{PAGE}_{number}"
        self.posts[post_id] = {
            "id": post_id,
            "message": message,
            "created_time": fb_time(self.at(minutes)),
            "updated_time": fb_time(self.at(minutes)),
            "from": {"name": "Lincoln Unified" if author == PAGE else "A Visitor", "id": author},
            "permalink_url": f"https://www.facebook.com/{PAGE}/posts/{number}",
        }
        self.comments[post_id] = []
        return post_id

    def comment(
        self, post_id: str, number: int, minutes: float, message: str | None, author: str = "7001"
    ) -> str:
        comment_id = f"{post_id.split('_')[1]}_{number}"
        comment = {
            "id": comment_id,
            "created_time": fb_time(self.at(minutes)),
            "from": {"name": "Parent Name", "id": author},
            "permalink_url": f"https://www.facebook.com/{PAGE}/posts/x?comment_id={number}",
        }
        if message is not None:
            comment["message"] = message
        self.comments[post_id].append(comment)
        post = self.posts[post_id]
        post["updated_time"] = max(post["updated_time"], comment["created_time"])
        return comment_id

    def _denied(self, request: Request) -> Response | None:
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            return None
        body = graph_error_body(
            190, "Error validating access token: Session has expired on Tuesday.", subcode=463
        )
        return Response(json.dumps(body), status=400, content_type="application/json")

    def _page(self, request: Request, items: list[dict]) -> Response:
        fields = request.args["fields"].split(",")
        limit = min(int(request.args.get("limit", 25)), self.page_size)
        after = request.args.get("after")
        start = int(base64.b64decode(after).decode().split(":")[1]) if after else 0
        chunk = items[start : start + limit]
        body: dict = {"data": [{k: v for k, v in i.items() if k in fields} for i in chunk]}
        if chunk:
            end = start + len(chunk)
            body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(end)}}
            if end < len(items):
                args = {**request.args.to_dict(), "after": _cursor(end), "access_token": TOKEN}
                body["paging"]["next"] = self.server.url_for(request.path) + "?" + urlencode(args)
        return Response(json.dumps(body), content_type="application/json")

    def feed(self, request: Request) -> Response:
        denied = self._denied(request)
        newest_first = sorted(self.posts.values(), key=lambda p: p["created_time"], reverse=True)
        return denied or self._page(request, newest_first)

    def comment_edge(self, request: Request) -> Response:
        denied = self._denied(request)
        post_id = request.path.split("/")[2]
        ordered = sorted(self.comments[post_id], key=lambda c: c["created_time"])
        if request.args.get("order") == "reverse_chronological":
            ordered.reverse()
        return denied or self._page(request, ordered)

    def requests(self, edge: str) -> list[Request]:
        return [r for r, _ in self.server.log if r.path.endswith(edge)]


@pytest.fixture
def graph(httpserver: HTTPServer) -> FakeGraph:
    return FakeGraph(httpserver)


@pytest.fixture
def source(httpserver: HTTPServer) -> FacebookPageSource:
    return FacebookPageSource(
        name="fb", page_id=PAGE, access_token=TOKEN, base_url=httpserver.url_for(f"/{VERSION}")
    )


def stored(engine) -> dict[str, Message]:
    with read_session(engine) as session:
        rows = session.scalars(select(Message).where(Message.source_name == "fb")).all()
        return {m.external_id: m for m in rows}


def state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, "fb")


def seed(graph: FakeGraph) -> dict[str, str]:
    """Three posts by the Page (two feed pages); the newest post's comments span three pages."""
    old = graph.post(1, 0, "Welcome back to school!")
    mid = graph.post(2, 30, "Bus routes for next week")
    new = graph.post(3, 60, "Snow day tomorrow")
    ids = {
        "old": graph.comment(old, 11, 10, "Thanks for the update"),
        "mid": graph.comment(mid, 21, 40, "Route 7 is missing"),
        "late": graph.comment(new, 31, 70, "Will buses run Thursday?"),
        "reply": graph.comment(new, 32, 80, "Same question about route 4"),
        "page": graph.comment(new, 33, 90, "Yes, all routes run Thursday.", author=PAGE),
        "sticker": graph.comment(new, 34, 95, ""),
        "photo": graph.comment(new, 35, 100, None),
        "last": graph.comment(new, 36, 110, "Thank you!"),
    }
    return ids


def test_first_sync_reads_all_comments_across_pages(db_engine, settings, graph, source):
    ids = seed(graph)
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 5
    rows = stored(db_engine)
    assert set(rows) == {ids[k] for k in ("old", "mid", "late", "reply", "last")}
    late = rows[ids["late"]]
    assert late.body == "Will buses run Thursday?" and late.author == "7001"
    assert late.received_at == graph.at(70) and late.source_kind == "social"
    assert late.meta == {
        "permalink_url": f"https://www.facebook.com/{PAGE}/posts/x?comment_id=31",
        "post_id": f"{PAGE}_3",
    }
    assert "Parent Name" not in json.dumps([m.meta for m in rows.values()])
    assert state(db_engine).cursor == {"since": int(graph.at(110).timestamp())}
    # The feed spans two pages and the newest post's comments three; the token never in a URL.
    assert len(graph.requests("/feed")) == 2
    newest_post = [r for r in graph.requests("/comments") if f"{PAGE}_3/" in r.path]
    assert len(newest_post) == 3
    assert all(r.args["filter"] == "stream" for r in graph.requests("/comments"))
    assert all(r.args["order"] == "reverse_chronological" for r in newest_post)
    assert all("access_token" not in r.args for r, _ in graph.server.log)


def test_incremental_sync_stores_only_new_comments_and_a_rerun_adds_nothing(
    db_engine, settings, graph, source
):
    seed(graph)
    sync_source(db_engine, source, settings)
    graph.server.log.clear()
    newest = f"{PAGE}_3"
    fresh = [graph.comment(newest, 40 + i, 140 + i, f"New question {i}") for i in range(3)]
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 3
    assert fresh[0] in stored(db_engine) and len(stored(db_engine)) == 8
    # Only the post updated since the watermark is read, and only down to the watermark.
    read = graph.requests("/comments")
    assert {r.path.split("/")[2] for r in read} == {newest}
    assert len(read) == 3  # newest first: [142, 141], [140, 110], [100: before the overlap]
    assert state(db_engine).cursor == {"since": int(graph.at(142).timestamp())}
    again = sync_source(db_engine, source, settings)
    assert again.error is None and again.new == 0 and len(stored(db_engine)) == 8


def test_a_new_comment_on_an_old_post_is_found(db_engine, settings, graph, source):
    seed(graph)
    sync_source(db_engine, source, settings)
    oldest = f"{PAGE}_1"  # on the second page of the feed
    late = graph.comment(oldest, 12, 200, "Is the supply list still the same?")
    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == 1
    assert stored(db_engine)[late].meta["post_id"] == oldest


def test_visitor_posts_are_stored_when_asked_but_never_the_pages_own(
    db_engine, settings, graph, httpserver
):
    seed(graph)
    visitor = graph.post(4, 150, "Who do I call about a bus driver?", author="7002")
    source = FacebookPageSource(
        name="fb",
        page_id=PAGE,
        access_token=TOKEN,
        base_url=httpserver.url_for(f"/{VERSION}"),
        include_posts=True,
    )
    sync_source(db_engine, source, settings)
    rows = stored(db_engine)
    assert rows[visitor].author == "7002" and rows[visitor].meta["post_id"] == visitor
    assert not {f"{PAGE}_1", f"{PAGE}_2", f"{PAGE}_3"} & set(rows)


RATE_LIMITS = {
    "code4-http403": (403, graph_error_body(4, "(#4) Application request limit reached"), {}),
    "code17-http400": (400, graph_error_body(17, "(#17) User request limit reached"), {}),
    "code32-http403": (403, graph_error_body(32, "(#32) Page request limit reached"), {}),
    "http429-retry-after": (429, graph_error_body(4, "(#4) Too many calls"), {"Retry-After": "7"}),
}


@pytest.mark.parametrize(("status", "body", "headers"), RATE_LIMITS.values(), ids=RATE_LIMITS)
def test_a_rate_limit_error_is_retried(db_engine, settings, graph, source, status, body, headers):
    seed(graph)
    graph.server.expect_oneshot_request(f"/{VERSION}/{PAGE}/feed").respond_with_json(
        body, status=status, headers=headers
    )
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append, rand=lambda: 0.0)
    assert result.error is None and result.new == 5
    assert delays == [7.0 if headers else 0.0]


def test_a_long_rate_limit_ends_the_sync_for_a_later_interval(db_engine, settings, graph, source):
    seed(graph)
    usage = {PAGE: [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 12}]}
    graph.server.expect_oneshot_request(f"/{VERSION}/{PAGE}/feed").respond_with_json(
        graph_error_body(32, "(#32) Page request limit reached"),
        status=400,
        headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
    )
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append)
    assert delays == [] and "rate limited" in result.error and "32" in result.error
    assert state(db_engine).cursor is None and stored(db_engine) == {}
    assert sync_source(db_engine, source, settings).new == 5


@pytest.mark.parametrize(
    "failure",
    [
        {
            "response_json": graph_error_body(
                2, "An unexpected error has occurred. Please retry.", is_transient=True
            ),
            "status": 500,
        },
        {"response_data": "<html>Bad Gateway</html>", "status": 502},
    ],
    ids=["graph-500", "proxy-502"],
)
def test_a_server_error_is_retried(db_engine, settings, graph, source, failure):
    seed(graph)
    handler = graph.server.expect_oneshot_request(re.compile(rf"/{VERSION}/{PAGE}_3/comments"))
    handler.respond_with_response(
        Response(
            json.dumps(failure["response_json"])
            if "response_json" in failure
            else failure["response_data"],
            status=failure["status"],
        )
    )
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append)
    assert result.error is None and result.new == 5 and len(delays) == 1


def test_an_expired_token_is_fatal_and_keeps_the_cursor(db_engine, settings, graph, source):
    seed(graph)
    sync_source(db_engine, source, settings)
    cursor = state(db_engine).cursor
    graph.token = "a-renewed-token-pulse-does-not-have"
    graph.server.log.clear()
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append)
    assert delays == [] and len(graph.server.log) == 1
    st = state(db_engine)
    assert "190" in st.last_error and "renew the Page token" in st.last_error
    assert TOKEN not in st.last_error
    assert st.cursor == cursor and st.consecutive_failures == 1 and result.new == 0


def test_odd_comments_do_not_stop_the_batch_and_html_is_stored_harmlessly(
    db_engine, settings, graph, source
):
    post = graph.post(1, 0, "Open house")
    html = graph.comment(
        post, 1, 5, "<p>Great <b>night</b></p><script>alert('x')</script><img src=x onerror=y>"
    )
    graph.comments[post].append({"id": "1_2", "created_time": "yesterday", "message": "odd"})
    graph.comments[post].append({"created_time": fb_time(graph.at(7)), "message": "no id"})
    fine = graph.comment(post, 4, 8, "Loved it")
    result = sync_source(db_engine, source, settings)
    assert result.error is None
    rows = stored(db_engine)
    assert set(rows) == {html, fine}
    assert rows[html].body == "Great night" and rows[html].body_html_stripped
    assert "alert" not in rows[html].body and "<script>" in rows[html].raw


def test_bad_options_are_refused_and_the_token_is_not_in_the_repr():
    with pytest.raises(ValueError, match="numeric Page ID"):
        FacebookPageSource(name="fb", page_id="lincolnunified", access_token=TOKEN)
    with pytest.raises(ValueError, match="access_token"):
        FacebookPageSource(name="fb", page_id=PAGE, access_token=" ")
    with pytest.raises(ValueError, match="max_pages"):
        FacebookPageSource(name="fb", page_id=PAGE, access_token=TOKEN, max_pages=0)
    assert TOKEN not in repr(FacebookPageSource(name="fb", page_id=PAGE, access_token=TOKEN))
