"""The daily digest for the communications team: one local date, as data and as an email.

:func:`digest_data` gathers a :class:`DigestData` with plain queries (the dashboard's daily
review shows the same data): the day's volume, by channel and by topic, against what is usual;
new topics; alerts that fired; notable messages; the day's word weights. "Usual" is the mean
over the comparable days of the ``USUAL_WEEKS`` weeks before: days of the same day type in the
school calendar (school day, weekend, break) without a known event, after the first stored
message's day (a young database compares with what it has; with nothing, there is no usual).

:func:`render_digest` makes the email (text and HTML, the word cloud inline as a ``data:`` PNG
that the mailer sends as a ``cid:`` part); message text in it is masked like alert samples, and
risk-flagged messages are only counted. :func:`queue_digest` puts one email per recipient in the
outbox; every recipient gets a date's digest once, however often it is queued.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from wordcloud import WordCloud

from alerts.calendar import SchoolCalendar
from alerts.engine import school_calendar
from alerts.outbox import enqueue
from alerts.render import (
    KIND_COLOURS,
    KIND_TITLES,
    RenderedEmail,
    messages_text,
    number_text,
    sample_text,
    template_env,
)
from core.campaigns import Campaign, campaigns
from core.db import read_session, write_session
from core.models import Alert, Message, Notification, utcnow
from core.queries import (
    alerts_fired,
    daily_counts,
    first_message_at,
    local_day_bounds,
    messages_by_id,
    most_negative_messages,
    new_topics,
    risk_flag_counts,
    topics_by_id,
)
from core.settings import Settings
from topics.words import topic_words

log = logging.getLogger(__name__)

USUAL_WEEKS = 4
TOP_TOPICS = 5
NEGATIVE_MESSAGES = 3
NEGATIVE_BELOW = -0.3  # sentiment under which a message counts as clearly negative
CLOUD_WORDS = 80
CLOUD_SIZE = (640, 320)
NEW_TOPIC_WORDS = 5


@dataclass(frozen=True)
class Count:
    """A count on the day beside its usual value (``None``: no comparable day yet)."""

    name: str
    n: int
    usual: float | None
    topic_id: int | None = None

    @property
    def change(self) -> float | None:
        """The relative change against usual (0.25 = 25 % more); None without a usual above 0."""
        return None if not self.usual else (self.n - self.usual) / self.usual


@dataclass(frozen=True)
class NewTopic:
    """A topic first seen on the day."""

    topic_id: int
    label: str
    n: int
    words: list[str]


@dataclass(frozen=True)
class FiredAlert:
    """An alert that fired on the day."""

    kind: str
    label: str
    fired_at: datetime
    severity: str
    observed: float | None
    expected: float | None


@dataclass(frozen=True)
class Notable:
    """A notable message, its text already masked and shortened."""

    message_id: int
    text: str
    received_at: datetime
    source_kind: str
    sentiment: float | None
    topic: str | None


@dataclass(frozen=True)
class CampaignNote:
    """The day's largest near-duplicate campaign: its size and one masked sample."""

    size: int
    identical: int
    sample: str
    topic: str | None


@dataclass(frozen=True)
class DigestData:
    """Everything the digest says about one local date."""

    day: date
    day_type: str
    events: list[str]
    comparison_days: int  # how many days the usual values are the mean of
    volume: Count
    channels: list[Count]
    top_topics: list[Count]
    new_topics: list[NewTopic]
    alerts: list[FiredAlert]
    negative: list[Notable]
    risk_flags: dict[str, int]  # review / urgent counts; never their text
    campaign: CampaignNote | None
    words: list[tuple[str, float]]

    @property
    def empty(self) -> bool:
        """Whether no message arrived on the day."""
        return self.volume.n == 0


def yesterday(settings: Settings, now: datetime | None = None) -> date:
    """The local date before ``now`` (default: the current time) in the district's time zone."""
    return (now or utcnow()).astimezone(settings.tz).date() - timedelta(days=1)


def comparison_days(day: date, calendar: SchoolCalendar, data_since: date | None) -> list[date]:
    """The days ``day`` is compared with: same day type, no known event, after ``data_since``."""
    if data_since is None:
        return []
    kind = calendar.day_type(day)
    days = (day - timedelta(days=k) for k in range(1, 7 * USUAL_WEEKS + 1))
    return [
        d
        for d in days
        if d > data_since and calendar.day_type(d) == kind and calendar.is_ordinary(d)
    ]


def digest_data(
    engine: Engine, settings: Settings, day: date, calendar: SchoolCalendar | None = None
) -> DigestData:
    """The digest's data for the local date ``day``.

    The default calendar is the district's: its calendar file and the stored known events.
    """
    calendar = calendar or school_calendar(engine, settings)
    tz = settings.tz
    start, end = local_day_bounds(day, tz)
    first = first_message_at(engine)
    compared = comparison_days(day, calendar, first.astimezone(tz).date() if first else None)
    counts = daily_counts(engine, min([day, *compared]), day, tz)
    today = counts[counts["day"] == day]
    history = counts[counts["day"].isin(compared)]
    fired = alerts_fired(engine, start, end)
    fresh = new_topics(engine, start, end)
    negative = most_negative_messages(engine, start, end, NEGATIVE_MESSAGES, NEGATIVE_BELOW)
    biggest = next(iter(campaigns(engine, start, end)), None)
    sample = messages_by_id(engine, biggest.message_ids[:1]) if biggest else []
    by_topic = today.dropna(subset=["topic_id"]).groupby("topic_id")["n"].sum()
    top = by_topic.sort_values(ascending=False, kind="stable").head(TOP_TOPICS)
    labels = _labels(
        engine,
        [int(i) for i in top.index]
        + [t.id for t in fresh]
        + [a.topic_id for a in fired]
        + [m.topic_id for m in negative + sample],
    )
    return DigestData(
        day=day,
        day_type=calendar.day_type(day),
        events=[event.name for event in calendar.events_on(day)],
        comparison_days=len(compared),
        volume=Count("All channels", int(today["n"].sum()), _usual(history, None, compared)),
        channels=_channels(today, history, compared),
        top_topics=[
            Count(labels[int(i)], int(n), _usual(history, ("topic_id", int(i)), compared), int(i))
            for i, n in top.items()
        ],
        new_topics=[
            NewTopic(
                t.id,
                labels[t.id],
                int(by_topic.get(t.id, 0)),
                [str(pair[0]) for pair in (t.words or [])[:NEW_TOPIC_WORDS]],
            )
            for t in fresh
        ],
        alerts=[_fired(alert, labels) for alert in fired],
        negative=[
            Notable(
                m.id,
                sample_text(m.body),
                m.received_at,
                m.source_kind,
                m.sentiment,
                labels.get(m.topic_id),
            )
            for m in negative
        ],
        risk_flags=risk_flag_counts(engine, start, end),
        campaign=_campaign(biggest, sample, labels),
        words=topic_words(engine, settings, None, start, end, CLOUD_WORDS),
    )


def _labels(engine: Engine, ids: list[int | None]) -> dict[int | None, str]:
    topics = topics_by_id(engine, (i for i in ids if i is not None))
    return {i: t.display_label for i, t in topics.items()}


def _usual(
    history: pd.DataFrame, where: tuple[str, Any] | None, compared: list[date]
) -> float | None:
    if not compared:
        return None
    if where is not None:
        history = history[history[where[0]] == where[1]]
    return float(history["n"].sum()) / len(compared)


def _channels(today: pd.DataFrame, history: pd.DataFrame, compared: list[date]) -> list[Count]:
    kinds = set(today["source_kind"]) | set(history["source_kind"])
    by_kind = today.groupby("source_kind")["n"].sum()
    rows = [
        Count(kind, int(by_kind.get(kind, 0)), _usual(history, ("source_kind", kind), compared))
        for kind in kinds
    ]
    return sorted(rows, key=lambda c: (-c.n, -(c.usual or 0), c.name))


def _fired(alert: Alert, labels: dict[int | None, str]) -> FiredAlert:
    if alert.topic_id is not None and alert.topic_id in labels:
        label = labels[alert.topic_id]
    elif alert.kind == "source_down":
        label = alert.fingerprint.partition(":")[2] or alert.fingerprint
    elif alert.kind == "risk":  # the category only: a risk message's text stays in the queue
        label = ", ".join((alert.details or {}).get("categories", [])) or "flagged message"
    else:
        label = alert.fingerprint
    return FiredAlert(
        alert.kind, label, alert.fired_at, alert.severity, alert.observed, alert.expected
    )


def _campaign(
    found: Campaign | None, sample: list[Message], labels: dict[int | None, str]
) -> CampaignNote | None:
    if found is None or not sample:
        return None
    first = sample[0]
    return CampaignNote(
        found.size, found.identical, sample_text(first.body), labels.get(first.topic_id)
    )


def word_cloud_png(words: list[tuple[str, float]]) -> bytes:
    """A word cloud of ``(word, weight)`` pairs as PNG bytes (the same words, the same image)."""
    if not words:
        raise ValueError("word_cloud_png needs at least one word")
    width, height = CLOUD_SIZE
    cloud = WordCloud(
        width=width,
        height=height,
        background_color="white",
        prefer_horizontal=1.0,
        random_state=0,
        colormap="Dark2",
    ).generate_from_frequencies(dict(words))
    buffer = io.BytesIO()
    cloud.to_image().save(buffer, format="PNG")
    return buffer.getvalue()


def render_digest(data: DigestData, settings: Settings) -> RenderedEmail:
    """The digest email for ``data``: subject, text, and HTML with the word cloud inline."""
    day = f"{data.day:%a} {data.day.day} {data.day:%b %Y}"
    volume = messages_text(data.volume.n)
    if data.volume.usual is not None:
        volume += f" (usually {number_text(data.volume.usual)})"
    subject = f"[Pulse] Daily digest, {day}: {volume}"
    image = None
    if data.words:
        image = "data:image/png;base64," + base64.b64encode(word_cloud_png(data.words)).decode()
    values = {
        "subject": subject,
        "day": day,
        "district": settings.district_name,
        "empty": data.empty,
        "context": day_context(data),
        "volume": count_row(data.volume),
        "channels": [count_row(c) for c in data.channels],
        "topics": [count_row(c) for c in data.top_topics],
        "new_topics": [
            {"label": t.label, "n": messages_text(t.n), "words": ", ".join(t.words)}
            for t in data.new_topics
        ],
        "alerts": [alert_row(a, settings) for a in data.alerts],
        "negative": [_notable(m, settings) for m in data.negative],
        "risk": risk_text(data.risk_flags),
        "campaign": _campaign_text(data.campaign),
        "image": image,
        "words": ", ".join(word for word, _ in data.words[:10]),
        "review_url": f"{settings.public_url.rstrip('/')}/review?date={data.day.isoformat()}",
    }
    text = template_env.get_template("digest.txt.j2").render(values)
    html = template_env.get_template("digest.html.j2").render(values)
    return RenderedEmail(subject, text, html)


def digest_recipients(settings: Settings) -> list[str]:
    """The addresses of ``settings.digest_recipients`` (a comma-separated list)."""
    return [part.strip() for part in settings.digest_recipients.split(",") if part.strip()]


def queue_digest(
    engine: Engine, settings: Settings, day: date, calendar: SchoolCalendar | None = None
) -> int:
    """Queue ``day``'s digest for each recipient that has not had it; returns how many were new.

    The digest is only gathered and rendered when someone still needs it; the outbox's dedup
    key (``digest:<date>`` and the recipient) keeps a second run, or a race, from adding any.
    """
    recipients = digest_recipients(settings)
    if not recipients:
        log.info("digest %s: PULSE_DIGEST_RECIPIENTS is empty, nothing queued", day)
        return 0
    with read_session(engine) as session:
        query = select(Notification.recipient).where(Notification.digest_date == day)
        done = {address.lower() for address in session.scalars(query)}
    missing = [address for address in recipients if address.lower() not in done]
    if not missing:
        return 0
    email = render_digest(digest_data(engine, settings, day, calendar), settings)
    with write_session(engine) as session:
        queued = enqueue(
            session,
            f"digest:{day.isoformat()}",
            missing,
            email.subject,
            email.text,
            email.html,
            digest_date=day,
        )
    log.info("digest %s: queued for %d recipient(s)", day, queued)
    return queued


def queue_yesterdays_digest(engine: Engine, settings: Settings) -> int:
    """Queue the digest of yesterday (local date): the worker's daily job."""
    return queue_digest(engine, settings, yesterday(settings))


def day_context(data: DigestData) -> str:
    """What kind of day it was (and its events) and what "usual" means for it."""
    kind = {"school_day": "A school day", "weekend": "A weekend day", "break": "A break day"}
    text = kind.get(data.day_type, data.day_type)
    if data.events:
        text += f" ({', '.join(data.events)})"
    if data.comparison_days:
        plural = "s" if data.comparison_days != 1 else ""
        text += (
            f"; usual = the average of {data.comparison_days} such day{plural} "
            f"in the {USUAL_WEEKS} weeks before"
        )
    else:
        text += "; no comparable earlier day yet, so no usual values"
    return text


def count_row(count: Count) -> dict[str, Any]:
    """A count as a table row: its name, number, usual value and change ("new", "no history")."""
    change = count.change
    if count.usual is None:
        trend = "no history"
    elif change is None:
        trend = "new" if count.n else "—"
    else:
        trend = f"{change:+.0%}"
    usual = "—" if count.usual is None else number_text(count.usual)
    return {"name": count.name, "n": count.n, "usual": usual, "trend": trend}


def alert_row(alert: FiredAlert, settings: Settings) -> dict[str, Any]:
    """A fired alert as a title, a detail line (local time, severity, counts) and a colour."""
    title = f"{KIND_TITLES.get(alert.kind, alert.kind)}: {alert.label}"
    detail = f"fired {alert.fired_at.astimezone(settings.tz):%H:%M}, {alert.severity}"
    if alert.kind != "risk" and alert.observed is not None:
        detail += f", {number_text(alert.observed)} messages"
        if alert.expected is not None:
            detail += f" (usually {number_text(alert.expected)})"
    return {"title": title, "detail": detail, "colour": KIND_COLOURS.get(alert.kind, "#495057")}


def _notable(message: Notable, settings: Settings) -> dict[str, str]:
    where = f"{message.received_at.astimezone(settings.tz):%H:%M}, {message.source_kind}"
    if message.topic:
        where += f", {message.topic}"
    return {"text": message.text, "where": where}


def risk_text(flags: dict[str, int]) -> str:
    """The day's risk-flag counts as a sentence (never the flagged messages' text)."""
    urgent, review = flags.get("urgent", 0), flags.get("review", 0)
    if not urgent and not review:
        return "No message was flagged for risk."
    return (
        f"{messages_text(urgent + review)} flagged for risk ({urgent} urgent, {review} to review): "
        "read and review them in the risk queue."
    )


def _campaign_text(campaign: CampaignNote | None) -> dict[str, str] | None:
    if campaign is None:
        return None
    summary = f"{campaign.size} near-identical messages ({campaign.identical} word for word)"
    if campaign.topic:
        summary += f", topic {campaign.topic}"
    return {"summary": summary, "sample": campaign.sample}
