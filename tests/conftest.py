"""Shared fixtures: settings on a temporary database, and the database tests' two backends.

``db_engine`` runs each test that uses it twice: on SQLite and on a real PostgreSQL server that
this file starts (initdb in a temporary folder, Debian's postgresql package). Where PostgreSQL
cannot be had the PostgreSQL half is skipped with the reason, except under CI, where it fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from core.db import create_db_engine, migrate
from core.settings import Settings

PULSE_ENV = [name for name in os.environ if name.startswith("PULSE_")]


@pytest.fixture(autouse=True)
def _clean_pulse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they set themselves."""
    for name in PULSE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no stray .env from the developer's folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh SQLite file, with a fixed author key and no sources file."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pulse.db'}",
        author_hash_key="test-key",
        timezone="America/New_York",
        sources_file=tmp_path / "sources.toml",
    )


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port, trusted local access."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pulse-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root: use the package's postgres user
            postgres = pwd.getpwnam("postgres")
            os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "pulse", "--auth=trust")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            *("-D", str(data), "-l", str(self.root / "server.log"), "-o", options),
            *("-w", "-t", "60", "start"),
        )

    def stop(self) -> None:
        data = self.root / "data"
        subprocess.run(
            [
                *self.as_user,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://pulse@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        dsn = f"host=127.0.0.1 port={self.port} user=pulse dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (skipped loudly when unavailable, failed in CI)."""
    bindir = _postgres_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries (initdb) not found: install Debian's 'postgresql' "
            "package (`make test` does it)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pulse.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend in turn."""
    engine = create_db_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()
