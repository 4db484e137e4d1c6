"""Emerging topics: new topics and dense groups of unassigned messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from alerts.emerging import cluster_signals, new_topic_signals
from ingestion.demo import load_corpus
from topics.embeddings import DEFAULT_MODEL, load_embedder

NOW = datetime(2025, 11, 5, 15, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)

# One incident, written the ways parents would write about it (English and Spanish).
INCIDENT = [
    "Is it true there was a water main break at Lincoln Elementary?",
    "Heard a pipe burst at Lincoln and the gym is flooded, are classes cancelled?",
    "Lincoln Elementary flooding this morning - do I pick up my daughter early?",
    "There's water everywhere in the Lincoln hallway, what happened?",
    "Water main break near Lincoln school, is the building safe?",
    "My son says the Lincoln cafeteria flooded. Is lunch still being served?",
    "Why is there no running water at Lincoln Elementary today?",
    "Is Lincoln closed tomorrow because of the flooding?",
    "¿Es cierto que se rompió una tubería en la escuela Lincoln?",
    "La escuela Lincoln está inundada, ¿hay clases mañana?",
    "Lincoln elementary pipe burst, parents need information please",
    "Flood at Lincoln Elementary - will buses still run there?",
    "What's the plan for Lincoln students after the water main break?",
    "Got a text that Lincoln has no water. Should kids bring water bottles?",
]


def counts(rows):
    return pd.DataFrame(rows, columns=["topic_id", "bucket_start", "n"])


def test_a_new_topic_reaching_the_minimum_in_a_day_is_emerging():
    first_seen = {7: NOW - 5 * HOUR, 8: NOW - 3 * HOUR, 1: NOW - timedelta(days=40)}
    hourly = counts(
        [
            (7, datetime(2025, 11, 5, 11, tzinfo=UTC), 6),
            (7, datetime(2025, 11, 5, 15, tzinfo=UTC), 5),  # the current, partial hour
            (8, datetime(2025, 11, 5, 13, tzinfo=UTC), 4),  # too few
            (1, datetime(2025, 11, 5, 13, tzinfo=UTC), 90),  # an old topic
        ]
    )
    [signal] = new_topic_signals(first_seen, hourly, NOW, min_messages=10)
    assert (signal.kind, signal.topic_id, signal.count) == ("new_topic", 7, 11)
    assert signal.fingerprint == "emerging:topic:7"
    assert signal.first_at == NOW - 5 * HOUR
    assert signal.last_at == datetime(2025, 11, 5, 15, tzinfo=UTC)


def test_a_topic_first_seen_over_a_day_ago_is_no_longer_new():
    first_seen = {7: NOW - 25 * HOUR}
    hourly = counts([(7, NOW - 2 * HOUR, 50)])
    assert new_topic_signals(first_seen, hourly, NOW) == []
    assert new_topic_signals({}, hourly, NOW) == []


def synthetic(seed=0, dim=64, background=150, members=12):
    """Unrelated unit vectors plus a tight group (cosine ~0.6 to each other)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(background, dim))
    centre = rng.normal(size=dim)
    centre /= np.linalg.norm(centre)
    group = centre + rng.normal(scale=0.8 / np.sqrt(dim), size=(members, dim))
    vectors = np.vstack([noise, group])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    times = [NOW - timedelta(minutes=int(m)) for m in rng.integers(1, 23 * 60, len(vectors))]
    ids = list(range(1000, 1000 + len(vectors)))
    return ids, vectors, times


def test_a_dense_group_of_unassigned_messages_is_emerging():
    ids, vectors, times = synthetic()
    [signal] = cluster_signals(ids, vectors, times, NOW, reference=np.zeros(64))
    group = set(ids[-12:])
    assert signal.kind == "cluster" and signal.topic_id is None
    assert set(signal.message_ids) == group and signal.count == 12
    earliest = min(group, key=lambda i: times[ids.index(i)])
    assert signal.fingerprint == f"emerging:cluster:{earliest}"
    assert signal.first_at == min(times[ids.index(i)] for i in group)
    centre = vectors[-12:].mean(axis=0)
    assert signal.message_ids[0] == ids[int(np.argmax(vectors @ centre))]  # most typical first


def test_only_the_last_day_counts_and_small_groups_are_not_emerging():
    ids, vectors, times = synthetic()
    older = [NOW - timedelta(hours=30)] * 4 + [NOW - HOUR] * 8
    times = times[:-12] + older  # 4 of the group are older than a day
    assert cluster_signals(ids, vectors, times, NOW, reference=np.zeros(64)) == []
    assert cluster_signals(ids[:5], vectors[:5], times[:5], NOW) == []


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(DEFAULT_MODEL)


def test_an_incident_stands_out_among_everyday_messages_with_real_embeddings(embedder):
    corpus = load_corpus()[::6]  # ~130 everyday messages of every demo topic
    everyday = embedder.encode([item.body for item in corpus])
    incident = embedder.encode(INCIDENT)
    topics = sorted({item.topic for item in corpus})
    centroids = [
        everyday[[i for i, c in enumerate(corpus) if c.topic == t]].mean(0) for t in topics
    ]
    vectors = np.vstack([everyday, incident])
    ids = list(range(len(vectors)))
    times = [NOW - timedelta(minutes=10 * (i % 120)) for i in ids]
    found = cluster_signals(ids, vectors, times, NOW, reference=np.mean(centroids, axis=0))
    assert len(found) == 1
    members = set(found[0].message_ids)
    incident_ids = set(ids[len(everyday) :])
    assert len(members & incident_ids) >= 10
    assert len(members - incident_ids) <= 1
