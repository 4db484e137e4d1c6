"""Dashboard: figure builders, the overview callback, the health endpoint."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from dash_client import login, make_dashboard
from pydantic import SecretStr

from core.db import write_connection
from core.messages import NewMessage, upsert_messages
from core.models import utcnow
from core.queries import data_version, hourly_volume, volume_stats
from dashboard.figures import volume_figure


def add(engine, n: int, kind: str, start: datetime) -> None:
    messages = [
        NewMessage(kind, kind, f"{kind}{start.timestamp()}-{i}", start + timedelta(minutes=i),
                   f"body {i}", f"h{i}")
        for i in range(n)
    ]  # fmt: skip
    with write_connection(engine) as conn:
        upsert_messages(conn, messages)


def test_queries_count_by_hour_and_channel(db_engine):
    hour = datetime(2026, 3, 2, 12, tzinfo=UTC)
    add(db_engine, 30, "sms", hour)  # 12:00-12:29
    add(db_engine, 70, "email", hour + timedelta(minutes=30))  # 12:30-13:39
    volume = hourly_volume(db_engine, hour, hour + timedelta(hours=3))
    counts = {(r.hour.hour, r.source_kind): r.n for r in volume.itertuples()}
    assert counts == {(12, "sms"): 30, (12, "email"): 30, (13, "email"): 40}
    assert str(volume["hour"].dt.tz) == "UTC"
    stats = volume_stats(db_engine, hour + timedelta(minutes=100))
    assert (stats.total, stats.last_24h) == (100, 100)
    assert stats.last_hour == 59 and stats.latest_received_at == hour + timedelta(minutes=99)
    version = data_version(db_engine)
    add(db_engine, 1, "social", hour)
    assert data_version(db_engine) != version


def test_volume_figure_stacks_channels_in_local_time(settings):
    volume = pd.DataFrame(
        {"hour": pd.to_datetime(["2026-03-02 12:00", "2026-03-02 12:00", "2026-03-02 13:00"],
                                utc=True),
         "source_kind": ["sms", "email", "sms"], "n": [3, 4, 5]}
    )  # fmt: skip
    figure = volume_figure(volume, settings.tz)
    assert figure.layout.barmode == "stack"
    traces = {t.name: t for t in figure.data}
    assert set(traces) == {"sms", "email"}
    assert list(traces["sms"].y) == [3, 5]
    assert pd.Timestamp(traces["sms"].x[0]).hour == 7  # 12:00 UTC is 07:00 in New York


@pytest.fixture
def app(settings):
    return make_dashboard(settings.model_copy(update={"secret_key": SecretStr("test")}))


def test_health_endpoint_and_pages_respond(app):
    dash_app, engine = app
    add(engine, 3, "email", utcnow() - timedelta(minutes=5))
    client = dash_app.server.test_client()
    health = client.get("/health").get_json()  # open: monitoring needs no sign-in
    assert health["status"] == "ok" and health["messages"] == 3
    login(client, "vera")
    page = client.get("/")
    assert page.status_code == 200
    # offline-first: every stylesheet and script comes from this server, none from a CDN
    external = re.findall(r'<(?:link|script)[^>]+(?:href|src)="(https?://[^"]+)"', page.text)
    assert external == []
    assert "bootstrap.min.css" in page.text
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and b"Pulse" in layout.data


def test_sources_page_lists_health_with_down_sources_first(app, settings):
    from test_runner import ListSource

    from dashboard.pages.sources import refresh_sources
    from ingestion.runner import sync_source

    dash_app, engine = app
    sync_source(engine, ListSource(["a", "b"]), settings)
    broken = ListSource([], fail_with=PermissionError("bad password"))
    broken.name = "inbox"
    for _ in range(settings.source_down_intervals):
        sync_source(engine, broken, settings)
    with dash_app.server.test_request_context("/sources"):
        rows = refresh_sources(1)
    assert [(r["source"], r["status"]) for r in rows] == [("inbox", "DOWN"), ("list", "OK")]
    assert rows[0]["last_error"] == "PermissionError: bad password"
    assert rows[0]["last_success"] == "never" and rows[1]["messages"] == 2
    client = dash_app.server.test_client()
    login(client, "vera")
    assert client.get("/sources").status_code == 200


def test_ago_reads_like_a_person_would_say_it():
    from dashboard.tables import ago

    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert ago(None, now) == "never"
    assert ago(now - timedelta(seconds=42), now) == "42 s ago"
    assert ago(now - timedelta(minutes=5), now) == "5 min ago"
    assert ago(now - timedelta(hours=3), now) == "3 h ago"
    assert ago(now - timedelta(days=2), now) == "2 days ago"
