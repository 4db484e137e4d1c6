"""File import (JSONL, CSV) and export, through the API and the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import cli
from core.db import create_db_engine, migrate, read_session
from core.export import export_messages
from core.models import Message
from ingestion.files import BadRow, import_file

GOOD = [
    {"id": "1", "received_at": "2026-01-15T07:30:00-05:00", "body": "Bus 17 late again",
     "source": "sms", "school": "Lincoln Elementary"},
    {"id": "2", "received_at": "2026-01-15T08:00:00", "body": "¿Hay clases mañana? ❄️",
     "subject": "nieve", "author": "mama@example.org"},
    {"id": 3, "received_at": "2026-01-15T19:00:00Z", "body": "<p>Lunch <b>menu</b></p>"},
]  # fmt: skip


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bodies(engine) -> list[str]:
    with read_session(engine) as session:
        return list(session.scalars(select(Message.body).order_by(Message.received_at)))


def test_jsonl_import_reports_bad_lines_by_number_and_keeps_the_good(db_engine, settings, tmp_path):
    lines = [
        json.dumps(GOOD[0]),
        "{not json",
        json.dumps({"id": "4", "body": "no time"}),
        "",
        json.dumps({"id": "5", "received_at": "yesterday", "body": "x"}),
        json.dumps(GOOD[1], ensure_ascii=False),
        json.dumps(["a", "list"]),
        json.dumps({"id": "6", "received_at": "2026-01-15T10:00:00Z", "body": {"nested": 1}}),
        json.dumps(GOOD[2]),
        json.dumps({"id": "7" * 256, "received_at": "2026-01-15T10:00:00Z", "body": "long id"}),
    ]
    report = import_file(db_engine, write_jsonl(tmp_path / "m.jsonl", lines), settings)
    assert report.new == 3 and report.rows == 9
    lines_and_reasons = dict(report.errors)
    assert set(lines_and_reasons) == {2, 3, 5, 7, 8, 10}
    assert "field 'id' is longer than 255 characters" in lines_and_reasons[10]
    assert "not valid JSON" in lines_and_reasons[2]
    assert "missing required field 'received_at'" in lines_and_reasons[3]
    assert "not an ISO 8601 time" in lines_and_reasons[5]
    assert "expected a JSON object" in lines_and_reasons[7]
    assert "must be text" in lines_and_reasons[8]
    assert bodies(db_engine) == ["Bus 17 late again", "¿Hay clases mañana? ❄️", "Lunch menu"]
    with read_session(db_engine) as session:
        spanish = session.scalar(select(Message).where(Message.external_id == "2"))
        sms = session.scalar(select(Message).where(Message.external_id == "1"))
    assert spanish.received_at.hour == 13  # a time without zone is read in the district's zone
    assert spanish.source_name == "import" and spanish.author_hash and spanish.subject == "nieve"
    assert sms.source_kind == "sms" and sms.school == "Lincoln Elementary"

    again = import_file(db_engine, tmp_path / "m.jsonl", settings)
    assert again.new == 0 and again.duplicates == 3


def test_non_utf8_line_is_reported_not_fatal(db_engine, settings, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        b'{"id": "1", "received_at": "2026-01-15T07:30:00Z", "body": "caf\xe9"}\n'
        + json.dumps(GOOD[0]).encode()
        + b"\n"
    )
    report = import_file(db_engine, path, settings)
    assert report.new == 1 and report.errors[0][0] == 1 and "UTF-8" in report.errors[0][1]


def test_csv_import_with_quoted_multiline_fields_reports_real_line_numbers(
    db_engine, settings, tmp_path
):
    path = tmp_path / "m.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "received_at", "body", "source"])
        writer.writerow(["a", "2026-01-15T07:30:00Z", "line one\nline two, with comma", "webform"])
        writer.writerow(["b", "not a time", "x", ""])
        writer.writerow(["c", "2026-01-15T08:30:00Z", "third", ""])
        writer.writerow(["d", "2026-01-15T08:30:00Z", "too", "many", "fields"])
    report = import_file(db_engine, path, settings)
    assert report.new == 2
    assert [line for line, _ in report.errors] == [4, 6]
    assert bodies(db_engine) == ["line one\nline two, with comma", "third"]


def test_csv_without_required_columns_is_refused_clearly(db_engine, settings, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("identifier,text\n1,hello\n")
    with pytest.raises(BadRow, match="lacks body, id, received_at"):
        import_file(db_engine, path, settings)


def test_unknown_extension_asks_for_a_format(db_engine, settings, tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("x")
    with pytest.raises(BadRow, match="--format"):
        import_file(db_engine, path, settings)


def test_export_then_import_into_a_fresh_database_round_trips(db_engine, settings, tmp_path):
    lines = [json.dumps(record, ensure_ascii=False) for record in GOOD]
    import_file(db_engine, write_jsonl(tmp_path / "m.jsonl", lines), settings)
    out = io.StringIO()
    assert export_messages(db_engine, "jsonl", out) == 3
    exported = tmp_path / "export.jsonl"
    exported.write_text(out.getvalue(), encoding="utf-8")

    fresh = create_db_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate(fresh)
    assert import_file(fresh, exported, settings).new == 3
    assert import_file(fresh, exported, settings).new == 0
    assert bodies(fresh) == bodies(db_engine)
    with read_session(fresh) as session:
        sources = set(session.scalars(select(Message.source_name)))
    assert sources == {"sms", "import"}

    as_csv = io.StringIO()
    export_messages(db_engine, "csv", as_csv)
    rows = list(csv.DictReader(io.StringIO(as_csv.getvalue())))
    assert [r["id"] for r in rows] == ["1", "2", "3"] and rows[1]["body"].endswith("❄️")


def test_cli_import_and_export(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "k")
    lines = [json.dumps(GOOD[0]), "oops", json.dumps(GOOD[2])]
    path = write_jsonl(tmp_path / "m.jsonl", lines)
    result = CliRunner().invoke(cli, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert "m.jsonl:2: skipped: not valid JSON" in result.stderr
    assert "3 rows: 2 new, 0 already stored, 1 skipped" in result.stdout

    out = tmp_path / "out.csv"
    result = CliRunner().invoke(cli, ["export", "messages", "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))) == 2

    result = CliRunner().invoke(cli, ["import", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "does not exist" in result.output
