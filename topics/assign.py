"""Live assignment between refits: new messages join the nearest active topic, or stay new.

Every minute the worker embeds messages no one has scored yet (``topic_score IS NULL``), in
batches, through the embedding cache, and compares them with the active topics' centroids
(cosine). A message whose best similarity reaches ``settings.novelty_threshold`` joins that
topic; below it, it stays unassigned (``topic_id`` NULL) but keeps its best similarity in
``topic_score``, so it is never scored again until a refit clears or sets it. Unassigned messages
feed emerging-topic detection and the next refit.

A batch's assignments and its hourly ``topic_counts`` increments are written in one transaction,
and only for rows still unscored inside that transaction: a crash loses the batch (it is redone,
its embeddings are cached), a re-run or a concurrent run never counts a message twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.db import read_session, write_connection
from core.models import Message, Topic, TopicCount
from core.queries import hour_bucket
from core.settings import Settings
from topics.embeddings import Embedder, cached_embeddings, from_bytes

NEGATIVE_BELOW = -0.05  # a message with sentiment below this counts in n_negative


@dataclass(frozen=True)
class AssignResult:
    """What one assignment run did."""

    scored: int = 0  # messages compared with the topics (each exactly once)
    assigned: int = 0  # of those, joined a topic
    unassigned: int = 0  # of those, below the novelty threshold
    batches: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Messages scored per second (embedding included)."""
        return self.scored / self.seconds if self.seconds else 0.0


def active_centroids(engine: Engine, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and L2-normalised centroids (rows) of the active topics with a ``dim``-long centroid
    (another length means another embedding model: those wait for the next refit)."""
    with read_session(engine) as session:
        rows = session.execute(
            select(Topic.id, Topic.centroid)
            .where(Topic.status == "active", Topic.centroid.is_not(None))
            .order_by(Topic.id)
        ).all()
    found = [(i, from_bytes(c)) for i, c in rows if len(c) == dim * 4]
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
    centroids = np.vstack([c for _, c in found])
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.array([i for i, _ in found], dtype=np.int64), centroids / np.where(norms, norms, 1)


def nearest_topics(
    vectors: np.ndarray, topic_ids: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's nearest centroid's topic id and its cosine similarity (unit vectors)."""
    similarity = vectors @ centroids.T
    best = similarity.argmax(axis=1)
    return topic_ids[best], similarity[np.arange(len(vectors)), best]


def _unscored(engine: Engine, after_id: int, limit: int) -> list[int]:
    with read_session(engine) as session:
        return list(
            session.scalars(
                select(Message.id)
                .where(Message.topic_id.is_(None), Message.topic_score.is_(None))
                .where(Message.id > after_id)
                .order_by(Message.id)
                .limit(limit)
            )
        )


def assign_new_messages(
    engine: Engine, settings: Settings, embedder: Embedder, batch_size: int = 512
) -> AssignResult:
    """Assign every unscored message to its nearest active topic above the novelty threshold.

    Does nothing while no active topic has a centroid of the embedder's size (before the first
    refit, or after the embedding model changed: the next refit assigns everything).
    """
    started = time.perf_counter()
    topic_ids, centroids = active_centroids(engine, embedder.dim)
    if not len(topic_ids):
        return AssignResult(seconds=time.perf_counter() - started)
    threshold = settings.novelty_threshold
    scored = assigned = batches = 0
    last_id = 0
    while batch := _unscored(engine, last_id, batch_size):
        last_id = batch[-1]
        vectors = cached_embeddings(engine, embedder, batch)
        best, score = nearest_topics(vectors, topic_ids, centroids)
        score = np.nan_to_num(score, nan=-1.0)  # SQLite would store NaN as NULL: "unscored"
        chosen = {
            message_id: (int(topic) if s >= threshold else None, float(s))
            for message_id, topic, s in zip(batch, best, score, strict=True)
        }
        with write_connection(engine) as conn:
            done, joined = _write_batch(conn, chosen)
        scored += done
        assigned += joined
        batches += 1
    return AssignResult(scored, assigned, scored - assigned, batches, time.perf_counter() - started)


def _write_batch(conn: Connection, chosen: dict[int, tuple[int | None, float]]) -> tuple[int, int]:
    """Store a batch's topics and scores and count them, for rows still unscored now."""
    query = (
        select(
            Message.id, Message.received_at, Message.source_kind, Message.school, Message.sentiment
        )
        .where(Message.id.in_(list(chosen)))
        .where(Message.topic_id.is_(None), Message.topic_score.is_(None))
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # rows a refit holds are its business
    rows = conn.execute(query).all()
    if not rows:
        return 0, 0
    conn.execute(
        update(Message)
        .where(Message.id == bindparam("message_id"))
        .values(topic_id=bindparam("topic"), topic_score=bindparam("score")),
        [
            {"message_id": row.id, "topic": chosen[row.id][0], "score": chosen[row.id][1]}
            for row in rows
        ],
    )
    joined = [(row, chosen[row.id][0]) for row in rows if chosen[row.id][0] is not None]
    add_counts(conn, ((topic, row) for row, topic in joined))
    return len(rows), len(joined)


def hour_start(moment: datetime) -> datetime:
    """The start of ``moment``'s hour (UTC in, UTC out)."""
    return moment.replace(minute=0, second=0, microsecond=0)


CountKey = tuple[int, datetime, str, str]  # topic_counts' key: topic, hour, source kind, school


def bucket_totals(
    messages: Iterable[tuple[int, Any]],
) -> tuple[Counter[CountKey], Counter[CountKey]]:
    """(topic_id, message row) pairs counted per ``topic_counts`` key: (all, negative). Rows need
    ``received_at``, ``source_kind``, ``school``, ``sentiment``."""
    totals: Counter[CountKey] = Counter()
    negatives: Counter[CountKey] = Counter()
    for topic, row in messages:
        key = (topic, hour_start(row.received_at), row.source_kind, row.school or "")
        totals[key] += 1
        negatives[key] += row.sentiment is not None and row.sentiment < NEGATIVE_BELOW
    return totals, negatives


def add_counts(conn: Connection, messages: Iterable[tuple[int, Any]]) -> None:
    """Add (topic_id, message row) pairs to ``topic_counts``: one upsert per hour x topic x
    source kind x school. Rows need ``received_at``, ``source_kind``, ``school``, ``sentiment``."""
    totals, negatives = bucket_totals(messages)
    if not totals:
        return
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(TopicCount)
    stmt = stmt.on_conflict_do_update(
        index_elements=["topic_id", "bucket_start", "source_kind", "school"],
        set_={
            "n": TopicCount.n + stmt.excluded.n,
            "n_negative": TopicCount.n_negative + stmt.excluded.n_negative,
        },
    )
    conn.execute(
        stmt,
        [
            {
                "topic_id": topic,
                "bucket_start": bucket,
                "source_kind": kind,
                "school": school,
                "n": n,
                "n_negative": negatives[(topic, bucket, kind, school)],
            }
            for (topic, bucket, kind, school), n in sorted(totals.items())
        ],
    )


def rebuild_topic_counts(engine: Engine, since: datetime | None = None) -> int:
    """Recompute ``topic_counts`` from messages (all of it, or from ``since``'s hour on).

    One DELETE and one INSERT ... SELECT ... GROUP BY in one transaction (SQLite and
    PostgreSQL); used after a refit reassigns messages. Returns the number of count rows.
    """
    start = hour_start(since) if since is not None else None
    with write_connection(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Live assignment waits (readers do not): else a count row it adds between the
            # DELETE and the INSERT would collide. SQLite's BEGIN IMMEDIATE does the same.
            conn.execute(text("LOCK TABLE topic_counts IN EXCLUSIVE MODE"))
        clear = delete(TopicCount)
        if start is not None:
            clear = clear.where(TopicCount.bucket_start >= start)
        conn.execute(clear)
        bucket = hour_bucket(conn.dialect.name, Message.received_at).label("bucket_start")
        school = func.coalesce(Message.school, literal("")).label("school")
        negative = func.sum(case((Message.sentiment < NEGATIVE_BELOW, 1), else_=0))
        grouped = select(
            Message.topic_id,
            bucket,
            Message.source_kind,
            school,
            func.count().label("n"),
            negative.label("n_negative"),
        ).where(Message.topic_id.is_not(None))
        if start is not None:
            grouped = grouped.where(Message.received_at >= start)
        grouped = grouped.group_by(Message.topic_id, bucket, Message.source_kind, school)
        columns = ["topic_id", "bucket_start", "source_kind", "school", "n", "n_negative"]
        fill = insert(TopicCount).from_select(columns, grouped)
        return conn.execute(fill.execution_options(preserve_rowcount=True)).rowcount
