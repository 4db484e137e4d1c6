"""Importing saved email (mbox, folders of .eml) through the same parsing as IMAP mail."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import cli
from core.db import read_session, write_session
from core.models import Message
from ingestion.mailfiles import NotAnMbox, read_eml_folder, read_mbox
from ingestion.runner import store_messages

EMAILS = Path(__file__).parent / "data" / "emails"


def store(engine, settings, raws) -> tuple[int, int]:
    with write_session(engine) as session:
        return store_messages(session, settings, "import", "email", raws)


def stored(engine) -> dict[str, Message]:
    with read_session(engine) as session:
        return {m.external_id: m for m in session.scalars(select(Message))}


def mbox_entry(from_line: str, message: bytes) -> bytes:
    return f"From {from_line}\n".encode() + message.rstrip(b"\n") + b"\n\n"


GOOD = b"""From: Ana <ana@example.org>
Subject: Bus stop
Date: Mon, 02 Mar 2026 07:00:00 -0500
Message-ID: <mbox-1@Example.org>

The stop on Oak Street has no lighting.
>From the corner you cannot see the bus coming.
"""
NO_DATE = b"""From: nodate@example.org
Subject: Draft without a date
Message-ID: <mbox-nodate@example.org>

Saved draft.
"""
RECEIVED = b"""Received: from mx by mail.district.org; Tue, 03 Mar 2026 09:15:00 +0000
From: leo@example.org
Subject: Received header wins
Date: Tue, 03 Mar 2026 08:00:00 +0000
Message-ID: <mbox-received@example.org>

Lunch line is too long.
"""


def test_mbox_messages_are_read_and_bad_ones_reported_with_their_position(tmp_path):
    mbox = tmp_path / "parents.mbox"
    escaped = GOOD.replace(b"\n>From the corner", b"\n>>From the corner")  # mboxrd escaping
    mbox.write_bytes(
        mbox_entry("ana@example.org Mon Mar  2 12:00:01 2026", escaped)
        + mbox_entry("MAILER-DAEMON Tue Mar  3 10:00:00 2026", NO_DATE)
        + mbox_entry("- Wed Mar  4 10:00:00 2026", b"this is not an email at all\n")
        + mbox_entry("x Thu Mar  5 10:00:00 2026", b"\n")
        + mbox_entry("leo@example.org Thu Mar  5 11:00:00 2026", RECEIVED)
    )
    bad: list[tuple[str, str]] = []
    raws = list(read_mbox(mbox, on_bad=lambda position, reason: bad.append((position, reason))))

    ids = [r.external_id for r in raws]
    assert ids == ["mbox-1@example.org", "mbox-nodate@example.org", "mbox-received@example.org"]
    first = raws[0]
    assert first.source_name == "import" and first.source_kind == "email"
    assert first.received_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # the Date header
    assert first.author == "ana@example.org" and first.subject == "Bus stop"
    assert b"\n>From the corner" in first.body  # one level of ">From" quoting undone
    assert first.metadata["mbox_message"] == 1 and first.metadata["line"] == 1
    assert raws[1].received_at == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # the From line's
    assert raws[2].received_at == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)  # top Received header
    assert bad == [
        ("message 3 (line 17)", "no email headers: not an email message"),
        ("message 4 (line 20)", "empty message"),
    ]


def test_the_source_name_is_the_callers(tmp_path):
    mbox = tmp_path / "archive.mbox"
    mbox.write_bytes(mbox_entry("ana@example.org Mon Mar  2 12:00:01 2026", GOOD))
    (raw,) = read_mbox(mbox, source_name="archive-2025")
    assert raw.source_name == "archive-2025"


def test_a_body_line_starting_with_from_does_not_split_a_message(tmp_path):
    body = GOOD + b"\nFrom here on the road is dark.\n"  # mboxo did not escape it
    mbox = tmp_path / "mboxo.mbox"
    mbox.write_bytes(mbox_entry("ana@example.org Mon Mar  2 12:00:01 2026", body))
    (raw,) = read_mbox(mbox)
    assert raw.body.endswith(b"From here on the road is dark.\n")


def test_a_file_that_is_not_an_mbox_is_refused_clearly(tmp_path):
    eml = tmp_path / "single.eml"
    eml.write_bytes(GOOD)
    with pytest.raises(NotAnMbox, match="must start with a 'From ' line"):
        list(read_mbox(eml))


def test_an_eml_folder_imports_the_nasty_corpus_and_skips_bad_files(db_engine, settings, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(EMAILS, folder / "2026-03")
    (folder / "empty.eml").write_bytes(b"")
    (folder / "notes.EML").write_bytes(b"just some notes, no headers\n")
    (folder / "readme.txt").write_bytes(GOOD)  # not .eml: ignored
    (folder / "nested").mkdir()
    (folder / "nested" / "bus.eml").write_bytes(GOOD)
    bad: list[tuple[str, str]] = []

    raws = list(read_eml_folder(folder, on_bad=lambda p, r: bad.append((p, r))))
    corpus = sorted(EMAILS.glob("*.eml"))
    # bad_base64.eml has an unreadable Date and no Received header: reported, like the two others
    assert sorted(p for p, _ in bad) == ["2026-03/bad_base64.eml", "empty.eml", "notes.EML"]
    assert len(raws) == len(corpus) - 1 + 1
    assert raws[0].metadata["file"] == "2026-03/broken_multipart.eml"

    fetched, new = store(db_engine, settings, raws)
    assert fetched == new == len(raws)
    rows = stored(db_engine)
    assert "no llegó otra vez" in rows["unknown-charset.1@mail.example.org"].body
    assert rows["attachments-3@example.org"].meta["attachments"] == 4
    assert rows["mbox-1@example.org"].body.startswith("The stop on Oak Street")
    nul = rows["nul-bytes@example.org"]
    assert "\x00" not in nul.body and "\x00" not in nul.raw  # PostgreSQL text cannot hold NUL

    again = list(read_eml_folder(folder, on_bad=lambda p, r: None))
    assert store(db_engine, settings, again) == (len(raws), 0)  # re-import adds nothing


def test_the_same_mail_from_mbox_and_eml_is_stored_once(db_engine, settings, tmp_path):
    mbox = tmp_path / "a.mbox"
    mbox.write_bytes(mbox_entry("ana@example.org Mon Mar  2 12:00:01 2026", GOOD))
    (tmp_path / "eml").mkdir()
    (tmp_path / "eml" / "a.eml").write_bytes(GOOD.replace(b"\n", b"\r\n"))
    assert store(db_engine, settings, read_mbox(mbox)) == (1, 1)
    assert store(db_engine, settings, read_eml_folder(tmp_path / "eml")) == (1, 0)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(NotADirectoryError):
        list(read_eml_folder(tmp_path / "nope"))


def test_cli_imports_an_mbox_and_an_eml_folder_with_bad_entries_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "k")
    mbox = tmp_path / "parents.mbox"
    mbox.write_bytes(
        mbox_entry("ana@example.org Mon Mar  2 12:00:01 2026", GOOD)
        + mbox_entry("- Wed Mar  4 10:00:00 2026", b"this is not an email at all\n")
        + mbox_entry("leo@example.org Thu Mar  5 11:00:00 2026", RECEIVED)
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(mbox)])
    assert result.exit_code == 0, result.output
    assert "parents.mbox:message 2 (line " in result.stderr and "not an email" in result.stderr
    assert "3 rows: 2 new, 0 already stored, 1 skipped" in result.stdout

    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "a.eml").write_bytes(GOOD)  # the same mail as in the mbox: stored once
    (folder / "b.eml").write_bytes((EMAILS / "html_only_script.eml").read_bytes())
    (folder / "junk.eml").write_bytes(b"")
    result = runner.invoke(cli, ["import", str(folder)])
    assert result.exit_code == 0, result.output
    assert "saved:junk.eml: skipped: empty message" in result.stderr
    assert "3 rows: 1 new, 1 already stored, 1 skipped" in result.stdout

    not_mbox = tmp_path / "notes.mbox"
    not_mbox.write_text("hello\n")
    result = runner.invoke(cli, ["import", str(not_mbox)])
    assert result.exit_code == 1 and "is not an mbox file" in result.output
