"""Read-side queries shared by the dashboard, alerts and digest: plain functions, no Dash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Engine, func, select

from core.db import read_session
from core.models import Message, SourceState, Topic


@dataclass(frozen=True)
class VolumeStats:
    """Message counts for the overview tiles."""

    total: int
    last_hour: int
    last_24h: int
    latest_received_at: datetime | None


def hour_bucket(dialect: str, column: ColumnElement[datetime]) -> ColumnElement[Any]:
    """The UTC hour ``column`` falls in, in the form the dialect stores a datetime.

    SQLite: the text SQLAlchemy writes ('YYYY-MM-DD HH:MM:SS.ffffff'), so buckets computed in
    SQL and ``bucket_start`` values written from Python are the same key. PostgreSQL: a
    timestamptz truncated in UTC (``date_trunc`` alone would use the session's time zone).
    """
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H:00:00.000000", column)
    return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", column)))


def data_version(engine: Engine) -> str:
    """A cheap token that changes whenever messages are added; dashboards poll it."""
    with read_session(engine) as session:
        latest_id, count = session.execute(
            select(func.max(Message.id), func.count(Message.id))
        ).one()
    return f"{latest_id or 0}:{count}"


def volume_stats(engine: Engine, now: datetime) -> VolumeStats:
    """Totals: all time, the last hour, the last 24 hours, and the newest message's time."""
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(hours=24)
    recent = select(
        func.count(Message.id).filter(Message.received_at > hour_ago),
        func.count(Message.id).filter(Message.received_at > day_ago),
    ).where(Message.received_at <= now)
    with read_session(engine) as session:
        total, latest = session.execute(
            select(func.count(Message.id), func.max(Message.received_at))
        ).one()
        last_hour, last_24h = session.execute(recent).one()
    return VolumeStats(total, last_hour, last_24h, latest)


def hourly_volume(engine: Engine, since: datetime, until: datetime) -> pd.DataFrame:
    """Messages per UTC hour and source kind in [since, until): columns hour, source_kind, n."""
    bucket = hour_bucket(engine.dialect.name, Message.received_at).label("hour")
    query = (
        select(bucket, Message.source_kind, func.count(Message.id).label("n"))
        .where(Message.received_at >= since, Message.received_at < until)
        .group_by(bucket, Message.source_kind)
        .order_by(bucket)
    )
    with read_session(engine) as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=["hour", "source_kind", "n"])
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
    return frame


@dataclass(frozen=True)
class SourceHealth:
    """One source's health as the Sources view shows it; ``status`` is ok|failing|down|waiting."""

    name: str
    kind: str
    status: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    messages_total: int
    fetched_total: int
    failures_total: int
    interval_seconds: int | None


def source_status(state: SourceState, now: datetime, down_after_intervals: int) -> str:
    """``down`` when a source has had no success for ``down_after_intervals`` of its intervals.

    A source that has never succeeded is down after that many failed attempts in a row;
    ``failing`` means its last attempt failed but it is not down yet; ``waiting`` means it has
    not been tried.
    """
    if state.last_attempt_at is None:
        return "waiting"
    if state.last_success_at is None:
        return "down" if state.consecutive_failures >= down_after_intervals else "failing"
    interval = state.interval_seconds or 0
    silent = (now - state.last_success_at).total_seconds()
    if state.consecutive_failures and silent >= down_after_intervals * interval:
        return "down"
    return "failing" if state.consecutive_failures else "ok"


def source_health(engine: Engine, now: datetime, down_after_intervals: int) -> list[SourceHealth]:
    """Every source's health, by name, for the Sources view and the source-down alert."""
    with read_session(engine) as session:
        states = session.scalars(select(SourceState).order_by(SourceState.source_name)).all()
    return [
        SourceHealth(
            name=s.source_name,
            kind=s.source_kind,
            status=source_status(s, now, down_after_intervals),
            last_attempt_at=s.last_attempt_at,
            last_success_at=s.last_success_at,
            last_error=s.last_error,
            consecutive_failures=s.consecutive_failures,
            messages_total=s.messages_total,
            fetched_total=s.fetched_total,
            failures_total=s.failures_total,
            interval_seconds=s.interval_seconds,
        )
        for s in states
    ]


def down_sources(engine: Engine, now: datetime, down_after_intervals: int) -> list[SourceHealth]:
    """The sources in the ``source_down`` condition (the alerts engine turns them into alerts)."""
    return [h for h in source_health(engine, now, down_after_intervals) if h.status == "down"]


def topic_list(engine: Engine, include_inactive: bool = False) -> list[Topic]:
    """Topics, largest first (active ones only unless ``include_inactive``)."""
    query = select(Topic).order_by(Topic.size.desc(), Topic.id)
    if not include_inactive:
        query = query.where(Topic.status == "active")
    with read_session(engine) as session:
        return list(session.scalars(query))
