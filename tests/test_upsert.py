"""The idempotent, batched insert-or-ignore, identical on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from core.db import read_session, write_connection
from core.messages import MAX_BOUND_PARAMETERS, NewMessage, upsert_messages
from core.models import Message

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def make(i: int, source: str = "inbox") -> NewMessage:
    return NewMessage(
        source_kind="email",
        source_name=source,
        external_id=f"m{i}",
        received_at=T0 + timedelta(minutes=i),
        body=f"message number {i}",
        content_hash=f"h{i}",
        meta={"n": i},
    )


def count(engine) -> int:
    with read_session(engine) as session:
        return session.scalar(select(func.count(Message.id)))


def test_upsert_counts_new_rows_and_ignores_known_ones(db_engine):
    with write_connection(db_engine) as conn:
        assert upsert_messages(conn, [make(i) for i in range(10)]) == 10
    with write_connection(db_engine) as conn:
        assert upsert_messages(conn, [make(i) for i in range(5, 15)]) == 5
    with write_connection(db_engine) as conn:
        assert upsert_messages(conn, []) == 0
    assert count(db_engine) == 15


def test_upsert_keeps_the_first_version_and_same_id_from_another_source_is_new(db_engine):
    with write_connection(db_engine) as conn:
        upsert_messages(conn, [make(1)])
        changed = replace(make(1), body="edited later")
        assert upsert_messages(conn, [changed, make(1, source="sms-line")]) == 1
    with read_session(db_engine) as session:
        bodies = session.scalars(select(Message.body).order_by(Message.id)).all()
        meta = session.scalar(select(Message.meta).where(Message.source_name == "inbox"))
    assert bodies == ["message number 1", "message number 1"]
    assert meta == {"n": 1}


def test_duplicates_inside_one_batch_count_once(db_engine):
    with write_connection(db_engine) as conn:
        assert upsert_messages(conn, [make(1), make(1), make(2)]) == 2
    assert count(db_engine) == 2


def test_batches_split_under_the_sqlite_parameter_limit(db_engine):
    per_row = len(NewMessage.__dataclass_fields__)
    n = MAX_BOUND_PARAMETERS // per_row * 2 + 7  # needs three statements
    with write_connection(db_engine) as conn:
        assert upsert_messages(conn, [make(i) for i in range(n)]) == n
    with write_connection(db_engine) as conn:
        assert upsert_messages(conn, [make(i) for i in range(n + 3)], batch_size=100) == 3
    assert count(db_engine) == n + 3


def test_a_failed_transaction_stores_nothing(db_engine):
    try:
        with write_connection(db_engine) as conn:
            upsert_messages(conn, [make(i) for i in range(3)])
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    assert count(db_engine) == 0
