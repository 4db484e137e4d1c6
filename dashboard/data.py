"""What the overview, topic and message pages show, as plain functions over the database.

No Dash here: each function takes an engine (and settings where the time zone or calendar
matter) and returns plain data, so tests call them on a seeded database. Counts per topic come
from ``topic_counts`` (kept by the worker); message lists and tiles read ``messages``.

:class:`Filters` is the overview's selection (time window, channel, school, language); it
round-trips through a URL query string so a view can be shared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from sqlalchemy import ColumnElement, Engine, Select, and_, func, or_, select

from alerts.calendar import SchoolCalendar
from alerts.digest import comparison_days
from alerts.spikes import fit_baseline, load_counts
from core.db import read_session
from core.models import SOURCE_KINDS, Alert, Message, Topic, TopicCount
from core.queries import first_message_at, local_day_bounds, topics_by_id
from core.settings import Settings
from topics.assign import NEGATIVE_BELOW
from topics.vocabulary import TOKEN_PATTERN, fold, stem

WINDOWS = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_WINDOW = "today"
TRENDING_HOURS = 24  # trending compares the last complete day of hours with the baseline
SPARKLINE_HOURS = 48
NEW_BELOW = 1.0  # a trend expected to have fewer messages than this is "new", not a percentage
MESSAGE_LIMIT = 500  # message lists show the newest this many
WORD_SCAN_LIMIT = 20_000  # candidate rows a word search checks word by word


@dataclass(frozen=True)
class Filters:
    """The overview's selection; empty strings mean "all"."""

    window: str = DEFAULT_WINDOW
    source_kind: str = ""
    school: str = ""
    language: str = ""

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"time window {self.window!r}: use one of {', '.join(WINDOWS)}")
        if self.source_kind and self.source_kind not in SOURCE_KINDS:
            raise ValueError(
                f"source kind {self.source_kind!r}: use one of {', '.join(SOURCE_KINDS)}"
            )

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        """Filters from URL query parameters (``window``, ``kind``, ``school``, ``lang``)."""
        return cls(
            window=query.get("window") or DEFAULT_WINDOW,
            source_kind=query.get("kind", ""),
            school=query.get("school", ""),
            language=query.get("lang", ""),
        )

    def query(self) -> dict[str, str]:
        """The URL query parameters of these filters (defaults left out)."""
        pairs = {
            "window": "" if self.window == DEFAULT_WINDOW else self.window,
            "kind": self.source_kind,
            "school": self.school,
            "lang": self.language,
        }
        return {key: value for key, value in pairs.items() if value}

    def search(self, **extra: str | int) -> str:
        """A URL query string (``?...``, or "" when empty) of these filters plus ``extra``."""
        params = {**self.query(), **{k: str(v) for k, v in extra.items()}}
        return f"?{urlencode(params)}" if params else ""


def window_bounds(filters: Filters, now: datetime, settings: Settings) -> tuple[datetime, str]:
    """The start of the filters' window (UTC) and the heatmap's bucket: ``hour`` or ``day``.

    "Today" starts at local midnight and is shown by hour; longer windows start at local
    midnight that many days ago and are shown by day.
    """
    today = now.astimezone(settings.tz).date()
    if filters.window == "today":
        return local_day_bounds(today, settings.tz)[0], "hour"
    days = int(filters.window.removesuffix("d"))
    return local_day_bounds(today - timedelta(days=days - 1), settings.tz)[0], "day"


def _message_filters(filters: Filters) -> list[ColumnElement[bool]]:
    clauses = []
    if filters.source_kind:
        clauses.append(Message.source_kind == filters.source_kind)
    if filters.school:
        clauses.append(Message.school == filters.school)
    if filters.language:
        clauses.append(Message.language == filters.language)
    return clauses


@dataclass(frozen=True)
class Kpis:
    """The overview's tiles. ``usual_by_now`` is None when there is no comparable day yet."""

    messages_today: int
    usual_by_now: float | None
    firing_alerts: int
    urgent_unreviewed: int
    negative_share: float | None  # of the window's messages with a sentiment


def kpis(
    engine: Engine, settings: Settings, filters: Filters, now: datetime, calendar: SchoolCalendar
) -> Kpis:
    """Messages since local midnight against the mean of comparable days (same day type, no
    known event; see :func:`alerts.digest.comparison_days`) up to the same time of day, firing
    alerts, urgent risk flags nobody reviewed yet, and the window's share of negative messages.
    """
    tz = settings.tz
    today = now.astimezone(tz).date()
    midnight = local_day_bounds(today, tz)[0]
    elapsed = now - midnight
    first = first_message_at(engine)
    compared = comparison_days(today, calendar, first.astimezone(tz).date() if first else None)
    spans = [(midnight, now)] + [
        (start, start + elapsed) for start in (local_day_bounds(d, tz)[0] for d in compared)
    ]
    where = _message_filters(filters)
    since, _bucket = window_bounds(filters, now, settings)
    # one indexed count per span: a single scan with a FILTER per span is 20x slower at 200k
    span_counts = [
        select(func.count(Message.id))
        .where(Message.received_at >= a, Message.received_at < b, *where)
        .scalar_subquery()
        for a, b in spans
    ]
    negative = select(
        func.count(Message.id).filter(Message.sentiment < NEGATIVE_BELOW),
        func.count(Message.sentiment),
    ).where(Message.received_at >= since, Message.received_at < now, *where)
    with read_session(engine) as session:
        counts = session.execute(select(*span_counts)).one()
        firing = session.scalar(select(func.count(Alert.id)).where(Alert.state == "firing"))
        urgent = session.scalar(
            select(func.count(Message.id)).where(
                Message.risk_level == "urgent", Message.risk_review.is_(None)
            )
        )
        n_negative, n_scored = session.execute(negative).one()
    return Kpis(
        messages_today=counts[0],
        usual_by_now=sum(counts[1:]) / len(compared) if compared else None,
        firing_alerts=firing or 0,
        urgent_unreviewed=urgent or 0,
        negative_share=n_negative / n_scored if n_scored else None,
    )


def topic_heatmap(
    engine: Engine, settings: Settings, filters: Filters, now: datetime
) -> pd.DataFrame:
    """Messages per topic and local hour (window "today") or local day, from ``topic_counts``.

    Columns: topic_id, label, bucket (local start, tz-aware), n. The channel and school
    filters apply; ``topic_counts`` has no language, so the language filter does not.
    """
    since, bucket = window_bounds(filters, now, settings)
    query = (
        select(TopicCount.topic_id, TopicCount.bucket_start, func.sum(TopicCount.n).label("n"))
        .where(TopicCount.bucket_start >= since, TopicCount.bucket_start <= now)
        .group_by(TopicCount.topic_id, TopicCount.bucket_start)
    )
    if filters.source_kind:
        query = query.where(TopicCount.source_kind == filters.source_kind)
    if filters.school:
        query = query.where(TopicCount.school == filters.school)
    with read_session(engine) as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=["topic_id", "bucket", "n"])
    local = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(settings.tz)
    frame["bucket"] = local.dt.floor("h") if bucket == "hour" else _local_midnight(local)
    frame = frame.groupby(["topic_id", "bucket"], as_index=False)["n"].sum()
    labels = {i: t.display_label for i, t in topics_by_id(engine, frame["topic_id"]).items()}
    frame.insert(1, "label", frame["topic_id"].map(labels).fillna("").astype(str))
    return frame.astype({"topic_id": "int64", "n": "int64"})


def _local_midnight(local: pd.Series) -> pd.Series:
    """Each local timestamp's local midnight (correct across DST changes, unlike floor).

    Computed once per distinct day and looked up (a loop over every row took 0.4 s at 12k).
    """
    days = local.dt.date
    distinct = pd.unique(days)
    midnights = pd.Series(
        [pd.Timestamp(datetime.combine(d, time(), local.dt.tz)) for d in distinct],
        index=distinct,
        dtype=local.dtype,
    )
    return pd.Series(midnights.loc[days].array, index=local.index, dtype=local.dtype)


@dataclass(frozen=True)
class Trend:
    """A topic's last ``TRENDING_HOURS`` hours against its seasonal baseline."""

    topic_id: int
    label: str
    observed: int
    expected: float
    series: list[int] = field(default_factory=list)  # hourly counts, oldest first

    @property
    def change(self) -> float:
        """Observed over expected, minus one (0.5 = +50 %)."""
        return self.observed / max(self.expected, 0.5) - 1

    @property
    def change_text(self) -> str:
        """The change as shown: "+50%", or "new" when less than one message was expected
        (a percentage of almost nothing, like "+4700%", says nothing)."""
        return "new" if self.expected < NEW_BELOW else f"{self.change:+.0%}"

    @property
    def score(self) -> float:
        """How unusual the excess is (a Poisson z-score): the trending order."""
        return (self.observed - self.expected) / math.sqrt(self.expected + 1)


def trending_topics(
    engine: Engine,
    settings: Settings,
    now: datetime,
    calendar: SchoolCalendar,
    limit: int = 8,
) -> list[Trend]:
    """Active topics ordered by how far their last day of complete hours is above expectation.

    The expectation is the spike detector's seasonal baseline (:func:`alerts.spikes.fit_baseline`,
    day type x hour over recent weeks), so "trending" means what the alerts mean by unusual.
    Topics with no messages in the period are left out.
    """
    history = load_counts(engine, now - timedelta(weeks=9) - timedelta(hours=72), now)
    if history.empty:
        return []
    baseline = fit_baseline(history, now, calendar, settings.tz)
    observed = baseline.observed[-TRENDING_HOURS:].sum(axis=0)
    expected = baseline.expected[-TRENDING_HOURS:].sum(axis=0)
    active = {t.id: t for t in topics_by_id(engine, baseline.topics.tolist()).values()}
    trends = [
        Trend(
            int(topic),
            active[int(topic)].display_label,
            int(observed[i]),
            float(expected[i]),
            [int(n) for n in baseline.observed[-SPARKLINE_HOURS:, i]],
        )
        for i, topic in enumerate(baseline.topics)
        if observed[i] > 0 and int(topic) in active and active[int(topic)].status == "active"
    ]
    return sorted(trends, key=lambda t: (-t.score, t.topic_id))[:limit]


def channel_mix(
    engine: Engine, settings: Settings, filters: Filters, now: datetime
) -> dict[str, int]:
    """Messages per source kind in the filters' window, largest first."""
    since, _bucket = window_bounds(filters, now, settings)
    query = (
        select(Message.source_kind, func.count(Message.id))
        .where(Message.received_at >= since, Message.received_at < now)
        .where(*_message_filters(filters))
        .group_by(Message.source_kind)
    )
    with read_session(engine) as session:
        found = session.execute(query).all()
    return dict(sorted(((k, int(n)) for k, n in found), key=lambda kn: (-kn[1], kn[0])))


def filter_options(engine: Engine) -> dict[str, list[str]]:
    """The schools and languages seen in messages, for the filter menus."""
    with read_session(engine) as session:
        schools = session.scalars(
            select(Message.school).where(Message.school.is_not(None)).distinct()
        ).all()
        languages = session.scalars(
            select(Message.language).where(Message.language.is_not(None)).distinct()
        ).all()
    return {"schools": sorted(s for s in schools if s), "languages": sorted(languages)}


@dataclass(frozen=True)
class MessageQuery:
    """Which messages a drill-down lists: a window plus any of topic, word, filters."""

    since: datetime
    until: datetime
    filters: Filters = Filters()
    topic_id: int | None = None
    word: str = ""
    search: str = ""  # a plain substring of the text (case-insensitive)

    @classmethod
    def from_query(cls, query: dict[str, str], now: datetime, settings: Settings) -> MessageQuery:
        """From a drill-down URL: the overview filters plus ``topic``, ``word``, ``q``, and
        ``hour`` (a local ``YYYY-MM-DDTHH:00``) or ``day`` (``YYYY-MM-DD``) instead of the
        window."""
        filters = Filters.from_query(query)
        since, until = window_bounds(filters, now, settings)[0], now
        tz = settings.tz
        if query.get("hour"):
            start = _parse(query["hour"], "hour", "a local time like 2026-03-02T14:00")
            since = datetime.combine(start.date(), time(start.hour), tz)
            until = since + timedelta(hours=1)
        elif query.get("day"):
            day = _parse(query["day"], "day", "a date like 2026-03-02").date()
            since, until = local_day_bounds(day, tz)
        topic = query.get("topic", "")
        if topic and not topic.isdigit():
            raise ValueError(f"topic {topic!r}: give a topic number, e.g. topic=12")
        return cls(
            since,
            until,
            filters,
            int(topic) if topic else None,
            query.get("word", "").strip(),
            query.get("q", "").strip(),
        )


def _parse(value: str, name: str, expected: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} {value!r}: give {expected}") from None


def word_matches(text: str, word: str) -> bool:
    """Whether ``text`` contains ``word`` in any of the forms the word cloud merges into it
    (bus / buses, autobús / autobuses)."""
    key = stem(word)
    return any(stem(token) == key for token in re.findall(TOKEN_PATTERN, text))


def _like(column: Any, text: str) -> ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def _message_select(query: MessageQuery) -> Select:
    statement = select(Message).where(
        Message.received_at >= query.since,
        Message.received_at < query.until,
        *_message_filters(query.filters),
    )
    if query.topic_id is not None:
        statement = statement.where(Message.topic_id == query.topic_id)
    if query.search:
        statement = statement.where(
            or_(_like(Message.body, query.search), _like(Message.subject, query.search))
        )
    if query.word:
        # Candidates hold the word as written or its merged stem; each is then checked by form.
        forms = {query.word.lower(), stem(query.word), fold(query.word)}
        statement = statement.where(or_(*(_like(Message.body, f) for f in sorted(forms))))
    return statement.order_by(Message.received_at.desc(), Message.id.desc())


def find_messages(engine: Engine, query: MessageQuery, limit: int = MESSAGE_LIMIT) -> list[Message]:
    """The newest ``limit`` messages matching ``query``."""
    statement = _message_select(query)
    with read_session(engine) as session:
        if not query.word:
            return list(session.scalars(statement.limit(limit)))
        found = []
        for message in session.scalars(statement.limit(WORD_SCAN_LIMIT)):
            if word_matches(message.body, query.word):
                found.append(message)
                if len(found) == limit:
                    break
        return found


def message_rows(
    messages: list[Message], labels: dict[int, str], settings: Settings, with_text: bool
) -> list[dict[str, Any]]:
    """Grid rows; the message text only ``with_text`` (analysts), never for viewers."""
    rows = []
    for m in messages:
        row = {
            "id": m.id,
            "received": m.received_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M"),
            "channel": m.source_kind,
            "source": m.source_name,
            "topic": labels.get(m.topic_id, "") if m.topic_id is not None else "",
            "topic_id": m.topic_id,
            "school": m.school or "",
            "language": m.language or "",
            "sentiment": None if m.sentiment is None else round(m.sentiment, 2),
            "risk": m.risk_level,
        }
        if with_text:
            row["subject"] = m.subject or ""
            row["text"] = m.body
        rows.append(row)
    return rows


def topic_labels(engine: Engine, messages: list[Message]) -> dict[int, str]:
    """The display labels of the messages' topics."""
    ids = (m.topic_id for m in messages if m.topic_id is not None)
    return {i: t.display_label for i, t in topics_by_id(engine, ids).items()}


@dataclass(frozen=True)
class TopicBreakdown:
    """A topic's messages over a window: per day, and per channel, school and language."""

    daily: pd.DataFrame  # columns day (date), n
    by_channel: dict[str, int]
    by_school: dict[str, int]
    by_language: dict[str, int]


def topic_breakdown(
    engine: Engine, settings: Settings, topic_id: int, first: date, last: date
) -> TopicBreakdown:
    """Counts of ``topic_id``'s messages from local date ``first`` to ``last``, inclusive."""
    since = local_day_bounds(first, settings.tz)[0]
    until = local_day_bounds(last, settings.tz)[1]
    window = and_(
        Message.topic_id == topic_id, Message.received_at >= since, Message.received_at < until
    )
    with read_session(engine) as session:
        times = session.scalars(select(Message.received_at).where(window)).all()
        parts = {
            name: dict(
                session.execute(
                    select(func.coalesce(column, ""), func.count(Message.id))
                    .where(window)
                    .group_by(func.coalesce(column, ""))
                ).all()
            )
            for name, column in (
                ("channel", Message.source_kind),
                ("school", Message.school),
                ("language", Message.language),
            )
        }
    days = pd.Series([t.astimezone(settings.tz).date() for t in times], dtype=object)
    counts = days.value_counts()
    every_day = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    daily = pd.DataFrame({"day": every_day, "n": [int(counts.get(d, 0)) for d in every_day]})

    def ordered(found: dict[str, int]) -> dict[str, int]:
        named = ((k or "(none)", int(n)) for k, n in found.items())
        return dict(sorted(named, key=lambda kn: (-kn[1], kn[0])))

    return TopicBreakdown(
        daily, ordered(parts["channel"]), ordered(parts["school"]), ordered(parts["language"])
    )


def get_topic(engine: Engine, topic_id: int) -> Topic | None:
    """One topic (any status), or None."""
    return topics_by_id(engine, [topic_id]).get(topic_id)


def get_message(engine: Engine, message_id: int) -> Message | None:
    """One message, or None."""
    with read_session(engine) as session:
        return session.get(Message, message_id)


def risk_text(message: Message) -> str:
    """The risk level with its categories, e.g. ``urgent (self_harm)``."""
    if message.risk_level == "none":
        return "none"
    categories = ", ".join(message.risk_categories or [])
    review = f", {message.risk_review}" if message.risk_review else ""
    return f"{message.risk_level} ({categories}{review})" if categories else message.risk_level
