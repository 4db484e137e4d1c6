"""Wall display: small-count suppression, no personal data anywhere it renders, only wall-
callbacks, the stale flag, and the wall session driving its callbacks over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dash.exceptions import PreventUpdate
from flask import g
from plotly.utils import PlotlyJSONEncoder
from pydantic import SecretStr

from alerts.calendar import SchoolCalendar
from core.models import Alert, Topic, TopicCount
from dashboard.access import ROLE_KEY
from dashboard.data import Trend
from dashboard.wall_data import alert_summary, is_stale, suppressed_trends, wall_data
from tests.dash_client import call_callback, make_dashboard, response_of
from tests.test_digest import Seeder

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)  # a Wednesday, 10:30 in New York
TOKEN = "wall-token-for-tests"
PHONE, EMAIL, NAME = "(555) 123-4567", "jane.doe@example.com", "Gonzalez"
BUS = [
    f"The school bus on route {k} was late again this morning, call me at {PHONE} or write to "
    f"{EMAIL}, thanks, Maria {NAME}"
    for k in range(9)
]
ALLERGY = [f"Peanut allergy reaction in the cafeteria, my daughter Lucia needs help {k}"
           for k in range(3)]  # fmt: skip
SECRETS = [PHONE, "123-4567", "123 4567", EMAIL, "example.com", NAME, "Lucia", "Peanut", "peanut",
           "Allergy incident", "late again this morning"]  # fmt: skip


def seed(engine, now: datetime = NOW, fresh: bool = True) -> None:
    """Topic 1 "Bus delays" with 9 messages today, topic 2 "Allergy incident" with 3; a firing
    spike alert on each, a firing risk alert. ``fresh``: the newest message is 2 minutes old."""
    s = Seeder(engine)
    s.add([Topic(id=1, label="Bus delays", first_seen=now - timedelta(days=60)),
           Topic(id=2, label="Allergy incident", first_seen=now - timedelta(days=60))])  # fmt: skip
    newest = now - timedelta(minutes=2 if fresh else 40)
    rows = [(body, 1) for body in BUS] + [(body, 2) for body in ALLERGY]
    s.messages([{"at": newest - timedelta(minutes=k % 9), "body": body, "topic": topic}
                for k, (body, topic) in enumerate(rows)])  # fmt: skip
    hour = newest.replace(minute=0, second=0, microsecond=0)
    s.add([TopicCount(topic_id=t, bucket_start=hour, source_kind="sms", school="", n=n)
           for t, n in ((1, 9), (2, 3))])  # fmt: skip
    s.add([
        Alert(kind="spike", fingerprint="spike:topic:1", state="firing", topic_id=1, observed=9,
              expected=2, details={"label": "Bus delays"}, fired_at=now),
        Alert(kind="spike", fingerprint="spike:topic:2", state="firing", topic_id=2, observed=3,
              expected=0.5, details={"label": "Allergy incident"}, fired_at=now),
        Alert(kind="risk", fingerprint="risk:message:5", state="firing", severity="critical",
              details={"categories": ["self_harm"]}, fired_at=now),
    ])  # fmt: skip


def test_small_count_suppression_hides_a_3_message_topic_and_keeps_a_9_message_one(
    db_engine, settings
):
    seed(db_engine)
    data = wall_data(db_engine, settings, NOW, SchoolCalendar())
    assert set(data.heatmap["topic_id"]) == {1}
    assert data.heatmap["n"].sum() == 9
    words = {word for word, _ in data.words}
    assert {"bus", "route"} <= words  # the kept topic's words
    assert not words & {"peanut", "allergy", "cafeteria", "daughter"}  # the small topic's
    assert not words & {"maria", "gonzalez", "jane", "lucia", "555", "4567"}
    assert data.alerts.firing == {"spike": 2, "risk": 1}
    assert data.alerts.topics == ["Bus delays"]  # the 3-message spike is counted, not named
    # with a threshold above both topics, nothing is named or drawn
    strict = settings.model_copy(update={"wall_min_count": 10})
    none = wall_data(db_engine, strict, NOW, SchoolCalendar())
    assert none.heatmap.empty and none.words == [] and none.alerts.topics == []
    # trending keeps a topic at the threshold and drops one below it
    trends = [Trend(1, "Bus delays", 9, 2.0), Trend(2, "Allergy incident", 3, 0.5)]
    assert [t.topic_id for t in suppressed_trends(trends, 5)] == [1]
    assert [t.topic_id for t in suppressed_trends(trends, 3)] == [1, 2]


def test_alert_summary_names_sources_down_and_ignores_closed_alerts():
    alerts = [
        Alert(kind="source_down", fingerprint="source_down:district-inbox", state="firing"),
        Alert(kind="spike", fingerprint="spike:topic:1", state="resolved", observed=50,
              details={"label": "Old news"}),
    ]  # fmt: skip
    summary = alert_summary(alerts, 5)
    assert summary.firing == {"source_down": 1}
    assert summary.sources_down == ["district-inbox"] and summary.topics == []


def test_stale_flag_follows_the_threshold(settings):
    assert settings.wall_stale_minutes == 15
    assert is_stale(NOW - timedelta(minutes=16), NOW, settings)
    assert not is_stale(NOW - timedelta(minutes=14), NOW, settings)
    assert is_stale(None, NOW, settings)  # no data at all
    five = settings.model_copy(update={"wall_stale_minutes": 5})
    assert is_stale(NOW - timedelta(minutes=6), NOW, five)


@pytest.fixture
def wall_app(settings, tmp_path, monkeypatch):
    """The dashboard with a wall token, its clock fixed at NOW."""
    settings = settings.model_copy(
        update={"dashboard_cache_dir": tmp_path / "cache", "wall_token": SecretStr(TOKEN)}
    )
    app, engine = make_dashboard(settings)
    from dashboard.pages import wall  # registers against the app, so only after it exists

    monkeypatch.setattr(wall, "utcnow", lambda: NOW)
    yield app, engine
    engine.dispose()


def wall_ids(component) -> set[str]:
    """Every component id in a layout tree."""
    found = set()
    stack = [component]
    while stack:
        node = stack.pop()
        if isinstance(node, list | tuple):
            stack.extend(node)
        elif hasattr(node, "to_plotly_json"):
            if isinstance(getattr(node, "id", None), str):
                found.add(node.id)
            stack.append(getattr(node, "children", None))
    return found


def test_trending_rows_keep_change_and_count_apart_and_say_new_without_history(wall_app):
    from dashboard.pages.wall import trending_panel

    rows = trending_panel([Trend(1, "Bus delays", 24, 0.0), Trend(2, "Lunch", 30, 20.0)]).children
    cells = [[(c.className, c.children) for c in row.children[:3]] for row in rows]
    assert cells == [
        [("wall-trend-label", "Bus delays"), ("wall-trend-change up", "new"),
         ("wall-trend-count", "24 messages · usually 0")],
        [("wall-trend-label", "Lunch"), ("wall-trend-change", "+50%"),
         ("wall-trend-count", "30 messages · usually 20")],
    ]  # fmt: skip


def test_the_heatmap_fills_its_panel_with_large_labels(wall_app):
    import pandas as pd

    from dashboard.pages.wall import TICK_FONT_SIZE, heatmap_panel, layout

    app, _engine = wall_app
    hour = pd.Timestamp(NOW).floor("h")
    counts = pd.DataFrame({"topic_id": [1], "label": ["Bus delays"], "bucket": [hour], "n": [9]})
    with app.server.test_request_context("/wall"):
        figure = heatmap_panel(counts, NOW)
        graph = layout()["wall-heatmap"]
    assert "height" not in figure["layout"] and figure["layout"]["autosize"] is True
    assert TICK_FONT_SIZE >= 24
    assert figure["layout"]["xaxis"]["tickfont"]["size"] == TICK_FONT_SIZE
    assert figure["layout"]["yaxis"]["tickfont"]["size"] == TICK_FONT_SIZE
    assert graph.config["responsive"] is True and "wall-fill" in graph.className


def test_no_message_text_email_or_phone_anywhere_the_wall_renders(wall_app):
    from dashboard.pages.wall import layout, refresh_wall, wall_version

    app, engine = wall_app
    seed(engine)
    with app.server.test_request_context("/wall"):
        setattr(g, ROLE_KEY, "wall")
        page = layout(token=TOKEN)
        version = wall_version(1, None)
        outputs = refresh_wall(version)
    rendered = json.dumps([page, outputs], cls=PlotlyJSONEncoder)
    assert "Bus delays" in rendered and "bus" in rendered  # the test can see what is shown
    assert outputs[4] == "12 messages today" and outputs[5] == "Last updated 10:28"
    for secret in SECRETS:
        assert secret not in rendered, (secret, rendered[rendered.find(secret) - 80 :][:160])


def test_every_wall_callback_writes_only_wall_components(wall_app):
    from dashboard.pages.wall import layout

    app, _engine = wall_app
    with app.server.test_request_context("/wall"):
        setattr(g, ROLE_KEY, "wall")
        ids = wall_ids(layout())
    assert ids and all(i.startswith("wall-") for i in ids)
    client = app.server.test_client()
    assert client.get(f"/wall?token={TOKEN}").status_code == 200
    dependencies = client.get("/_dash-dependencies").get_json()
    wall_callbacks = [d for d in dependencies if {i["id"] for i in d["inputs"] + d["state"]} & ids]
    # version poll, panels, rotation, health (each app built in this process registers them)
    assert len({d["output"] for d in wall_callbacks}) == 4
    for dependency in wall_callbacks:
        outputs = dependency["output"].strip(".").split("...")
        assert all(o.startswith("wall-") for o in outputs), dependency["output"]


def test_a_wall_session_refreshes_its_panels_and_the_stale_banner_over_http(wall_app):
    app, engine = wall_app
    seed(engine, fresh=False)  # the newest message is 40 minutes old
    client = app.server.test_client()
    assert client.get("/wall?token=wrong").status_code == 403
    assert client.get(f"/wall?token={TOKEN}").status_code == 200
    reply = call_callback(client, [("wall-version", "data")], [("wall-tick", "n_intervals", 1)],
                          [("wall-version", "data", None)])  # fmt: skip
    version = response_of(reply, "wall-version", "data")
    assert version.endswith("/stale")
    outputs = [("wall-cloud", "figure"), ("wall-heatmap", "figure"), ("wall-trending", "children"),
               ("wall-alerts", "children"), ("wall-today", "children"),
               ("wall-last-updated", "children"), ("wall-status", "data")]  # fmt: skip
    reply = call_callback(client, outputs, [("wall-version", "data", version)])
    status = response_of(reply, "wall-status", "data")
    assert status == {"stale": "No new messages since 09:50", "updated": "09:50"}
    for secret in SECRETS:
        assert secret not in reply.text, secret
    # the same wall session may not run another page's callback
    refused = call_callback(client, [("overview-version", "data")],
                            [("overview-tick", "n_intervals", 1)])  # fmt: skip
    assert refused.status_code == 403


def test_fresh_data_clears_the_stale_status_and_an_unchanged_version_does_no_work(wall_app):
    from dashboard.pages.wall import refresh_wall, wall_version

    app, engine = wall_app
    seed(engine)
    with app.server.test_request_context("/wall"):
        setattr(g, ROLE_KEY, "wall")
        version = wall_version(1, None)
        assert not version.endswith("/stale")
        with pytest.raises(PreventUpdate):
            wall_version(2, version)
        assert refresh_wall(version)[6] == {"stale": None, "updated": "10:28"}
        with pytest.raises(PreventUpdate):
            refresh_wall(None)
