"""The demo source: replays the hand-written corpus in data/demo live, with a school-day rhythm.

Each hour's messages are drawn from a random generator seeded by (seed, hour), so the stream is
deterministic: a re-run over the same hours yields the same external IDs and stores nothing twice.
Volume follows the district's local clock (quiet nights, a morning peak before school, an
afternoon peak at dismissal, fewer on weekends) and some school days carry a burst: a snow
morning or a bus route failing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from core.models import utcnow
from core.settings import DATA_DIR, Settings
from ingestion.base import Cursor, RawMessage

CORPUS_DIR = DATA_DIR / "demo"
SOURCE_NAME = "demo"

# Share of a day's messages per local hour (0..23), on school days and on weekends.
WEEKDAY_PROFILE = np.array(
    [
        1,
        0.5,
        0.3,
        0.3,
        0.5,
        2,
        6,
        11,
        9,
        6,
        5,
        4.5,
        4.5,
        4,
        5.5,
        7,
        6,
        5,
        4.5,
        4.5,
        4,
        3.5,
        2.5,
        1.5,
    ]
)
WEEKEND_PROFILE = np.array(
    [1.5, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3.5, 5, 6, 6.5, 6.5, 6, 6, 6, 6, 6, 6, 6.5, 6.5, 6, 4.5, 3]
)
WEEKDAY_PROFILE = WEEKDAY_PROFILE / WEEKDAY_PROFILE.sum()
WEEKEND_PROFILE = WEEKEND_PROFILE / WEEKEND_PROFILE.sum()
WEEKEND_VOLUME = 0.3  # a weekend day carries this share of a school day's volume
RISK_MESSAGE_WEIGHT = 0.1  # risk messages are rare: picked this much less often than others

# Everyday weight of each topic; unlisted topics weigh 1.
TOPIC_WEIGHTS = {
    "transportation": 1.6,
    "weather_closures": 0.4,
    "communication": 1.2,
    "food_service": 1.2,
    "pickup_traffic": 0.8,
    "phone_policy": 0.7,
    "start_times": 0.6,
}


@dataclass(frozen=True)
class Burst:
    """A day's surge: local hours it covers, extra volume, and how much each topic is boosted."""

    name: str
    hours: range
    volume: float
    boost: dict[str, float] = field(default_factory=dict)


SNOW_MORNING = Burst(
    "snow morning", range(5, 11), 3.0, {"weather_closures": 40, "transportation": 4}
)
BUS_ROUTE_FAILURE = Burst("bus route failing", range(6, 10), 1.8, {"transportation": 12})
SNOW_MONTHS = {11, 12, 1, 2, 3}
SNOW_CHANCE = 0.12
BUS_FAILURE_CHANCE = 0.12


@dataclass(frozen=True)
class CorpusMessage:
    """One hand-written demo message; ``topic`` is the name of the file it came from."""

    id: str
    topic: str
    lang: str
    channel: str
    role: str
    school: str | None
    subject: str | None
    body: str
    risk: str
    hard_negative: bool


def load_corpus(directory: Path = CORPUS_DIR) -> list[CorpusMessage]:
    """All demo messages, one file per topic (``<topic>.jsonl``)."""
    corpus = []
    for path in sorted(directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            corpus.extend(CorpusMessage(topic=path.stem, **json.loads(line)) for line in lines)
    if not corpus:
        raise FileNotFoundError(f"no demo messages (*.jsonl) in {directory}")
    return corpus


def burst_on(day: date, seed: int) -> Burst | None:
    """The burst, if any, on a local calendar day (school days only; snow only in winter)."""
    if day.weekday() >= 5:
        return None
    draw = random.Random(f"{seed}:{day.isoformat()}").random()
    if day.month in SNOW_MONTHS and draw < SNOW_CHANCE:
        return SNOW_MORNING
    if SNOW_CHANCE <= draw < SNOW_CHANCE + BUS_FAILURE_CHANCE:
        return BUS_ROUTE_FAILURE
    return None


def _burst_at(local: datetime, seed: int) -> Burst | None:
    burst = burst_on(local.date(), seed)
    return burst if burst is not None and local.hour in burst.hours else None


def expected_per_hour(local: datetime, messages_per_day: float, seed: int) -> float:
    """Expected demo messages in the local hour starting at ``local``."""
    if local.weekday() >= 5:
        rate = messages_per_day * WEEKEND_VOLUME * WEEKEND_PROFILE[local.hour]
    else:
        rate = messages_per_day * WEEKDAY_PROFILE[local.hour]
    burst = _burst_at(local, seed)
    return rate * (burst.volume if burst else 1.0)


class DemoSource:
    """A connector that emits the demo corpus as if the community were writing in right now."""

    name = SOURCE_NAME
    kind = "demo"

    def __init__(
        self,
        settings: Settings,
        corpus: list[CorpusMessage] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.interval_seconds = settings.demo_interval_seconds
        self.clock = clock
        self.corpus = corpus if corpus is not None else load_corpus()
        self.topics = sorted({m.topic for m in self.corpus})
        self.by_topic = {t: [m for m in self.corpus if m.topic == t] for t in self.topics}
        self.pick_weights = {
            t: _normalised([RISK_MESSAGE_WEIGHT if m.risk != "none" else 1.0 for m in msgs])
            for t, msgs in self.by_topic.items()
        }

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """Messages after the cursor up to now; the first fetch back-fills the configured days."""
        now = self.clock()
        if cursor:  # after a long stop, catch up at most a day (or the back-fill, if longer)
            catch_up = timedelta(days=max(self.settings.demo_backfill_days, 1))
            since = max(datetime.fromisoformat(cursor["until"]), now - catch_up)
        else:
            since = now - timedelta(days=self.settings.demo_backfill_days)
        return list(self.messages_between(since, now)), {"until": now.isoformat()}

    def messages_between(self, start: datetime, end: datetime) -> Iterator[RawMessage]:
        """Messages received in (start, end]."""
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour <= end:
            for message in self.hour_messages(hour):
                if start < message.received_at <= end:
                    yield message
            hour += timedelta(hours=1)

    def topic_weights(self, local: datetime) -> np.ndarray:
        """Probability of each topic (in ``self.topics`` order) for a message in that hour."""
        burst = _burst_at(local, self.settings.demo_seed)
        boost = burst.boost if burst else {}
        return _normalised([TOPIC_WEIGHTS.get(t, 1.0) * boost.get(t, 1.0) for t in self.topics])

    def hour_messages(self, hour_start: datetime) -> list[RawMessage]:
        """Every demo message of the UTC hour starting at ``hour_start`` (deterministic)."""
        stamp = int(hour_start.timestamp())
        rng = np.random.default_rng([self.settings.demo_seed, stamp])
        local = hour_start.astimezone(self.settings.tz)
        lam = expected_per_hour(local, self.settings.demo_messages_per_day, self.settings.demo_seed)
        count = int(rng.poisson(lam))
        offsets = np.sort(rng.uniform(0, 3600, count))
        topics = rng.choice(len(self.topics), size=count, p=self.topic_weights(local))
        messages = []
        for i, (offset, topic_index) in enumerate(zip(offsets, topics, strict=True)):
            topic = self.topics[topic_index]
            pick = rng.choice(len(self.by_topic[topic]), p=self.pick_weights[topic])
            item = self.by_topic[topic][pick]
            messages.append(
                RawMessage(
                    source_name=SOURCE_NAME,
                    external_id=f"{stamp}-{i}",
                    received_at=hour_start + timedelta(seconds=float(offset)),
                    body=item.body,
                    subject=item.subject,
                    author=_author(item, int(rng.integers(0, 500))),
                    source_kind=item.channel,
                    school=item.school,
                    metadata={"corpus_id": item.id, "topic": topic},
                )
            )
        return messages


def _normalised(weights: list[float]) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    return array / array.sum()


def _author(item: CorpusMessage, number: int) -> str:
    """A made-up sender address in the channel's format (example.org, 555-01xx numbers)."""
    if item.channel in ("email", "webform"):
        return f"{item.role}{number}@example.org"
    if item.channel == "social":
        return f"@{item.role}_{number}"
    return f"+1555{number:07d}"
