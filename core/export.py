"""Exporting messages as JSONL or CSV, in the import format (a re-import adds nothing), and the
audit log."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Engine, select

from core.db import read_session
from core.models import AuditLog, Message

EXPORT_FORMATS = ("jsonl", "csv")
EXPORT_FIELDS = (
    "id",
    "received_at",
    "source",
    "source_kind",
    "subject",
    "author",
    "school",
    "body",
    "language",
    "sentiment",
    "risk_level",
    "topic_id",
)
AUDIT_FIELDS = ("id", "at", "username", "action", "target_type", "target_id", "details")


def message_records(engine: Engine, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every message as a flat record, oldest first, streamed in batches."""
    query = select(Message).order_by(Message.received_at, Message.id)
    with read_session(engine) as session:
        for message in session.scalars(query.execution_options(yield_per=batch_size)):
            yield {
                "id": message.external_id,
                "received_at": message.received_at.isoformat(),
                "source": message.source_name,
                "source_kind": message.source_kind,
                "subject": message.subject,
                "author": message.author,
                "school": message.school,
                "body": message.body,
                "language": message.language,
                "sentiment": message.sentiment,
                "risk_level": message.risk_level,
                "topic_id": message.topic_id,
            }


def export_messages(engine: Engine, fmt: str, out: TextIO) -> int:
    """Write every message to ``out`` as ``jsonl`` or ``csv``; returns how many were written."""
    return write_records(message_records(engine), EXPORT_FIELDS, fmt, out)


def audit_records(engine: Engine, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """The audit log (from ``since`` on), oldest first, as flat records; ``details`` as JSON."""
    query = select(AuditLog).order_by(AuditLog.at, AuditLog.id)
    if since is not None:
        query = query.where(AuditLog.at >= since)
    with read_session(engine) as session:
        for row in session.scalars(query.execution_options(yield_per=1000)):
            yield {
                "id": row.id,
                "at": row.at.isoformat(),
                "username": row.username,
                "action": row.action,
                "target_type": row.target_type,
                "target_id": row.target_id,
                "details": json.dumps(row.details, ensure_ascii=False) if row.details else None,
            }


def export_audit_log(engine: Engine, fmt: str, out: TextIO, since: datetime | None = None) -> int:
    """Write the audit log (from ``since`` on) to ``out`` as ``jsonl`` or ``csv``; returns how
    many rows were written."""
    return write_records(audit_records(engine, since), AUDIT_FIELDS, fmt, out)


def write_records(
    records: Iterable[dict[str, Any]], fields: Sequence[str], fmt: str, out: TextIO
) -> int:
    """Write flat records to ``out`` as ``jsonl`` or ``csv`` (header ``fields``); returns how
    many were written."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    count = 0
    writer = csv.DictWriter(out, fieldnames=fields) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for record in records:
        if writer:
            writer.writerow(record)
        else:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count
