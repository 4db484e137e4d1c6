"""Writing messages: the idempotent, batched insert-or-ignore every source goes through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from core.models import Message, utcnow

# SQLite accepts at most 32,766 bound parameters in one statement; stay well under it.
MAX_BOUND_PARAMETERS = 30_000


@dataclass(frozen=True)
class NewMessage:
    """A normalised message ready to store; (source_name, external_id) identifies it."""

    source_kind: str
    source_name: str
    external_id: str
    received_at: datetime
    body: str
    content_hash: str
    near_hash: int | None = None
    author: str | None = None
    author_hash: str | None = None
    subject: str | None = None
    raw: str | None = None
    body_html_stripped: bool = False
    body_truncated: bool = False
    school: str | None = None
    language: str | None = None
    sentiment: float | None = None  # -1..1, filled by topics.enrich on ingest
    risk_level: str = "none"  # none | review | urgent: topics.risk's rules, on ingest
    risk_categories: list[str] | None = None
    risk_score: float | None = None
    risk_negated: bool = False
    risk_third_party: bool = False
    risk_evidence: list[str] | None = None
    meta: dict[str, Any] | None = None
    ingested_at: datetime = field(default_factory=utcnow)


def upsert_messages(
    conn: Connection, messages: Sequence[NewMessage], batch_size: int | None = None
) -> int:
    """Insert messages whose (source_name, external_id) is new, ignore the rest.

    Works the same on SQLite and PostgreSQL, in batches under SQLite's parameter limit.
    Returns how many rows were new. The caller owns the transaction.
    """
    if not messages:
        return 0
    rows = [dict(vars(m)) for m in messages]  # shallow: asdict() deep-copies every field
    limit = MAX_BOUND_PARAMETERS // len(rows[0])
    size = min(batch_size or limit, limit)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(Message)
        .on_conflict_do_nothing(index_elements=["source_name", "external_id"])
        .returning(Message.id)
    )
    # An executemany with RETURNING: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues")
    # of at most `size` rows each, compiling the statement once.
    paged = conn.execution_options(insertmanyvalues_page_size=size)
    return len(paged.execute(stmt, rows).all())
