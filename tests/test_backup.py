"""Backup and restore: SQLite's online backup while a writer inserts, restore into a fresh
database that then migrates and opens, the refusals, and PostgreSQL's pg_dump / pg_restore
commands (printed by Pulse, run here against a real server)."""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select

from app import cli
from core.backup import BackupError, backup_sqlite, postgres_commands, restore_sqlite
from core.db import create_db_engine, migrate, read_session, write_session
from core.models import Message, User

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BATCH = 10  # messages per writer transaction


def add_batch(engine, batch: int) -> None:
    rows = [
        {
            "source_kind": "sms",
            "source_name": "text-line",
            "external_id": f"{batch}-{i}",
            "received_at": T0 + timedelta(minutes=batch),
            "body": f"message {i} of batch {batch}",
            "content_hash": f"{batch:08d}{i:04d}",
        }
        for i in range(BATCH)
    ]
    with write_session(engine) as session:
        session.execute(insert(Message), rows)


def message_count(url: str) -> int:
    engine = create_db_engine(url)
    try:
        with read_session(engine) as session:
            return session.scalar(select(func.count(Message.id))) or 0
    finally:
        engine.dispose()


@pytest.fixture
def live(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'live' / 'pulse.db'}"
    engine = create_db_engine(url)
    migrate(engine)
    yield url, engine
    engine.dispose()


def test_a_backup_taken_while_a_writer_inserts_restores_whole(live, tmp_path):
    url, engine = live
    started, stop, errors = threading.Event(), threading.Event(), []
    batches = 0

    def writer() -> None:
        nonlocal batches
        try:
            while not stop.is_set():
                add_batch(engine, batches)
                batches += 1
                if batches == 20:
                    started.set()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert started.wait(60)
        written_before = batches * BATCH
        backup = tmp_path / "backups" / "pulse-backup.db"
        backup.parent.mkdir()
        pages = backup_sqlite(url, backup)
        while batches * BATCH < written_before + 20 * BATCH and not errors:
            stop.wait(0.01)  # the writer keeps going after the backup
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    assert pages > 0 and backup.is_file()
    assert not list(backup.parent.glob(".*partial"))

    with sqlite3.connect(backup) as conn:
        in_backup = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert in_backup >= written_before
    assert in_backup % BATCH == 0  # a consistent snapshot: no half transaction
    assert message_count(url) > in_backup

    restored_url = f"sqlite:///{tmp_path / 'fresh' / 'restored.db'}"
    restore_sqlite(backup, restored_url)
    assert message_count(restored_url) == in_backup
    restored = create_db_engine(restored_url)
    try:
        migrate(restored)  # opens and is at the current schema (a second migrate is a no-op)
        add_batch(restored, 10_000)
    finally:
        restored.dispose()
    assert message_count(restored_url) == in_backup + BATCH


def test_restore_refuses_a_database_with_data_unless_forced(live, tmp_path):
    url, engine = live
    add_batch(engine, 1)
    backup = tmp_path / "b.db"
    backup_sqlite(url, backup)

    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = create_db_engine(target_url)
    migrate(target)  # an empty, migrated database is not "data": restoring into it is fine
    target.dispose()
    restore_sqlite(backup, target_url)
    with write_session(create_db_engine(target_url)) as session:
        session.add(User(username="admin", password_hash="x", role="admin"))

    with pytest.raises(BackupError, match=r"already holds data.*--force"):
        restore_sqlite(backup, target_url)
    restore_sqlite(backup, target_url, force=True)
    assert message_count(target_url) == BATCH
    with read_session(create_db_engine(target_url)) as session:
        assert session.scalar(select(func.count(User.id))) == 0


def test_restore_refuses_a_file_that_is_not_a_pulse_database(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database at all " * 100)
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    for bad in (other, text_file):
        with pytest.raises(BackupError, match="is not a Pulse database"):
            restore_sqlite(bad, target_url)
    assert not (tmp_path / "target.db").exists()


def test_backup_refuses_an_existing_file_a_missing_database_and_postgresql(live, tmp_path):
    url, _ = live
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    with pytest.raises(BackupError, match="exists already"):
        backup_sqlite(url, taken)
    assert taken.read_bytes() == b"keep me"
    with pytest.raises(BackupError, match="no database at"):
        backup_sqlite(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "out.db")
    with pytest.raises(BackupError, match="pg_dump"):
        backup_sqlite("postgresql+psycopg://u:p@h/db", tmp_path / "out.db")


def test_the_backup_and_restore_commands(live, tmp_path, monkeypatch):
    url, engine = live
    add_batch(engine, 1)
    monkeypatch.setenv("PULSE_DATABASE_URL", url)
    runner = CliRunner()
    out = tmp_path / "nightly.db"
    made = runner.invoke(cli, ["backup", str(out)])
    assert made.exit_code == 0 and "backed up" in made.output, made.output
    again = runner.invoke(cli, ["backup", str(out)])
    assert again.exit_code == 1 and "exists already" in again.output

    refused = runner.invoke(cli, ["restore", str(out)])
    assert refused.exit_code == 1 and "--force" in refused.output
    add_batch(engine, 2)
    forced = runner.invoke(cli, ["restore", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert message_count(url) == BATCH


def test_postgresql_commands_leave_the_password_out():
    dump, restore = postgres_commands(
        "postgresql+psycopg://pulse:s3cret@db.example:5433/pulse", Path("/backups/pulse.dump")
    )
    assert "s3cret" not in dump + restore
    assert shlex.split(dump) == [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--file=/backups/pulse.dump",
        "--dbname=postgresql://pulse@db.example:5433/pulse",
    ]
    assert shlex.split(restore)[0] == "pg_restore"
    assert restore.endswith("'/backups/pulse.dump'")


@pytest.mark.postgres
def test_the_printed_pg_dump_and_pg_restore_commands_work(postgres_server, tmp_path, monkeypatch):
    source_url = postgres_server.create_database()
    engine = create_db_engine(source_url)
    migrate(engine)
    add_batch(engine, 1)
    engine.dispose()
    dump_file = tmp_path / "pulse.dump"
    monkeypatch.setenv("PULSE_DATABASE_URL", source_url)
    printed = CliRunner().invoke(cli, ["backup", str(dump_file)])
    assert printed.exit_code == 0 and printed.output.startswith("pg_dump "), printed.output
    bindir = str(postgres_server.bindir)
    dump = shlex.split(printed.output)
    subprocess.run([f"{bindir}/pg_dump", *dump[1:]], check=True, capture_output=True, timeout=60)

    target_url = postgres_server.create_database()
    monkeypatch.setenv("PULSE_DATABASE_URL", target_url)
    printed = CliRunner().invoke(cli, ["restore", str(dump_file)])
    assert printed.exit_code == 0 and printed.output.startswith("pg_restore "), printed.output
    restore = shlex.split(printed.output)
    subprocess.run(
        [f"{bindir}/pg_restore", *restore[1:]], check=True, capture_output=True, timeout=60
    )
    assert message_count(target_url) == BATCH
    restored = create_db_engine(target_url)
    migrate(restored)
    restored.dispose()
