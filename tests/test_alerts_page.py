"""Alerts page: history, acknowledge (analyst), silences and calendar events (admin), acting
through alerts/engine.py; the data functions directly and the callbacks over HTTP as each role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dash_client import call_callback, login, make_dashboard, response_of
from pydantic import SecretStr
from sqlalchemy import select

from core.db import read_session, write_session
from core.models import Alert, AuditLog, Silence, utcnow
from dashboard.alerts_view import (
    acknowledge_alerts,
    add_event,
    alert_rows,
    calendar_rows,
    end_silence,
    silence_alerts,
    silence_rows,
)

ALERT_OUTPUTS = [("alerts-grid", "rowData"), ("alerts-status", "children")]
SILENCE_OUTPUTS = [("silences-grid", "rowData"), ("silences-status", "children")]
CALENDAR_OUTPUTS = [("calendar-grid", "rowData"), ("calendar-status", "children")]


@pytest.fixture
def dashboard(settings):
    dash_app, engine = make_dashboard(settings.model_copy(update={"secret_key": SecretStr("t")}))
    yield dash_app, engine
    engine.dispose()


def add_alert(engine, state: str = "firing", label: str = "bus delays") -> int:
    with write_session(engine) as session:
        alert = Alert(
            kind="spike",
            fingerprint=f"spike:topic:{label}",
            state=state,
            severity="warning",
            observed=40,
            expected=6.04,
            details={"label": label},
            fired_at=utcnow(),
        )
        session.add(alert)
        session.flush()
        return alert.id


def state_of(engine, alert_id: int) -> str:
    with read_session(engine) as session:
        return session.get_one(Alert, alert_id).state


def test_rows_show_the_alerts_newest_first_with_their_topic(dashboard, settings):
    _app, engine = dashboard
    old, new = add_alert(engine, "resolved", "lunch"), add_alert(engine, "firing", "buses")
    rows = alert_rows(engine, settings.tz)
    assert [(r["id"], r["state"], r["topic"], r["expected"]) for r in rows] == [
        (new, "firing", "buses", 6.0),
        (old, "resolved", "lunch", 6.0),
    ]
    assert [r["id"] for r in alert_rows(engine, settings.tz, include_closed=False)] == [new]


def test_acknowledging_needs_an_analyst_and_goes_through_the_engine(dashboard):
    _app, engine = dashboard
    alert_id = add_alert(engine)
    with pytest.raises(PermissionError, match="needs the analyst role; you are viewer"):
        acknowledge_alerts(engine, [alert_id], "vera", "viewer", utcnow())
    assert state_of(engine, alert_id) == "firing"
    with pytest.raises(ValueError, match="no alert selected"):
        acknowledge_alerts(engine, [], "anna", "analyst", utcnow())
    assert acknowledge_alerts(engine, [alert_id], "anna", "analyst", utcnow()) == (
        f"acknowledged alert {alert_id}"
    )
    with read_session(engine) as session:
        alert = session.get_one(Alert, alert_id)
        audit = session.scalars(select(AuditLog)).all()
    assert (alert.state, alert.acknowledged_by) == ("acknowledged", "anna")
    assert [(a.username, a.action) for a in audit] == [("anna", "alert_acknowledge")]


def test_silences_and_calendar_events_need_an_admin(dashboard, settings):
    _app, engine = dashboard
    now = utcnow()
    with pytest.raises(PermissionError, match="needs the admin role; you are analyst"):
        silence_alerts(engine, "spike", None, 4, None, "anna", "analyst", now)
    with pytest.raises(ValueError, match="silence for 0 hours"):
        silence_alerts(engine, "spike", None, 0, None, "adam", "admin", now)
    done = silence_alerts(engine, "spike", None, 4, "bond vote week", "adam", "admin", now)
    rows = silence_rows(engine, settings.tz, now)
    assert done == f"silence {rows[0]['id']} added for 4 hours"
    assert [(r["kind"], r["by"], r["comment"]) for r in rows] == [
        ("spike", "adam", "bond vote week")
    ]
    with pytest.raises(PermissionError):
        end_silence(engine, rows[0]["id"], "anna", "analyst", now)
    end_silence(engine, rows[0]["id"], "adam", "admin", now + timedelta(minutes=1))
    assert silence_rows(engine, settings.tz, now + timedelta(minutes=2)) == []
    with pytest.raises(PermissionError):
        add_event(engine, "Snow day", "closure", "2026-01-12", None, None, True, "analyst")
    add_event(engine, "Snow day", "closure", "2026-01-12", None, None, True, "admin")
    events = [r for r in calendar_rows(engine, settings) if r["name"] == "Snow day"]
    assert events == [
        {
            "name": "Snow day",
            "kind": "closure",
            "starts_on": "2026-01-12",
            "ends_on": "2026-01-12",
            "school": "all",
            "mutes_alerts": "yes",
        }
    ]


def ack(client, alert_id: int):
    inputs = [("alerts-tick", "n_intervals", 3), ("alerts-closed", "value", True)]
    inputs.append(("alerts-ack", "n_clicks", 1))
    state = [("alerts-grid", "selectedRows", [{"id": alert_id}])]
    return call_callback(client, ALERT_OUTPUTS, inputs, state, changed=["alerts-ack.n_clicks"])


def test_the_acknowledge_button_acts_for_an_analyst_and_refuses_a_viewer(dashboard):
    dash_app, engine = dashboard
    alert_id = add_alert(engine)
    viewer = dash_app.server.test_client()
    login(viewer, "vera")
    refused = ack(viewer, alert_id)
    assert "needs the analyst role" in str(response_of(refused, "alerts-status", "children"))
    assert state_of(engine, alert_id) == "firing"
    analyst = dash_app.server.test_client()
    login(analyst, "anna")
    reply = ack(analyst, alert_id)
    assert f"acknowledged alert {alert_id}" in str(response_of(reply, "alerts-status", "children"))
    assert response_of(reply, "alerts-grid", "rowData")[0]["acknowledged_by"] == "anna"
    assert state_of(engine, alert_id) == "acknowledged"


def test_an_admin_silences_and_adds_an_event_from_the_page(dashboard):
    dash_app, engine = dashboard
    admin = dash_app.server.test_client()
    login(admin, "adam")
    silence = call_callback(
        admin,
        SILENCE_OUTPUTS,
        [
            ("alerts-tick", "n_intervals", 1),
            ("silence-add", "n_clicks", 1),
            ("silence-end", "n_clicks", None),
        ],
        [
            ("silence-kind", "value", "source_down"),
            ("silence-topic", "value", None),
            ("silence-hours", "value", 2),
            ("silence-comment", "value", "router swap"),
            ("silences-grid", "selectedRows", None),
        ],
        changed=["silence-add.n_clicks"],
    )
    rows = response_of(silence, "silences-grid", "rowData")
    assert [(r["kind"], r["comment"]) for r in rows] == [("source_down", "router swap")]
    with read_session(engine) as session:
        stored = session.scalars(select(Silence)).one()
    assert stored.ends_at - stored.starts_at == timedelta(hours=2) and stored.created_by == "adam"
    event = call_callback(
        admin,
        CALENDAR_OUTPUTS,
        [("event-add", "n_clicks", 1)],
        [
            ("event-name", "value", "Bond vote"),
            ("event-kind", "value", "vote"),
            ("event-start", "date", "2026-05-05"),
            ("event-end", "date", None),
            ("event-school", "value", None),
            ("event-mute", "value", False),
        ],
    )
    names = [r["name"] for r in response_of(event, "calendar-grid", "rowData")]
    assert "Bond vote" in names
    bad = call_callback(
        admin,
        CALENDAR_OUTPUTS,
        [("event-add", "n_clicks", 2)],
        [("event-name", "value", "No date"), ("event-kind", "value", "x")]
        + [(f"event-{f}", "date", None) for f in ("start", "end")]
        + [("event-school", "value", None), ("event-mute", "value", False)],
    )
    assert "no start date" in str(response_of(bad, "calendar-status", "children"))
