"""Importing message files: JSONL and CSV in the format of DESIGN.md, mbox and .eml folders.

One message per JSONL line (or CSV row) with ``id``, ``received_at`` (ISO 8601) and ``body``
required; ``source`` (default ``import``), ``subject``, ``author`` and ``school`` optional.
Saved email (an mbox file, or a folder of ``.eml`` files) is parsed like IMAP mail (see
``ingestion.mailfiles``). A bad line or message is reported with its position and skipped; it
never stops the import.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from core.db import write_session
from core.messages import upsert_messages
from core.models import SOURCE_KINDS, Message
from core.settings import Settings
from ingestion.base import RawMessage
from ingestion.mailfiles import NotAnMbox, read_eml_folder, read_mbox
from ingestion.runner import prepare_messages

FORMATS = ("jsonl", "csv", "mbox", "eml")
DEFAULT_SOURCE = "import"
BATCH_SIZE = 1000
OPTIONAL_FIELDS = ("source", "subject", "author", "school")
COLUMN_LIMITS = {  # fields stored in columns of limited length
    "id": Message.__table__.c.external_id.type.length,
    "source": Message.__table__.c.source_name.type.length,
    "school": Message.__table__.c.school.type.length,
}


BadLine = tuple[int, str]  # (line number, why the line was skipped)


class BadRow(ValueError):
    """A line that cannot be imported; the message says what is wrong and how to fix it."""


@dataclass
class ImportReport:
    """What an import did: rows read, new rows stored, rows already present, bad lines."""

    rows: int = 0
    new: int = 0
    errors: list[tuple[int | str, str]] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Good rows that were already stored (by source and id)."""
        return self.rows - len(self.errors) - self.new


def detect_format(path: Path) -> str:
    """``jsonl``, ``csv``, ``mbox`` or ``eml`` (a folder) from the path."""
    if path.is_dir():
        return "eml"
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return "csv"
    if suffix in ("mbox", "mbx") or path.name.lower() == "mbox":
        return "mbox"
    raise BadRow(
        f"cannot tell the format of {path.name!r}: name it .jsonl, .csv or .mbox, give a folder "
        "of .eml files, or pass --format"
    )


def import_size(path: Path) -> int:
    """Bytes an import of ``path`` reads (a folder: its .eml files), for a progress bar."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.suffix.lower() == ".eml")
    return path.stat().st_size


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRow(f"field {key!r} must be text, got {type(value).__name__}")
    return str(value)


def _required_text(record: dict[str, Any], key: str) -> str:
    value = _text(record, key)
    if value is None:
        raise BadRow(f"missing required field {key!r}")
    return value


def _check_length(field_name: str, value: str | None) -> None:
    limit = COLUMN_LIMITS[field_name]
    if value and len(value) > limit:
        raise BadRow(f"field {field_name!r} is longer than {limit} characters")


def record_to_raw(record: dict[str, Any], tz: ZoneInfo) -> RawMessage:
    """A RawMessage from one parsed record; a time without zone is read in the district's zone."""
    if not isinstance(record, dict):
        raise BadRow(f"expected a JSON object, got {type(record).__name__}")
    external_id = _required_text(record, "id")
    stamp = _required_text(record, "received_at")
    body = _required_text(record, "body")
    try:
        received_at = datetime.fromisoformat(stamp.strip())
    except ValueError as exc:
        raise BadRow(
            f"received_at {stamp!r} is not an ISO 8601 time (e.g. 2026-01-15T07:30:00-05:00)"
        ) from exc
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=tz)
    source = _text(record, "source") or DEFAULT_SOURCE
    for field_name, value in (("id", external_id), ("source", source)):
        _check_length(field_name, value)
    _check_length("school", _text(record, "school"))
    return RawMessage(
        source_name=source,
        external_id=external_id,
        received_at=received_at,
        body=body,
        author=_text(record, "author"),
        subject=_text(record, "subject"),
        school=_text(record, "school"),
        source_kind=source if source in SOURCE_KINDS else DEFAULT_SOURCE,
    )


def read_jsonl_messages(path: Path, tz: ZoneInfo) -> tuple[int, list[RawMessage], list[BadLine]]:
    """Every line of a JSONL message file: (lines read, good messages, bad lines with their
    line number and reason); a bad line never stops the reading."""
    lines, raws, errors = 0, [], []
    for line, _position, record in read_records(path, "jsonl"):
        lines += 1
        try:
            if isinstance(record, BadRow):
                raise record
            raws.append(record_to_raw(record, tz))
        except BadRow as exc:
            errors.append((line, str(exc)))
    return lines, raws, errors


def read_records(path: Path, fmt: str) -> Iterator[tuple[int, int, dict[str, Any] | BadRow]]:
    """(line number, bytes read so far, record or the reason the line is bad) for each line."""
    with path.open("rb") as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, handle.tell(), json.loads(line.decode("utf-8-sig"))
                except UnicodeDecodeError:
                    yield number, handle.tell(), BadRow("not UTF-8 text: save the file as UTF-8")
                except json.JSONDecodeError as exc:
                    yield number, handle.tell(), BadRow(f"not valid JSON ({exc.msg})")
        else:
            yield from _read_csv(handle)


def _read_csv(handle: Any) -> Iterator[tuple[int, int, dict[str, Any] | BadRow]]:
    text = (line.decode("utf-8-sig", errors="replace") for line in handle)
    reader = csv.DictReader(text)
    missing = {"id", "received_at", "body"} - set(reader.fieldnames or [])
    if missing:
        raise BadRow(f"CSV header lacks {', '.join(sorted(missing))}: first line must name columns")
    line = 1
    for row in reader:
        line_start = line + 1
        line = reader.line_num
        if None in row:
            yield line_start, handle.tell(), BadRow("more fields than the header names")
        else:
            yield line_start, handle.tell(), row


def _records_as_raw(
    path: Path,
    fmt: str,
    settings: Settings,
    report: ImportReport,
    on_progress: Callable[[int], None] | None,
) -> Iterator[RawMessage]:
    for line, position, record in read_records(path, fmt):
        try:
            if isinstance(record, BadRow):
                raise record
            yield record_to_raw(record, settings.tz)
        except BadRow as exc:
            report.rows += 1
            report.errors.append((line, str(exc)))
        if on_progress:
            on_progress(position)


def _mail_as_raw(
    path: Path,
    fmt: str,
    report: ImportReport,
    on_progress: Callable[[int], None] | None,
) -> Iterator[RawMessage]:
    def bad(position: str, reason: str) -> None:
        report.rows += 1
        report.errors.append((position, reason))

    reader = read_mbox if fmt == "mbox" else read_eml_folder
    done = 0
    try:
        for raw in reader(path, DEFAULT_SOURCE, bad):
            done += len(raw.body)
            yield raw
            if on_progress:
                on_progress(done)
    except (NotAnMbox, NotADirectoryError) as exc:
        raise BadRow(str(exc)) from exc


def import_file(
    engine: Engine,
    path: Path,
    settings: Settings,
    fmt: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a message file (or a folder of .eml files); re-importing it adds nothing.

    ``on_progress`` is called with the number of bytes read so far.
    """
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise BadRow(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    report = ImportReport()
    if fmt in ("mbox", "eml"):
        raws = _mail_as_raw(path, fmt, report, on_progress)
        kind = "email"
    else:
        raws = _records_as_raw(path, fmt, settings, report, on_progress)
        kind = DEFAULT_SOURCE
    while batch := list(itertools.islice(raws, BATCH_SIZE)):
        messages = prepare_messages(batch, kind, settings)
        with write_session(engine) as session:
            report.new += upsert_messages(session.connection(), messages)
        report.rows += len(batch)
    return report
