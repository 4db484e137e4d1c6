"""What the alerts page shows and does, as plain functions (no Dash): grid rows for alerts,
silences and calendar events, and the actions, each checking the caller's role and acting only
through alerts/engine.py.

Who may do what: a viewer reads; an analyst acknowledges; an admin silences and adds calendar
events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from alerts.engine import (
    acknowledge,
    add_calendar_event,
    add_silence,
    expire_silence,
    list_alerts,
    school_calendar,
)
from core.db import read_session
from core.models import Silence
from core.settings import Settings
from dashboard.access import require_role

MAX_SILENCE_HOURS = 24 * 30


def _local(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else ""


def alert_rows(engine: Engine, tz: ZoneInfo, include_closed: bool = True) -> list[dict[str, Any]]:
    """One grid row per alert, newest first (aggregates only: no message text)."""
    rows = []
    for alert in list_alerts(engine, include_closed=include_closed):
        details = alert.details or {}
        rows.append(
            {
                "id": alert.id,
                "kind": alert.kind,
                "state": alert.state,
                "severity": alert.severity,
                "topic": details.get("label") or (alert.topic_id or ""),
                "observed": alert.observed,
                "expected": None if alert.expected is None else round(alert.expected, 1),
                "first_seen": _local(alert.first_seen, tz),
                "fired_at": _local(alert.fired_at, tz),
                "resolved_at": _local(alert.resolved_at, tz),
                "acknowledged_by": alert.acknowledged_by or "",
            }
        )
    return rows


def silence_rows(engine: Engine, tz: ZoneInfo, now: datetime) -> list[dict[str, Any]]:
    """Silences that have not ended yet, soonest end first."""
    query = select(Silence).where(Silence.ends_at > now).order_by(Silence.ends_at, Silence.id)
    with read_session(engine) as session:
        silences = session.scalars(query).all()
    return [
        {
            "id": s.id,
            "kind": s.kind or "any",
            "topic_id": s.topic_id or "any",
            "starts": _local(s.starts_at, tz),
            "ends": _local(s.ends_at, tz),
            "by": s.created_by or "",
            "comment": s.comment or "",
        }
        for s in silences
    ]


def calendar_rows(engine: Engine, settings: Settings) -> list[dict[str, Any]]:
    """Known events (calendar file and those added here), by start date."""
    events = sorted(school_calendar(engine, settings).events, key=lambda e: e.starts_on)
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "starts_on": e.starts_on.isoformat(),
            "ends_on": e.ends_on.isoformat(),
            "school": e.school or "all",
            "mutes_alerts": "yes" if e.mute_alerts else "no",
        }
        for e in events
    ]


def acknowledge_alerts(
    engine: Engine, alert_ids: Iterable[int], username: str | None, role: str | None, now: datetime
) -> str:
    """Acknowledge each alert (analyst or admin); returns what was done."""
    require_role(role, "analyst", "acknowledging alerts")
    ids = list(alert_ids)
    if not ids:
        raise ValueError("no alert selected: tick the alerts to acknowledge first")
    for alert_id in ids:
        acknowledge(engine, alert_id, username or "", now)
    return f"acknowledged alert{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"


def silence_alerts(
    engine: Engine,
    kind: str | None,
    topic_id: int | None,
    hours: float | None,
    comment: str | None,
    username: str | None,
    role: str | None,
    now: datetime,
) -> str:
    """Silence alerts of ``kind`` and/or ``topic_id`` for ``hours`` from now (admin)."""
    require_role(role, "admin", "silencing alerts")
    if hours is None or not 0 < hours <= MAX_SILENCE_HOURS:
        raise ValueError(
            f"silence for {hours!r} hours: give more than 0, at most {MAX_SILENCE_HOURS}"
        )
    silence_id = add_silence(
        engine, kind or None, topic_id, now, now + timedelta(hours=hours), username or "", comment
    )
    return f"silence {silence_id} added for {hours:g} hours"


def end_silence(
    engine: Engine, silence_id: int | None, username: str | None, role: str | None, now: datetime
) -> str:
    """End a silence now (admin)."""
    require_role(role, "admin", "ending silences")
    if silence_id is None:
        raise ValueError("no silence selected: tick the silence to end first")
    expire_silence(engine, silence_id, now, username or "")
    return f"silence {silence_id} ended"


def add_event(
    engine: Engine,
    name: str | None,
    kind: str | None,
    starts_on: str | None,
    ends_on: str | None,
    school: str | None,
    mute_alerts: bool,
    role: str | None,
) -> str:
    """Add a calendar event from the form's values (dates ``YYYY-MM-DD``) (admin)."""
    require_role(role, "admin", "adding calendar events")
    if not starts_on:
        raise ValueError("the event has no start date: pick one")
    start = date.fromisoformat(starts_on)
    end = date.fromisoformat(ends_on) if ends_on else None
    event_id = add_calendar_event(
        engine, name or "", kind or "event", start, end, school or None, mute_alerts
    )
    return f"calendar event {event_id} ({(name or '').strip()}) added"
