"""Overview: filters in the URL, KPI tiles, heatmap cells, trending order, callbacks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
from dash.exceptions import PreventUpdate
from flask import g
from plotly.utils import PlotlyJSONEncoder

from alerts.calendar import SchoolCalendar
from core.db import create_db_engine, migrate, write_connection, write_session
from core.messages import NewMessage, upsert_messages
from core.models import Alert, Topic, TopicCount
from dashboard.access import ROLE_KEY, USERNAME_KEY
from dashboard.data import Filters, Trend, kpis, topic_heatmap, trending_topics, window_bounds
from dashboard.figures import heatmap_cell, heatmap_figure

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York


def add_messages(engine, times, kind="sms", **fields) -> None:
    messages = [
        NewMessage(kind, kind, f"{kind}-{t.isoformat()}-{i}", t, f"body {i}", f"h{i}", **fields)
        for i, t in enumerate(times)
    ]  # fmt: skip
    with write_connection(engine) as conn:
        upsert_messages(conn, messages)


def add_topics(engine, *labels: str) -> None:
    with write_session(engine) as session:
        for i, label in enumerate(labels, start=1):
            session.add(Topic(id=i, label=label, first_seen=NOW - timedelta(days=70)))


def add_counts(engine, rows) -> None:
    with write_session(engine) as session:
        session.add_all(
            TopicCount(topic_id=t, bucket_start=b, source_kind=k, school=s, n=n)
            for t, b, k, s, n in rows
        )


def test_filters_round_trip_through_the_url():
    filters = Filters("7d", "sms", "Lincoln Elementary", "es")
    search = filters.search()
    assert Filters.from_query(dict(parse_qsl(search[1:]))) == filters
    assert Filters().search() == "" and Filters.from_query({}) == Filters()
    extra = dict(parse_qsl(filters.search(word="autobús", topic=3)[1:]))
    assert extra["word"] == "autobús" and extra["topic"] == "3" and extra["kind"] == "sms"
    with pytest.raises(ValueError, match="time window 'year'"):
        Filters.from_query({"window": "year"})
    with pytest.raises(ValueError, match="source kind 'fax'"):
        Filters.from_query({"kind": "fax"})


def test_kpis_compare_today_with_usual_days_up_to_the_same_time(db_engine, settings):
    midnight = datetime(2026, 3, 4, 5, tzinfo=UTC)  # local midnight in New York
    add_messages(db_engine, [midnight + timedelta(hours=h) for h in (1, 2, 3, 9, 10)])
    add_messages(db_engine, [NOW + timedelta(minutes=5)])  # after now: not counted
    # Tuesday and Monday before: 2 and 4 messages before 10:30 local, more after it
    for day, before in ((1, 2), (2, 4)):
        start = midnight - timedelta(days=day)
        add_messages(db_engine, [start + timedelta(hours=2 + h) for h in range(before)], "email")
        add_messages(db_engine, [start + timedelta(hours=14)], "email")
    add_messages(db_engine, [midnight - timedelta(days=3)], "webform")  # Sunday: not comparable
    with write_session(db_engine) as session:
        session.add_all([Alert(kind="spike", fingerprint="a", state="firing"),
                         Alert(kind="spike", fingerprint="b", state="resolved")])  # fmt: skip
    found = kpis(db_engine, settings, Filters(), NOW, SchoolCalendar())
    assert found.messages_today == 5
    assert found.usual_by_now == pytest.approx(3.0)  # (2 + 4) / 2 school days
    assert found.firing_alerts == 1 and found.urgent_unreviewed == 0
    assert found.negative_share is None  # no sentiment yet
    only_email = kpis(db_engine, settings, Filters(source_kind="email"), NOW, SchoolCalendar())
    assert only_email.messages_today == 0


def test_heatmap_cells_are_local_hours_of_topic_counts(db_engine, settings):
    add_topics(db_engine, "buses", "lunch")
    hour = datetime(2026, 3, 4, 13, tzinfo=UTC)  # 08:00 local
    add_counts(db_engine, [
        (1, hour, "sms", "", 4), (1, hour, "email", "A", 3), (2, hour, "sms", "", 1),
        (1, hour + timedelta(hours=1), "sms", "", 2),
        (1, hour - timedelta(days=1), "sms", "", 50),  # yesterday: outside "today"
    ])  # fmt: skip
    counts = topic_heatmap(db_engine, settings, Filters(), NOW)
    cells = {(r.label, r.bucket.hour): r.n for r in counts.itertuples()}
    assert cells == {("buses", 8): 7, ("buses", 9): 2, ("lunch", 8): 1}
    assert str(counts["bucket"].iloc[0].tz) == "America/New_York"
    sms = topic_heatmap(db_engine, settings, Filters(source_kind="sms"), NOW)
    assert sms.loc[sms["topic_id"] == 1, "n"].tolist() == [4, 2]
    school = topic_heatmap(db_engine, settings, Filters(school="A"), NOW)
    assert school["n"].tolist() == [3]
    week = topic_heatmap(db_engine, settings, Filters(window="7d"), NOW)
    by_day = {(r.label, r.bucket.date()): r.n for r in week.itertuples()}
    assert by_day[("buses", date(2026, 3, 4))] == 9 and by_day[("buses", date(2026, 3, 3))] == 50

    since, bucket = window_bounds(Filters(), NOW, settings)
    buckets = [since + timedelta(hours=h) for h in range(11)]
    figure = heatmap_figure(counts, [pd.Timestamp(b).tz_convert(settings.tz) for b in buckets],
                            bucket).to_plotly_json()  # fmt: skip
    trace = figure["data"][0]
    assert list(trace["y"]) == ["buses (#1)", "lunch (#2)"]  # busiest first
    assert trace["z"][0][8] == 7 and trace["z"][0][9] == 2 and trace["z"][1][8] == 1
    assert trace["z"][1][0] == 0  # quiet hours show as zero
    click = {"points": [{"customdata": trace["customdata"][0][8]}]}
    topic, start = heatmap_cell(click)
    assert topic == 1 and datetime.fromisoformat(start).hour == 8


def test_trending_orders_topics_by_excess_over_their_baseline(db_engine, settings):
    add_topics(db_engine, "steady", "rising", "quiet")
    end = datetime(2026, 3, 4, 15, tzinfo=UTC)
    rows = []
    for h in range(24 * 7 * 6):  # six weeks of history: topic 1 and 2 at 2 messages an hour
        hour = end - timedelta(hours=h + 1)
        rising = 8 if h < 24 else 2  # topic 2 quadrupled over the last day
        rows += [(1, hour, "sms", "", 2), (2, hour, "sms", "", rising)]
    rows.append((3, end - timedelta(days=20), "sms", "", 1))  # nothing in the last day
    add_counts(db_engine, rows)
    trends = trending_topics(db_engine, settings, NOW, SchoolCalendar())
    assert [t.label for t in trends] == ["rising", "steady"]
    rising, steady = trends
    assert rising.observed == 8 * 24 and rising.change > 1.5
    assert abs(steady.change) < 0.3 and len(rising.series) == 48 and rising.series[-1] == 8


@pytest.fixture
def app(settings, tmp_path):
    from dashboard.app import create_app

    settings = settings.model_copy(update={"dashboard_cache_dir": tmp_path / "cache"})
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    yield create_app(settings, engine), engine
    engine.dispose()


def as_user(role: str) -> None:
    g.setdefault(USERNAME_KEY, f"{role}-user")
    g.setdefault(ROLE_KEY, role)


def test_callbacks_poll_once_per_version_and_fill_every_panel(app):
    from core.models import utcnow
    from dashboard.pages.overview import poll_version, refresh_cloud, refresh_overview

    dash_app, engine = app
    add_topics(engine, "buses")
    add_messages(engine, [utcnow() - timedelta(minutes=m) for m in range(1, 13)], school="A")
    with dash_app.server.test_request_context("/"):
        as_user("viewer")
        version = poll_version(1, None)
        with pytest.raises(PreventUpdate):
            poll_version(2, version)  # nothing changed: no callback does work
        outputs = refresh_overview(version, "today", "", "", "")
        assert outputs[0] == "12" and outputs[1] == "no comparable day yet"
        assert outputs[12][0] == {"label": "All topics", "value": "all"}
        assert outputs[12][1] == {"label": "buses", "value": "1"}
        # the same version and filters come from the cache, even after the data changed
        add_messages(engine, [utcnow() - timedelta(minutes=30)], "email")
        assert refresh_overview(version, "today", "", "", "")[0] == "12"
        new_version = poll_version(3, version)
        assert new_version != version
        assert refresh_overview(new_version, "today", "", "", "")[0] == "13"
        assert refresh_overview(new_version, "today", "email", "", "")[0] == "1"
        cloud = refresh_cloud(new_version, "today", "all")
        assert cloud["layout"]["width"] == 720 and cloud["layout"]["yaxis"]["range"] == [340, 0]
        with pytest.raises(PreventUpdate):
            refresh_overview(None, "today", "", "", "")


def test_filters_go_to_the_url_and_clicks_drill_down(app, monkeypatch):
    import dash

    from dashboard.pages.overview import drill_down, filters_to_url

    _dash_app, _engine = app  # the page registers against a Dash app
    search = filters_to_url("7d", "sms", "", "es")
    assert dict(parse_qsl(search[1:])) == {"window": "7d", "kind": "sms", "lang": "es"}

    class Ctx:
        triggered_id = "overview-wordcloud"

    monkeypatch.setattr(dash, "ctx", Ctx)
    word_click = {"points": [{"customdata": ["autobús", 0.5]}]}
    href = drill_down(word_click, None, "7d", "sms", "", "es", "all")
    parts = urlsplit(href)
    assert parts.path == "/messages"
    assert dict(parse_qsl(parts.query)) == {"window": "7d", "kind": "sms", "lang": "es",
                                            "word": "autobús"}  # fmt: skip
    assert "topic=4" in drill_down(word_click, None, "7d", "", "", "", "4")
    Ctx.triggered_id = "overview-heatmap"
    cell = {"points": [{"customdata": "3|2026-03-04T08:00:00-05:00"}]}
    assert dict(parse_qsl(urlsplit(drill_down(None, cell, "today", "", "", "", None)).query)) == {
        "topic": "3", "hour": "2026-03-04T08:00"}  # fmt: skip
    assert "day=2026-03-04" in drill_down(None, cell, "30d", "", "", "", None)
    with pytest.raises(PreventUpdate):
        drill_down(None, {"points": []}, "today", "", "", "", None)


def test_overview_layout_keeps_url_filters_and_reports_bad_ones(app):
    from dashboard.pages.overview import layout

    dash_app, _engine = app
    with dash_app.server.test_request_context("/"):
        as_user("viewer")
        page = layout(window="30d", kind="email")
        assert page["overview-window"].value == "30d" and page["overview-kind"].value == "email"
        assert page["overview-filter-error"].is_open is False
        bad = layout(window="forever")
        assert bad["overview-filter-error"].is_open is True
        assert "forever" in bad["overview-filter-error"].children
        assert bad["overview-window"].value == "today"


def test_unfiltered_selects_show_their_labelled_all_option(app):
    """dbc.Select keeps "" for a hidden, blank placeholder: "All" must be another value."""
    from dashboard.pages.overview import filters_to_url, layout

    dash_app, _engine = app
    with dash_app.server.test_request_context("/"):
        as_user("viewer")
        page = layout(kind="email")
    for id_ in ("overview-kind", "overview-school", "overview-language"):
        select = page[id_]
        chosen = [o["label"] for o in select.options if o["value"] == select.value]
        assert chosen == (["email"] if id_ == "overview-kind" else ["All"])
        assert "" not in [o["value"] for o in select.options]
    all_value = page["overview-school"].value
    assert filters_to_url("today", all_value, all_value, all_value) == ""  # "All": no filter
    assert filters_to_url("today", "sms", all_value, "es") == "?kind=sms&lang=es"


def test_a_trend_with_almost_no_history_reads_new_not_a_huge_percentage(app):
    from dashboard.pages.overview import trending_list

    _dash_app, _engine = app
    trends = [Trend(1, "Buses", 24, 0.0), Trend(2, "Lunch", 30, 20.0), Trend(3, "Snow", 3, 0.9)]
    assert [t.change_text for t in trends] == ["new", "+50%", "new"]
    assert Trend(4, "Quiet", 1, 1.0).change_text == "+0%"
    shown = json.dumps(trending_list(trends, Filters()), cls=PlotlyJSONEncoder)
    assert '"new"' in shown and "+50%" in shown and "4700%" not in shown
