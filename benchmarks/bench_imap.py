"""Measure a full IMAP sync: a real Dovecot (tests/dovecot.py), N emails, a fresh database.

    .venv/bin/python benchmarks/bench_imap.py [--messages 2000] [--batch-size 500]
        [--database-url URL]

Appends N realistic parent emails (English and Spanish, half multipart with HTML, a third
replies with quotes and signatures) to a temporary Dovecot, then times ``sync_source`` of an
ImapSource into a fresh SQLite file (or the PostgreSQL URL given, an empty database), and a
second sync that finds nothing new. Goal: at least 200 messages/s for the full sync.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import create_db_engine, migrate
from core.settings import Settings
from ingestion.imap import ImapSource
from ingestion.runner import sync_source
from tests.dovecot import PASSWORD, USER, dovecot_server, sample_email


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench-imap-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(database_url=url, author_hash_key="bench")
    engine = create_db_engine(url)
    migrate(engine)
    rows: list[tuple[str, int, float]] = []

    with dovecot_server() as server:
        start = time.perf_counter()
        server.append(sample_email(n) for n in range(args.messages))
        rows.append(("append (MULTIAPPEND)", args.messages, time.perf_counter() - start))

        source = ImapSource(
            name="bench-imap",
            host="127.0.0.1",
            port=server.port,
            ssl=False,
            username=USER,
            password=PASSWORD,
            batch_size=args.batch_size,
            max_messages_per_sync=max(args.messages, 1),
        )
        for label in ("full sync, all new", "second sync, nothing new"):
            start = time.perf_counter()
            result = sync_source(engine, source, settings)
            seconds = time.perf_counter() - start
            if result.error:
                raise SystemExit(f"sync failed: {result.error}")
            rows.append((label, result.fetched, seconds))

        start = time.perf_counter()
        fetched, _ = source.fetch(None)
        rows.append(("fetch + parse only (no database)", len(fetched), time.perf_counter() - start))

    print(
        f"\nIMAP benchmark: Dovecot on loopback, {engine.dialect.name}, batch {args.batch_size}\n"
    )
    print(f"| {'step':<34} | {'messages':>9} | {'seconds':>8} | {'messages/s':>11} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 10}|{'-' * 13}|")
    for label, count, seconds in rows:
        rate = f"{count / seconds:,.0f}" if count and seconds else "-"
        print(f"| {label:<34} | {count:>9,} | {seconds:>8.2f} | {rate:>11} |")
    engine.dispose()


if __name__ == "__main__":
    main()
