"""Read-side queries shared by the dashboard, alerts and digest: plain functions, no Dash."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import ColumnElement, Engine, case, func, select

from core.db import read_session
from core.models import Alert, Message, ModelRun, SourceState, Topic


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
    """A cheap token that changes whenever messages are added, scored by the topic assigner
    (so ``topic_counts`` grew) or a topic model is fitted; dashboards poll it."""
    with read_session(engine) as session:
        latest_id, count, scored = session.execute(
            select(func.max(Message.id), func.count(Message.id), func.count(Message.topic_score))
        ).one()
        last_run = session.scalar(select(func.max(ModelRun.id)))
    return f"{latest_id or 0}:{count}:{scored}:{last_run or 0}"


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


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of the local calendar date ``day`` in UTC (23 or 25 h around DST)."""
    start = datetime.combine(day, time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, end


def daily_counts(engine: Engine, first: date, last: date, tz: ZoneInfo) -> pd.DataFrame:
    """Messages per local date, source kind and topic, for the dates ``first`` to ``last``.

    Columns: day (a ``date``), source_kind, topic_id (``<NA>`` for unassigned messages), n.
    Dates without messages have no rows. Days are exact local days, whatever the UTC offset.
    """
    if last < first:
        raise ValueError(f"daily_counts: last date {last} is before the first {first}")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    edges = [local_day_bounds(day, tz)[0] for day in days] + [local_day_bounds(last, tz)[1]]
    index = case(
        *((Message.received_at < edge, i) for i, edge in enumerate(edges[1:])), else_=len(days)
    )
    window = (Message.received_at >= edges[0], Message.received_at < edges[-1])
    rows = select(index.label("i"), Message.source_kind, Message.topic_id).where(*window).subquery()
    query = select(rows.c.i, rows.c.source_kind, rows.c.topic_id, func.count().label("n"))
    query = query.group_by(rows.c.i, rows.c.source_kind, rows.c.topic_id)
    with read_session(engine) as session:
        found = session.execute(query).all()
    frame = pd.DataFrame(
        [(days[i], kind, topic, n) for i, kind, topic, n in found],
        columns=["day", "source_kind", "topic_id", "n"],
    )
    return frame.astype({"topic_id": "Int64", "n": "int64"})


def first_message_at(engine: Engine) -> datetime | None:
    """When the oldest stored message was received (None for an empty database)."""
    with read_session(engine) as session:
        return session.scalar(select(func.min(Message.received_at)))


def topics_by_id(engine: Engine, ids: Iterable[int]) -> dict[int, Topic]:
    """The topics with these IDs (whatever their status), by ID."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    with read_session(engine) as session:
        return {t.id: t for t in session.scalars(select(Topic).where(Topic.id.in_(wanted)))}


def new_topics(engine: Engine, since: datetime, until: datetime) -> list[Topic]:
    """Topics first seen in ``[since, until)`` (not those merged away since), oldest first."""
    query = select(Topic).where(
        Topic.first_seen >= since, Topic.first_seen < until, Topic.status != "merged"
    )
    with read_session(engine) as session:
        return list(session.scalars(query.order_by(Topic.first_seen, Topic.id)))


def alerts_fired(engine: Engine, since: datetime, until: datetime) -> list[Alert]:
    """Alerts that fired in ``[since, until)``, in the order they fired."""
    query = select(Alert).where(Alert.fired_at >= since, Alert.fired_at < until)
    with read_session(engine) as session:
        return list(session.scalars(query.order_by(Alert.fired_at, Alert.id)))


def most_negative_messages(
    engine: Engine, since: datetime, until: datetime, limit: int = 3, below: float = 0.0
) -> list[Message]:
    """The messages of ``[since, until)`` with the lowest sentiment under ``below``.

    Risk-flagged messages are left out: their text belongs in the risk queue, not in summaries.
    """
    query = (
        select(Message)
        .where(
            Message.received_at >= since,
            Message.received_at < until,
            Message.sentiment < below,
            Message.risk_level == "none",
        )
        .order_by(Message.sentiment, Message.id)
        .limit(limit)
    )
    with read_session(engine) as session:
        return list(session.scalars(query))


def risk_flag_counts(engine: Engine, since: datetime, until: datetime) -> dict[str, int]:
    """How many messages of ``[since, until)`` were flagged ``review`` and ``urgent``."""
    query = (
        select(Message.risk_level, func.count(Message.id))
        .where(
            Message.received_at >= since,
            Message.received_at < until,
            Message.risk_level.in_(("review", "urgent")),
        )
        .group_by(Message.risk_level)
    )
    with read_session(engine) as session:
        found = dict(session.execute(query).all())
    return {level: found.get(level, 0) for level in ("review", "urgent")}


def messages_by_id(engine: Engine, ids: Iterable[int]) -> list[Message]:
    """The messages with these IDs, in ID order."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    with read_session(engine) as session:
        query = select(Message).where(Message.id.in_(wanted)).order_by(Message.id)
        return list(session.scalars(query))
