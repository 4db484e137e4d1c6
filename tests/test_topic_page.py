"""Topic drill-down: viewers see aggregates only, analysts the messages (audit-logged), rename."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import g
from sqlalchemy import select

from core.db import create_db_engine, migrate, read_session, write_connection, write_session
from core.messages import NewMessage, upsert_messages
from core.models import AuditLog, Message, Topic, utcnow
from dashboard.access import ROLE_KEY, USERNAME_KEY


@pytest.fixture
def app(settings, tmp_path):
    from dashboard.app import create_app

    settings = settings.model_copy(update={"dashboard_cache_dir": tmp_path / "cache"})
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    now = utcnow()
    with write_session(engine) as session:
        session.add(Topic(id=1, label="bus late route", words=[["bus", 1.0], ["late", 0.5]],
                          first_seen=now - timedelta(days=3)))  # fmt: skip
    bodies = ["The bus was late again", "<script>alert('x')</script> bus", "Autobuses tarde"]
    with write_connection(engine) as conn:
        upsert_messages(conn, [
            NewMessage("sms", "sms", f"m{i}", now - timedelta(hours=i + 1), body, f"h{i}",
                       school="Lincoln" if i else None, language="es" if i == 2 else "en")
            for i, body in enumerate(bodies)
        ])  # fmt: skip
        conn.execute(Message.__table__.update().values(topic_id=1))
    yield create_app(settings, engine), engine
    engine.dispose()


def as_user(role: str) -> None:
    g.setdefault(USERNAME_KEY, f"{role}-user")
    g.setdefault(ROLE_KEY, role)


def audit_rows(engine) -> list[tuple[str, str, str]]:
    with read_session(engine) as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
        return [(r.username, r.action, r.target_id) for r in rows]


def texts(component) -> str:
    """Every string in a rendered layout, as Dash would send it."""
    import json

    import plotly

    return json.dumps(component, cls=plotly.utils.PlotlyJSONEncoder)


def test_viewer_sees_aggregates_but_no_message_text(app):
    from dashboard.pages.topic import layout

    dash_app, engine = app
    with dash_app.server.test_request_context("/topics/1"):
        as_user("viewer")
        page = layout(topic_id="1")
    rendered = texts(page)
    assert "bus late route" in rendered
    assert "was late again" not in rendered and "Autobuses" not in rendered
    assert page["topic-no-text"] is not None
    timeline = page["topic-timeline"].figure
    assert sum(timeline.data[0].y) == 3
    by_channel = page["topic-by-channel"].figure.data[0]
    assert list(by_channel.y) == ["sms"] and list(by_channel.x) == [3]
    by_language = dict(zip(page["topic-by-language"].figure.data[0].y,
                           page["topic-by-language"].figure.data[0].x, strict=True))  # fmt: skip
    assert by_language == {"en": 2, "es": 1}
    words = page["topic-wordcloud"].figure.data[0].customdata
    assert [w[0] for w in words] == ["bus", "late"]
    assert audit_rows(engine) == []  # nothing read


def test_analyst_gets_the_messages_grid_and_every_read_is_audited(app):
    from dashboard.pages.topic import layout

    dash_app, engine = app
    with dash_app.server.test_request_context("/topics/1"):
        as_user("analyst")
        page = layout(topic_id="1")
    grid = page["topic-messages"]
    assert [r["text"] for r in grid.rowData] == [
        "The bus was late again", "<script>alert('x')</script> bus", "Autobuses tarde"]  # fmt: skip
    assert grid.rowData[0]["id"].startswith("[") and "/message/" in grid.rowData[0]["id"]
    assert grid.csvExportParams == {"fileName": "topic-1-messages.csv"}
    assert all(c.get("cellRenderer") != "markdown" for c in grid.columnDefs if c["field"] == "text")
    reads = audit_rows(engine)
    assert len(reads) == 3 and {r[:2] for r in reads} == {("analyst-user", "read_message")}


def test_rename_is_for_analysts_and_survives_in_the_header(app):
    from dashboard.pages.topic import rename

    dash_app, engine = app
    with dash_app.server.test_request_context("/topics/1"):
        as_user("viewer")
        assert rename(1, "Buses", 1)[1] == "Only analysts can rename topics."
    with dash_app.server.test_request_context("/topics/1"):
        as_user("analyst")
        header, status = rename(1, "  Bus delays ", 1)
        assert status == "Renamed to “Bus delays”." and header[0].children == "Bus delays"
        rename(2, "", 1)  # empty: back to the automatic label
    with read_session(engine) as session:
        assert session.get(Topic, 1).display_label == "bus late route"


def test_missing_and_bad_topic_ids(app):
    from dashboard.pages.topic import layout, word_messages

    dash_app, _engine = app
    with dash_app.server.test_request_context("/topics/9"):
        as_user("analyst")
        assert "no topic 9" in layout(topic_id="9").children
        assert "give a topic number" in layout(topic_id="abc").children
    href = word_messages({"points": [{"customdata": ["late", 0.5]}]}, 1)
    assert href == "/messages?window=30d&topic=1&word=late"
