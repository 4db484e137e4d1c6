"""Exporting messages as JSONL or CSV, in the import format (a re-import adds nothing)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, TextIO

from sqlalchemy import Engine, select

from core.db import read_session
from core.models import Message

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
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    count = 0
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for record in message_records(engine):
        if writer:
            writer.writerow(record)
        else:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count
