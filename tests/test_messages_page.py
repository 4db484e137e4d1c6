"""Message list and message view: word and hour drill-downs, text as text, roles, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dash import html
from flask import g
from sqlalchemy import select

from core.db import create_db_engine, migrate, read_session, write_connection
from core.messages import NewMessage, upsert_messages
from core.models import AuditLog, utcnow
from dashboard.access import ROLE_KEY, USERNAME_KEY
from dashboard.data import MessageQuery, find_messages, word_matches

XSS = "<script>alert('pwned')</script> the bus never came"


@pytest.fixture
def app(settings, tmp_path):
    from dashboard.app import create_app

    settings = settings.model_copy(update={"dashboard_cache_dir": tmp_path / "cache"})
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    now = utcnow()
    bodies = [XSS, "Buses are late", "El autobús no llegó", "Lunch was cold", "busy day, no ride"]
    with write_connection(engine) as conn:
        upsert_messages(conn, [
            NewMessage("email", "inbox", f"m{i}", now - timedelta(minutes=10 * (i + 1)), body,
                       f"h{i}", author="parent@example.org", raw=f"From: parent\n\n{body}")
            for i, body in enumerate(bodies)
        ])  # fmt: skip
    yield create_app(settings, engine), engine, settings
    engine.dispose()


def as_user(role: str) -> None:
    g.setdefault(USERNAME_KEY, f"{role}-user")
    g.setdefault(ROLE_KEY, role)


def audits(engine) -> list[tuple[str, str]]:
    with read_session(engine) as session:
        return [(r.action, r.target_id) for r in session.scalars(select(AuditLog))]


def test_word_matches_the_merged_forms_of_the_cloud_word():
    assert word_matches("Buses are late", "bus") and word_matches("the bus", "buses")
    assert word_matches("El autobús no llegó", "autobuses")
    assert not word_matches("busy day", "bus")


def test_word_drill_down_lists_messages_with_any_form(app):
    _app, engine, settings = app
    now = utcnow()
    query = MessageQuery.from_query({"word": "bus"}, now, settings)
    assert [m.body for m in find_messages(engine, query)] == [XSS, "Buses are late"]
    spanish = MessageQuery.from_query({"word": "autobús"}, now, settings)
    assert [m.body for m in find_messages(engine, spanish)] == ["El autobús no llegó"]


def test_hour_and_day_parameters_select_a_local_span(settings):
    now = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
    hour = MessageQuery.from_query({"hour": "2026-03-04T08:00", "topic": "3"}, now, settings)
    assert (hour.since, hour.until) == (datetime(2026, 3, 4, 13, tzinfo=UTC),
                                        datetime(2026, 3, 4, 14, tzinfo=UTC))  # fmt: skip
    assert hour.topic_id == 3
    day = MessageQuery.from_query({"day": "2026-03-03"}, now, settings)
    assert day.until - day.since == timedelta(days=1) and day.since.hour == 5
    with pytest.raises(ValueError, match="hour 'noon'"):
        MessageQuery.from_query({"hour": "noon"}, now, settings)
    with pytest.raises(ValueError, match="topic 'x'"):
        MessageQuery.from_query({"topic": "x"}, now, settings)


def test_messages_page_is_for_analysts_and_audits_what_it_shows(app):
    from dashboard.pages.messages import layout

    dash_app, engine, _settings = app
    with dash_app.server.test_request_context("/messages"):
        as_user("viewer")
        denied = layout(word="bus")
    assert denied.id == "messages-denied" and audits(engine) == []
    with dash_app.server.test_request_context("/messages"):
        as_user("analyst")
        page = layout(word="bus")
        bad = layout(hour="noon")
    rows = page["messages-grid"].rowData
    assert [r["text"] for r in rows] == [XSS, "Buses are late"]  # a plain string cell
    assert "containing “bus”" in page["messages-title"].children
    assert sorted(a[1] for a in audits(engine)) == sorted(str(r["id"])[1:].split("]")[0]
                                                          for r in rows)  # fmt: skip
    assert "hour 'noon'" in bad.children


def test_message_view_shows_script_literally_and_raw_only_to_admins(app):
    from dashboard.pages.message import layout

    dash_app, engine, _settings = app
    with dash_app.server.test_request_context("/message/1"):
        as_user("viewer")
        assert layout(message_id="1").id == "message-denied"
    with dash_app.server.test_request_context("/message/1"):
        as_user("analyst")
        page = layout(message_id="1")
    body = page["message-body"]
    assert isinstance(body, html.Pre) and body.children == XSS  # text, never parsed as HTML
    with pytest.raises(KeyError):
        page["message-raw"]
    assert "parent@example.org" not in str(page.to_plotly_json())
    with dash_app.server.test_request_context("/message/1"):
        as_user("admin")
        admin = layout(message_id="1")
        missing = layout(message_id="999")
    assert admin["message-raw"].children.endswith(XSS)
    assert "parent@example.org" in admin["message-author"].children
    assert missing.id == "message-missing"
    assert audits(engine) == [("read_message", "1"), ("read_message", "1"),
                              ("read_raw_message", "1")]  # fmt: skip
