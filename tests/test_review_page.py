"""Daily review page: the digest's numbers, the CSV and PNG exports, who reads which messages.

The database is the digest tests' seeded district (see tests/test_digest.py): the review of
Tuesday 10 March 2026 must say what that day's digest says.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import date

import pytest
from flask import g
from plotly.utils import PlotlyJSONEncoder
from sqlalchemy import select

from alerts.digest import digest_data, word_cloud_png
from core.db import read_session
from core.models import AuditLog
from dashboard.access import ROLE_KEY
from tests.dash_client import call_callback, login, make_dashboard, response_of
from tests.test_digest import DAY, OTHER_BUS, PII, SCRIPT, seed

CONTENT = [("review-content", "children"), ("review-url", "search"),
           ("review-png-button", "disabled")]  # fmt: skip
NOTABLE = [PII, SCRIPT, OTHER_BUS[0]]  # the day's three most negative, not risk-flagged


@pytest.fixture
def review_app(settings, tmp_path):
    settings = settings.model_copy(update={"dashboard_cache_dir": tmp_path / "cache"})
    app, engine = make_dashboard(settings)
    seed(engine)
    yield app, engine, settings
    engine.dispose()


def show(client, day: date = DAY):
    return call_callback(client, CONTENT, [("review-date", "date", day.isoformat())])


def shown(reply) -> str:
    """A callback reply's values as JSON text (unescaped, so message text can be searched)."""
    assert reply.status_code == 200, reply.text[:300]
    return json.dumps(reply.get_json()["response"], ensure_ascii=False)


def as_json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def audited(engine) -> list[tuple[str, str]]:
    with read_session(engine) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "review_notable"))
        return [(row.username, row.target_id) for row in rows]


def test_the_review_says_what_the_digest_says(review_app):
    from dashboard.pages.review import review_data, review_sections

    app, engine, settings = review_app
    expected = digest_data(engine, settings, DAY)
    with app.server.test_request_context("/review"):
        setattr(g, ROLE_KEY, "viewer")
        assert review_data(DAY) == expected
        page = json.dumps(review_sections(DAY, analyst=False), cls=PlotlyJSONEncoder)
    assert expected.volume.n == 26 and f"{expected.volume.n:,} messages" in page
    for topic in expected.top_topics + expected.channels:
        assert f'"{topic.name}"' in page
    assert "Water main break" in page  # the new topic
    assert "Spike: Bus routes" in page  # the alert that fired
    assert "3 notably negative messages" in page


def test_the_csv_is_the_days_topic_table(review_app):
    from dashboard.pages.review import export_csv, topic_csv

    app, engine, settings = review_app
    data = digest_data(engine, settings, DAY)
    rows = list(csv.DictReader(io.StringIO(topic_csv(data))))
    assert [r["topic"] for r in rows] == [c.name for c in data.top_topics]  # water is in the top
    by_name = {r["topic"]: r for r in rows}
    bus = next(c for c in data.top_topics if c.name == "Bus routes")
    assert by_name["Bus routes"]["messages"] == str(bus.n)
    assert float(by_name["Bus routes"]["usual"]) == pytest.approx(bus.usual, abs=0.05)
    assert float(by_name["Bus routes"]["change_pct"]) == pytest.approx(100 * bus.change, abs=0.05)
    assert by_name["Bus routes"]["new"] == "False" and by_name["Water main break"]["new"] == "True"
    water = by_name["Water main break"]  # usual 0 on the comparable days: no relative change
    assert (water["usual"], water["change_pct"]) == ("0.0", "")
    with app.server.test_request_context("/review"):
        setattr(g, ROLE_KEY, "viewer")
        download = export_csv(1, DAY.isoformat())
    assert download["filename"] == "pulse-topics-2026-03-10.csv"
    assert download["content"] == topic_csv(data)


def test_the_png_is_the_digests_word_cloud(review_app):
    from dashboard.pages.review import export_png

    app, engine, settings = review_app
    words = digest_data(engine, settings, DAY).words
    with app.server.test_request_context("/review"):
        setattr(g, ROLE_KEY, "viewer")
        download = export_png(1, DAY.isoformat())
    png = base64.b64decode(download["content"])
    assert download["filename"] == "pulse-words-2026-03-10.png" and download["base64"]
    assert png.startswith(b"\x89PNG") and png == word_cloud_png(words)


def test_a_viewer_sees_counts_and_no_message_text(review_app):
    app, engine, _settings = review_app
    client = app.server.test_client()
    login(client, "vera")
    reply = show(client)
    assert response_of(reply, "review-url", "search") == "?date=2026-03-10"
    assert response_of(reply, "review-png-button", "disabled") is False
    text = shown(reply)
    assert "3 notably negative messages" in text
    for body in NOTABLE:
        assert as_json(body) not in text
    assert "(555) 123-4567" not in text and "SECRETRISK" not in text
    assert audited(engine) == []


def test_an_analyst_reads_the_notable_messages_and_each_read_is_audited(review_app):
    app, engine, settings = review_app
    negative = digest_data(engine, settings, DAY).negative
    client = app.server.test_client()
    login(client, "anna")
    reply = show(client)
    text = shown(reply)
    for message in negative:  # as the digest shows them, linked to the full message
        assert as_json(message.text) in text and f"/message/{message.message_id}" in text
    assert as_json(SCRIPT) in text  # as text: the <script> body is a plain string
    assert "(555) 123-4567" not in text and "[phone]" in text  # masked, as in the email
    assert "SECRETRISK" not in text and "SECRETREVIEW" not in text  # risk text stays in the queue
    reads = audited(engine)
    assert len(reads) == 3 and {user for user, _ in reads} == {"anna"}
    assert sorted(int(target) for _, target in reads) == sorted(m.message_id for m in negative)
    show(client)
    assert len(audited(engine)) == 6  # every showing is a read


def test_the_date_defaults_to_yesterday_and_a_bad_one_is_named(review_app):
    from alerts.digest import yesterday
    from dashboard.pages.review import layout, parse_day

    app, _engine, settings = review_app
    with pytest.raises(ValueError, match="date 'March 10'"):
        parse_day("March 10", DAY)
    assert parse_day("", DAY) == DAY and parse_day("2026-03-09", DAY) == date(2026, 3, 9)
    with app.server.test_request_context("/review"):
        setattr(g, ROLE_KEY, "viewer")
        page = layout()
        assert page["review-date"].date == yesterday(settings).isoformat()
        assert page["review-date-error"].is_open is False
        bad = layout(date="March 10")
        assert (
            bad["review-date-error"].is_open is True
            and "March 10" in bad["review-date-error"].children
        )
        assert layout(date="2026-03-10")["review-date"].date == "2026-03-10"


def test_an_empty_day_says_so_and_offers_no_png(review_app):
    app, _engine, _settings = review_app
    client = app.server.test_client()
    login(client, "vera")
    reply = show(client, date(2026, 1, 5))
    assert "No message arrived on this day." in reply.text
    assert response_of(reply, "review-png-button", "disabled") is True
