"""The demo corpus and the demo source's rhythm, bursts and determinism."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from core.db import read_session
from core.models import SOURCE_KINDS, Message
from ingestion.demo import (
    BUS_ROUTE_FAILURE,
    SNOW_MORNING,
    DemoSource,
    burst_on,
    expected_per_hour,
    load_corpus,
)
from ingestion.runner import sync_source

TAXONOMY = {
    "transportation", "food_service", "safety_security", "bullying", "attendance",
    "grades_report_cards", "special_education", "technology_devices", "enrolment_registration",
    "health", "facilities", "athletics_activities", "weather_closures", "staff_teachers",
    "communication", "budget_bond_levy",
}  # fmt: skip
EASTERN_WEDNESDAY_8AM = datetime(2026, 1, 14, 13, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_corpus_is_large_varied_and_distinct(corpus):
    assert len(corpus) >= 600
    assert len({m.body.strip().casefold() for m in corpus}) == len(corpus), "duplicate bodies"
    assert len({m.id for m in corpus}) == len(corpus)
    topics = Counter(m.topic for m in corpus)
    assert set(topics) >= TAXONOMY and len(topics) >= 16
    assert min(topics.values()) >= 20
    assert sum(m.lang == "es" for m in corpus) / len(corpus) >= 0.20
    assert {m.channel for m in corpus} == {"email", "sms", "social", "webform", "voicemail"}
    assert {m.role for m in corpus} == {"parent", "student", "staff", "neighbour"}
    lengths = sorted(len(m.body) for m in corpus)
    assert lengths[len(lengths) // 10] < 60 and lengths[-len(lengths) // 10] > 300
    assert sum(any(ord(c) > 0x1F000 for c in m.body) for m in corpus) >= 30  # emoji


def test_corpus_has_risk_messages_and_hard_negatives(corpus):
    risk = Counter(m.risk for m in corpus)
    assert risk["urgent"] >= 5 and risk["review"] >= 3
    hard = [m for m in corpus if m.hard_negative]
    assert len(hard) >= 10 and all(m.risk == "none" for m in hard)
    assert any(m.lang == "es" for m in hard)
    for m in corpus:
        assert m.channel in SOURCE_KINDS
        assert (m.subject is not None) == (m.channel in ("email", "webform")), m.id


def test_school_day_rhythm_quiet_nights_peaks_and_quiet_weekends():
    seed = 7
    monday = datetime(2026, 1, 12, tzinfo=UTC).date()
    # find a Monday without a burst, then compare its hours (local wall clock)
    while burst_on(monday, seed) is not None:
        monday += timedelta(days=7)
    day = [expected_per_hour(datetime(monday.year, monday.month, monday.day, h), 2000, seed)
           for h in range(24)]  # fmt: skip
    assert day[7] > 15 * day[3]  # before school vs the middle of the night
    assert day[15] > 2 * day[11] / 1.5 and day[15] > day[12]  # dismissal peak
    assert sum(day) == pytest.approx(2000)
    saturday = monday + timedelta(days=5)
    weekend = [expected_per_hour(datetime(saturday.year, saturday.month, saturday.day, h), 2000,
                                 seed) for h in range(24)]  # fmt: skip
    assert sum(weekend) < 0.5 * sum(day)


def test_bursts_happen_on_some_school_days_only():
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(120)]
    bursts = {d: burst_on(d, 7) for d in days}
    assert all(b is None for d, b in bursts.items() if d.weekday() >= 5)
    kinds = Counter(b.name for b in bursts.values() if b)
    assert kinds[SNOW_MORNING.name] >= 3 and kinds[BUS_ROUTE_FAILURE.name] >= 3
    assert sum(kinds.values()) < 0.4 * len(days)
    june = [burst_on(date(2026, 6, d), 7) for d in range(1, 31)]
    assert SNOW_MORNING not in june


def test_a_snow_morning_floods_weather_topic(settings, corpus):
    snow_day = next(d for d in (date(2026, 1, 1) + timedelta(days=i) for i in range(90))
                    if burst_on(d, settings.demo_seed) is SNOW_MORNING)  # fmt: skip
    source = DemoSource(settings, corpus)
    local = datetime(snow_day.year, snow_day.month, snow_day.day, 7, tzinfo=settings.tz)
    weights = dict(zip(source.topics, source.topic_weights(local), strict=True))
    normal = dict(zip(source.topics, source.topic_weights(local + timedelta(days=28)),
                      strict=True))  # fmt: skip
    assert weights["weather_closures"] > 10 * normal["weather_closures"]
    assert max(weights, key=weights.get) == "weather_closures"
    assert np.isclose(sum(weights.values()), 1)


def test_hours_are_deterministic_and_ids_unique(settings, corpus):
    source = DemoSource(settings, corpus)
    first = source.hour_messages(EASTERN_WEDNESDAY_8AM)
    again = DemoSource(settings, corpus).hour_messages(EASTERN_WEDNESDAY_8AM)
    assert [m.external_id for m in first] == [m.external_id for m in again]
    assert [m.body for m in first] == [m.body for m in again]
    assert len(first) > 50 and len({m.external_id for m in first}) == len(first)
    assert all(EASTERN_WEDNESDAY_8AM <= m.received_at < EASTERN_WEDNESDAY_8AM + timedelta(hours=1)
               for m in first)  # fmt: skip
    kinds = {m.source_kind for m in first}
    assert kinds <= set(SOURCE_KINDS) and len(kinds) >= 3


def test_fetch_backfills_then_streams_without_gaps_or_duplicates(db_engine, settings, corpus):
    start = EASTERN_WEDNESDAY_8AM + timedelta(minutes=30)
    now = [start]
    settings.demo_backfill_days = 2
    source = DemoSource(settings, corpus, clock=lambda: now[0])
    first = sync_source(db_engine, source, settings)
    assert first.new > 1000  # two days of history at once
    for _ in range(5):
        now[0] += timedelta(minutes=2)
        sync_source(db_engine, source, settings)
    with read_session(db_engine) as session:
        total = session.scalar(select(func.count(Message.id)))
        oldest, newest = session.execute(
            select(func.min(Message.received_at), func.max(Message.received_at))
        ).one()
    expected = list(source.messages_between(start - timedelta(days=2), now[0]))
    assert total == len(expected)
    assert oldest >= start - timedelta(days=2) and newest <= now[0]
    rerun = DemoSource(settings, corpus, clock=lambda: now[0])
    assert sync_source(db_engine, rerun, settings).new == 0  # a lost cursor adds nothing
