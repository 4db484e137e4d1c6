"""Measure the ingest path: normalisation, batched upsert (new and already stored), file import.

    .venv/bin/python benchmarks/bench_ingest.py [--messages 20000] [--database-url URL]

Without --database-url it uses a fresh SQLite file in a temporary folder. A PostgreSQL URL must
name an empty database that may be written to.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import create_db_engine, migrate, write_connection
from core.messages import upsert_messages
from core.settings import Settings
from ingestion.demo import DemoSource
from ingestion.files import import_file
from ingestion.normalize import normalize
from topics.enrich import enrich_messages


def timed(label: str, count: int, action, rows: list) -> None:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    rows.append((label, count, seconds, count / seconds if seconds else float("inf")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(database_url=url, author_hash_key="bench", demo_messages_per_day=20_000)
    engine = create_db_engine(url)
    migrate(engine)

    source = DemoSource(settings)
    end = datetime(2026, 1, 20, tzinfo=UTC)
    raws = []
    start = end - timedelta(days=1)
    while len(raws) < args.messages:
        raws += list(source.messages_between(start, end))
        end, start = start, start - timedelta(days=1)
    raws = raws[: args.messages]
    rows: list[tuple[str, int, float, float]] = []
    normalised: list = []

    timed(
        "normalise",
        len(raws),
        lambda: normalised.extend(
            normalize(r, "demo", settings.author_key, settings.max_body_chars) for r in raws
        ),
        rows,
    )
    timed("enrich (language, sentiment)", len(normalised),
          lambda: enrich_messages(normalised), rows)  # fmt: skip

    def upsert() -> None:
        with write_connection(engine) as conn:
            upsert_messages(conn, normalised)

    timed("upsert, all new", len(normalised), upsert, rows)
    timed("upsert, all stored already", len(normalised), upsert, rows)

    jsonl = workdir / "import.jsonl"
    with jsonl.open("w", encoding="utf-8") as out:
        for i, raw in enumerate(raws):
            record = {"id": f"f{i}", "received_at": raw.received_at.isoformat(), "body": raw.body}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    timed("import JSONL file", len(raws), lambda: import_file(engine, jsonl, settings), rows)

    backend = engine.dialect.name
    print(f"\nIngest benchmark on {backend}, {len(raws):,} demo messages\n")
    print(f"| {'step':<28} | {'messages':>9} | {'seconds':>8} | {'messages/s':>11} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 13}|")
    for label, count, seconds, rate in rows:
        print(f"| {label:<28} | {count:>9,} | {seconds:>8.2f} | {rate:>11,.0f} |")
    engine.dispose()


if __name__ == "__main__":
    main()
