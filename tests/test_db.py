"""Engine set-up, migrations and transactions on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from core.db import MIGRATIONS_DIR, create_db_engine, migrate, read_session, write_session
from core.models import Base, SourceState


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'pulse.db'}")
    connections = [engine.connect() for _ in range(3)]  # three distinct pooled connections
    try:
        for conn in connections:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        for conn in connections:
            conn.close()
    assert (tmp_path / "sub" / "pulse.db").exists()


def test_sqlite_writer_takes_the_write_lock_at_begin_and_readers_are_not_blocked(tmp_path: Path):
    path = tmp_path / "pulse.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate(engine)
    with write_session(engine) as session:
        session.execute(select(SourceState)).all()  # a read inside a write transaction
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        with read_session(engine) as reader:  # WAL: readers go on while a writer holds the lock
            assert reader.execute(select(SourceState)).all() == []


def test_write_session_rolls_back_on_error(db_engine):
    with pytest.raises(RuntimeError), write_session(db_engine) as session:
        session.add(SourceState(source_name="x", source_kind="demo"))
        session.flush()
        raise RuntimeError("boom")
    with read_session(db_engine) as session:
        assert session.get(SourceState, "x") is None


def test_migrations_build_exactly_the_models_schema(db_engine):
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    expected = {
        "messages", "embeddings", "source_state", "topics", "topic_counts", "model_runs",
        "alerts", "notifications", "silences", "calendar_events", "users", "audit_log",
    }  # fmt: skip
    assert expected <= tables


def test_migrate_twice_and_concurrently_is_safe(db_url):
    engine = create_db_engine(db_url)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(engine)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    migrate(engine)
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


def test_timestamps_come_back_timezone_aware_in_utc(db_engine):
    eastern = timezone(timedelta(hours=-5))
    when = datetime(2026, 1, 15, 7, 30, tzinfo=eastern)
    with write_session(db_engine) as session:
        session.add(SourceState(source_name="s", source_kind="demo", last_success_at=when))
    with read_session(db_engine) as session:
        stored = session.get_one(SourceState, "s").last_success_at
    assert stored == when
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored.hour == 12 and stored.tzinfo == UTC


def test_naive_timestamps_are_refused_with_a_clear_error(db_engine):
    with pytest.raises(Exception, match="naive datetime"), write_session(db_engine) as session:
        session.add(
            SourceState(source_name="n", source_kind="demo", last_success_at=datetime(2026, 1, 1))
        )
