"""Backup and restore of a SQLite database with SQLite's online backup API, and the pg_dump /
pg_restore commands for PostgreSQL (printed, never run).

A backup is a consistent snapshot taken in one read transaction, so the worker and the dashboard
keep writing and reading while it runs (WAL). A restore writes through the same API into the
configured database, then migrates it, so an older backup comes up to the current schema.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from core.db import create_db_engine, migrate

VERSION_TABLE = "alembic_version"


class BackupError(ValueError):
    """A backup or restore cannot be done; the message says why and what to do."""


def sqlite_path(engine_url: str) -> Path | None:
    """The file of a SQLite URL; None for any other database."""
    url = make_url(engine_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise BackupError(f"{engine_url!r} is an in-memory database: there is nothing to back up")
    return Path(url.database)


def backup_sqlite(engine_url: str, dest: Path) -> int:
    """Copy the SQLite database of ``engine_url`` to the new file ``dest`` while it stays in use;
    returns the number of pages copied. The copy is checked (``PRAGMA quick_check``) before it
    takes its name, so ``dest`` is either a whole, good backup or absent."""
    source = _require_sqlite(engine_url)
    if not source.exists():
        raise BackupError(f"no database at {source}: check PULSE_DATABASE_URL")
    if dest.exists():
        raise BackupError(f"{dest} exists already: choose a new file name (or delete it first)")
    draft = dest.with_name(f".{dest.name}.partial")
    draft.unlink(missing_ok=True)
    try:
        with _connect(source, read_only=True) as src, _connect(draft) as out:
            _require_pulse_db(src, source)
            src.backup(out)  # all pages in one step: one consistent read snapshot
            pages = out.execute("PRAGMA page_count").fetchone()[0]
            out.execute("PRAGMA journal_mode=DELETE")  # a backup is one self-contained file
            if (check := out.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
                raise BackupError(f"the backup of {source} failed its check: {check}")
        os.replace(draft, dest)
    finally:
        draft.unlink(missing_ok=True)
    return pages


def restore_sqlite(src: Path, engine_url: str, force: bool = False) -> int:
    """Replace the SQLite database of ``engine_url`` with the backup ``src`` and migrate it to the
    current schema; returns the number of pages restored.

    Refuses a file that is not a Pulse database, and a target holding data unless ``force``.
    Stop the worker and the dashboard first: they would keep the old data in their caches.
    """
    target = _require_sqlite(engine_url)
    if not src.is_file():
        raise BackupError(f"no backup file at {src}")
    with _connect(src, read_only=True) as backup:
        _require_pulse_db(backup, src)
        if target.exists() and not force:
            with _connect(target, read_only=True) as current:
                if filled := _tables_with_rows(current):
                    raise BackupError(
                        f"{target} already holds data (tables {', '.join(filled[:5])}): "
                        "restoring would replace it; use --force if that is what you want"
                    )
        target.parent.mkdir(parents=True, exist_ok=True)
        with _connect(target) as out:
            backup.backup(out)
            pages = out.execute("PRAGMA page_count").fetchone()[0]
    engine = create_db_engine(engine_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return pages


def postgres_commands(engine_url: str, path: Path) -> tuple[str, str]:
    """The ``pg_dump`` and ``pg_restore`` commands that back up and restore the PostgreSQL
    database of ``engine_url`` to and from ``path`` (custom format). The password is left out:
    give it in ``PGPASSWORD`` or ``~/.pgpass``."""
    url = make_url(engine_url)
    if url.get_backend_name() != "postgresql":
        raise BackupError(f"{url.render_as_string()} is not a PostgreSQL URL")
    libpq = URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    )
    dsn = libpq.render_as_string()
    dump = f"pg_dump --format=custom --no-owner --file='{path}' --dbname='{dsn}'"
    restore = (
        f"pg_restore --clean --if-exists --no-owner --single-transaction --dbname='{dsn}' '{path}'"
    )
    return dump, restore


def _require_sqlite(engine_url: str) -> Path:
    path = sqlite_path(engine_url)
    if path is None:
        raise BackupError(
            "the database is not SQLite: back PostgreSQL up with pg_dump (`app.py backup` prints "
            "the command)"
        )
    return path


@contextlib.contextmanager
def _connect(path: Path, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def _require_pulse_db(conn: sqlite3.Connection, path: Path) -> None:
    try:
        version = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a Pulse database ({exc})") from exc
    if version is None:
        raise BackupError(f"{path} is not a Pulse database: its schema version is empty")


def _tables_with_rows(conn: sqlite3.Connection) -> list[str]:
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        if name != VERSION_TABLE
    ]
    return [t for t in tables if conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()]
