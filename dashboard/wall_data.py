"""What the wall display shows, as plain functions: aggregates only, small topics suppressed.

The wall hangs in an office where anyone walks past, so it shows no message text, names,
addresses or phone numbers, and no topic with fewer than ``settings.wall_min_count`` messages
in a panel's window (small-count suppression): a topic of three messages may be about one
family. Every panel applies the same rule: the heatmap and the word cloud keep only topics with
enough messages today, trending only topics with enough in the last day, the alerts summary
names only topics whose alert counted enough messages (risk alerts are only counted).

The word cloud is counted over the kept topics' messages only, so a small topic's words never
reach it; the word counting itself (:func:`topics.words.weigh_words`) already drops emails,
phone numbers, links and people's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, func, select

from alerts.calendar import SchoolCalendar
from alerts.engine import list_alerts
from core.db import read_session
from core.models import Alert, Message
from core.queries import topics_by_id
from core.settings import Settings
from dashboard.data import Filters, Trend, topic_heatmap, trending_topics, window_bounds
from topics.words import MAX_MESSAGES, weigh_words

CLOUD_WORDS = 60
TRENDING = 6
TOPIC_ALERT_KINDS = ("spike", "emerging")


def kept_topics(totals: dict[int, int], min_count: int) -> set[int]:
    """The topics with at least ``min_count`` messages (small-count suppression)."""
    return {topic for topic, n in totals.items() if n >= min_count}


def suppressed_heatmap(counts: pd.DataFrame, min_count: int) -> pd.DataFrame:
    """``counts`` (see :func:`dashboard.data.topic_heatmap`) without the topics whose total
    over the window is under ``min_count``."""
    totals = counts.groupby("topic_id")["n"].sum()
    keep = kept_topics({int(t): int(n) for t, n in totals.items()}, min_count)
    return counts[counts["topic_id"].isin(keep)].reset_index(drop=True)


def suppressed_trends(trends: list[Trend], min_count: int) -> list[Trend]:
    """The trending topics with at least ``min_count`` messages in their last day."""
    return [trend for trend in trends if trend.observed >= min_count]


def wall_words(
    engine: Engine,
    settings: Settings,
    topics: set[int],
    since: datetime,
    until: datetime,
    top_n: int = CLOUD_WORDS,
) -> list[tuple[str, float]]:
    """Word-cloud weights of the messages of ``topics`` received in [since, until), counted as
    the overview's cloud counts them (no emails, phones, links or names); empty without topics.

    Only these topics' messages are read, newest ``MAX_MESSAGES`` at most, so words of
    suppressed topics and of unassigned messages cannot appear.
    """
    if not topics:
        return []
    query = (
        select(Message.topic_id, Message.school, Message.body)
        .where(
            Message.received_at >= since,
            Message.received_at < until,
            Message.topic_id.in_(sorted(topics)),
        )
        .order_by(Message.id.desc())
        .limit(MAX_MESSAGES)
    )
    with read_session(engine) as session:
        rows = session.execute(query).all()
    known = [str(pair[0]) for t in topics_by_id(engine, topics).values() for pair in t.words or []]
    return weigh_words(
        settings,
        [row.body for row in rows],
        [row.topic_id for row in rows],
        None,
        top_n,
        schools=sorted({row.school for row in rows if row.school}),
        known_words=known,
    )


@dataclass(frozen=True)
class AlertSummary:
    """Open alerts for the wall: counts by kind, and the topics named where that is safe."""

    firing: dict[str, int]  # kind -> number of firing alerts
    topics: list[str]  # labels of firing spike/emerging alerts that counted enough messages
    sources_down: list[str]


def alert_summary(alerts: list[Alert], min_count: int) -> AlertSummary:
    """Summarise the firing ``alerts``: a topic's label only when its alert counted at least
    ``min_count`` messages; risk alerts only as a number."""
    firing = [a for a in alerts if a.state == "firing"]
    counts: dict[str, int] = {}
    for alert in firing:
        counts[alert.kind] = counts.get(alert.kind, 0) + 1
    topics = [
        str((a.details or {}).get("label") or f"topic {a.topic_id}")
        for a in firing
        if a.kind in TOPIC_ALERT_KINDS and (a.observed or 0) >= min_count
    ]
    down = [
        a.fingerprint.partition(":")[2] or a.fingerprint for a in firing if a.kind == "source_down"
    ]
    return AlertSummary(counts, list(dict.fromkeys(topics)), sorted(set(down)))


def latest_message_at(engine: Engine) -> datetime | None:
    """When the newest message was received (None when there is none)."""
    with read_session(engine) as session:
        return session.scalar(select(func.max(Message.received_at)))


def is_stale(latest: datetime | None, now: datetime, settings: Settings) -> bool:
    """Whether the newest message (``latest``; None: there is none) is older than
    ``settings.wall_stale_minutes``."""
    return latest is None or now - latest > timedelta(minutes=settings.wall_stale_minutes)


@dataclass(frozen=True)
class WallData:
    """Everything the wall's panels show, already suppressed."""

    heatmap: pd.DataFrame  # topic_heatmap columns, kept topics only
    words: list[tuple[str, float]]
    trends: list[Trend]
    alerts: AlertSummary


def wall_data(
    engine: Engine, settings: Settings, now: datetime, calendar: SchoolCalendar
) -> WallData:
    """The wall's panels at ``now``: today's topics by hour and words, the last day's trending
    topics, and the firing alerts, each without topics under ``settings.wall_min_count``."""
    k = settings.wall_min_count
    today = Filters()
    heatmap = suppressed_heatmap(topic_heatmap(engine, settings, today, now), k)
    since, _bucket = window_bounds(today, now, settings)
    words = wall_words(engine, settings, set(heatmap["topic_id"].tolist()), since, now)
    trends = trending_topics(engine, settings, now, calendar, limit=TRENDING * 3)
    return WallData(
        heatmap=heatmap,
        words=words,
        trends=suppressed_trends(trends, k)[:TRENDING],
        alerts=alert_summary(list_alerts(engine), k),
    )
