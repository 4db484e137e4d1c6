"""Privacy: purge old messages' personal text (retention) and erase one author's messages.

Both keep the aggregates consistent: a purge keeps every field the counts, heatmaps, spike
baselines and topic history are built from (topic, time, source kind, school, language,
sentiment, risk level); an erasure deletes the messages and takes them out of ``topic_counts``
in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    update,
)

from core.db import read_session, write_connection
from core.models import AuditLog, Embedding, Message, TopicCount
from core.settings import Settings
from ingestion.normalize import author_hash
from topics.assign import bucket_totals

PURGE_BATCH = 1000
ERASE_ACTION = "erase_author"

# A message still holding personal text; a purged one has none of these, so a purge is idempotent.
_NOT_PURGED = or_(
    Message.body != "",
    Message.subject.is_not(None),
    Message.author.is_not(None),
    Message.raw.is_not(None),
    Message.meta.is_not(None),
    Message.risk_evidence.is_not(None),
)
_PURGED_VALUES = {
    "body": "",
    "subject": None,
    "author": None,
    "raw": None,
    "meta": null(),  # SQL NULL, not JSON 'null'
    "risk_evidence": null(),
}


@dataclass(frozen=True)
class PurgeResult:
    """What a purge did (or, dry run, would do)."""

    cutoff: datetime | None  # messages received before this were purged; None: retention off
    messages: int = 0
    embeddings: int = 0
    dry_run: bool = False


@dataclass(frozen=True)
class ErasureResult:
    """What an author erasure deleted."""

    author_hash: str
    messages: int
    embeddings: int


def purge_raw(
    engine: Engine,
    settings: Settings,
    now: datetime,
    dry_run: bool = False,
    batch_size: int = PURGE_BATCH,
) -> PurgeResult:
    """Blank the body, subject, author, original, metadata and risk evidence of messages received
    more than ``settings.retention_days`` before ``now``, and delete their embeddings.

    Topic, time, source, school, language, sentiment, risk level and the author's keyed hash stay,
    so history, heatmaps and per-author erasure keep working. Idempotent; each batch of
    ``batch_size`` messages is its own short transaction, so the worker is never held up long.
    ``retention_days == 0`` purges nothing.
    """
    if settings.retention_days == 0:
        return PurgeResult(cutoff=None, dry_run=dry_run)
    cutoff = now - timedelta(days=settings.retention_days)
    due = and_(Message.received_at < cutoff, _NOT_PURGED)
    if dry_run:
        with read_session(engine) as session:
            messages = session.scalar(select(func.count()).where(due)) or 0
            embeddings = session.scalar(
                select(func.count())
                .select_from(Embedding)
                .where(Embedding.message_id.in_(select(Message.id).where(due)))
            )
        return PurgeResult(cutoff, messages, embeddings or 0, dry_run=True)
    messages = embeddings = 0
    while True:
        with write_connection(engine) as conn:
            ids = list(conn.scalars(select(Message.id).where(due).limit(batch_size)))
            if not ids:
                break
            embeddings += _delete_embeddings(conn, ids)
            conn.execute(update(Message).where(Message.id.in_(ids)).values(_PURGED_VALUES))
        messages += len(ids)
    return PurgeResult(cutoff, messages, embeddings)


def erase_author(engine: Engine, settings: Settings, author: str, username: str) -> ErasureResult:
    """Delete every message from ``author`` (an address, matched by its keyed hash as at ingest)
    with its embeddings, take them out of ``topic_counts``, and record it in the audit log
    (the hash and the count only, never the address). Purged messages are found too.

    Raises ValueError for an empty address or username.
    """
    hashed = author_hash(author, settings.author_key)
    if hashed is None:
        raise ValueError("the author address is empty: give the address the messages came from")
    if not username.strip():
        raise ValueError("say who erases (--user): the audit log records it")
    with write_connection(engine) as conn:
        rows = conn.execute(
            select(
                Message.id,
                Message.topic_id,
                Message.received_at,
                Message.source_kind,
                Message.school,
                Message.sentiment,
            ).where(Message.author_hash == hashed)
        ).all()
        ids = [row.id for row in rows]
        embeddings = 0
        for start in range(0, len(ids), PURGE_BATCH):
            chunk = ids[start : start + PURGE_BATCH]
            embeddings += _delete_embeddings(conn, chunk)
            conn.execute(delete(Message).where(Message.id.in_(chunk)))
        _subtract_counts(conn, rows)
        conn.execute(
            insert(AuditLog).values(
                username=username.strip(),
                action=ERASE_ACTION,
                target_type="author",
                target_id=hashed,
                details={"messages": len(ids), "embeddings": embeddings},
            )
        )
    return ErasureResult(hashed, len(ids), embeddings)


def _delete_embeddings(conn: Connection, message_ids: list[int]) -> int:
    gone = delete(Embedding).where(Embedding.message_id.in_(message_ids))
    return conn.execute(gone.execution_options(preserve_rowcount=True)).rowcount


def _subtract_counts(conn: Connection, rows: Sequence[Row[Any]]) -> None:
    """Take message rows out of their ``topic_counts`` buckets; drop buckets left empty."""
    totals, negatives = bucket_totals(
        (row.topic_id, row) for row in rows if row.topic_id is not None
    )
    for (topic, bucket, kind, school), n in sorted(totals.items()):
        same_bucket = and_(
            TopicCount.topic_id == topic,
            TopicCount.bucket_start == bucket,
            TopicCount.source_kind == kind,
            TopicCount.school == school,
        )
        conn.execute(
            update(TopicCount)
            .where(same_bucket)
            .values(
                n=TopicCount.n - n,
                n_negative=TopicCount.n_negative - negatives[(topic, bucket, kind, school)],
            )
        )
        conn.execute(delete(TopicCount).where(same_bucket, TopicCount.n <= 0))
