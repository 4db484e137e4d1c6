"""The IMAP connector against a real Dovecot server (started per test by tests/dovecot.py).

Every test that stores goes through ``sync_source`` on SQLite and PostgreSQL (``db_engine``).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import read_session, write_session
from core.models import Message, SourceState
from ingestion.errors import FatalError, RetryableError
from ingestion.imap import ImapSource
from ingestion.runner import sync_source
from ingestion.sources import build_source
from tests.dovecot import DOVECOT, PASSWORD, USER, DovecotServer, dovecot_server, sample_email

EMAILS = Path(__file__).parent / "data" / "emails"
NAME = "district-inbox"


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A fresh Dovecot for the test; skipped loudly without the package, failed under CI."""
    if not DOVECOT.exists():
        reason = f"{DOVECOT} not found: install Debian's 'dovecot-imapd' to run the IMAP tests"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with dovecot_server() as server:
        yield server


def imap_source(server: DovecotServer, cls: type[ImapSource] = ImapSource, **options):
    options = {"username": USER, "password": PASSWORD, "timeout": 5, **options}
    return cls(name=NAME, host="127.0.0.1", port=server.port, ssl=False, **options)


def messages(engine) -> list[Message]:
    with read_session(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.received_at)))


def by_id(engine) -> dict[str, Message]:
    return {m.external_id: m for m in messages(engine)}


def source_state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, NAME)


def flags(server: DovecotServer, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
    client = server.client()
    try:
        client.select_folder(folder, readonly=True)
        response = client.fetch(client.search("ALL"), ["FLAGS"])
        # \\Recent belongs to the session that first sees a message, not to the message
        return {
            uid: tuple(f for f in data[b"FLAGS"] if f != b"\\Recent")
            for uid, data in response.items()
        }
    finally:
        client.logout()


def uidvalidity(server: DovecotServer, folder: str) -> int:
    client = server.client()
    try:
        return client.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"]
    finally:
        client.logout()


class BatchRecorder(ImapSource):
    """Records the UIDs of each FETCH the connector sends."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.batches: list[list[int]] = []

    def _fetch_batch(self, client, folder, uidvalidity, uids):
        self.batches.append(list(uids))
        return super()._fetch_batch(client, folder, uidvalidity, uids)


def test_first_sync_incremental_sync_and_rerun(db_engine, settings, dovecot):
    arrived = datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)
    dovecot.append([{"msg": sample_email(0), "date": arrived}, sample_email(1), sample_email(2)])
    source = imap_source(dovecot)

    first = sync_source(db_engine, source, settings)
    assert (first.fetched, first.new, first.error) == (3, 3, None)
    stored = by_id(db_engine)
    assert set(stored) == {
        "msg-0@mail.example.org",
        "msg-1@mail.example.org",
        "msg-2@mail.example.org",
    }
    zero = stored["msg-0@mail.example.org"]
    # received_at is the server's INTERNALDATE, not the Date header (07:30)
    assert zero.received_at.replace(tzinfo=UTC) == arrived
    assert zero.author == "parent0@example.org" and zero.source_kind == "email"
    assert zero.subject == "Re: Bus 12 late again (#0)"
    assert zero.body == (
        "The bus on route 12 was 25 minutes late this morning. Third time this week.\nReference 0."
    )
    assert "Dear families" in zero.raw and "Dear families" not in zero.body  # reply stripped
    assert zero.meta["message_id"] == "msg-0@mail.example.org"
    assert zero.meta["attachments"] == 0 and zero.meta["uid"] == 1
    assert zero.meta["folder"] == "INBOX" and zero.meta["truncated"] is False
    cursor = source_state(db_engine).cursor
    assert cursor == {"INBOX": {"uidvalidity": uidvalidity(dovecot, "INBOX"), "last_uid": 3}}

    dovecot.append([sample_email(3), sample_email(4)])
    second = sync_source(db_engine, source, settings)
    assert (second.fetched, second.new) == (2, 2)  # only what is new was fetched
    assert source_state(db_engine).cursor["INBOX"]["last_uid"] == 5

    # "UID SEARCH UID 6:*" answers with UID 5 although nothing is new: it must be filtered out
    rerun = sync_source(db_engine, source, settings)
    assert (rerun.fetched, rerun.new, rerun.error) == (0, 0, None)
    assert len(messages(db_engine)) == 5
    assert source_state(db_engine).cursor["INBOX"]["last_uid"] == 5


def test_syncing_does_not_mark_mail_read(db_engine, settings, dovecot):
    dovecot.append(
        [
            sample_email(1),
            {"msg": sample_email(2), "flags": [b"\\Flagged"]},
            {"msg": sample_email(3), "flags": [b"\\Seen"]},
        ]
    )
    before = flags(dovecot)
    assert before == {1: (), 2: (b"\\Flagged",), 3: (b"\\Seen",)}
    assert sync_source(db_engine, imap_source(dovecot), settings).new == 3
    assert flags(dovecot) == before


def test_fetches_in_batches_and_spreads_a_big_backlog_over_syncs(db_engine, settings, dovecot):
    dovecot.append([sample_email(n) for n in range(7)])
    source = imap_source(dovecot, BatchRecorder, batch_size=2, max_messages_per_sync=5)

    first = sync_source(db_engine, source, settings)
    assert (first.fetched, first.new) == (5, 5)
    assert source.batches == [[1, 2], [3, 4], [5]]
    assert source_state(db_engine).cursor["INBOX"]["last_uid"] == 5

    second = sync_source(db_engine, source, settings)
    assert (second.fetched, second.new) == (2, 2)
    assert source.batches[3:] == [[6, 7]]
    assert len(messages(db_engine)) == 7


def test_each_folder_has_its_own_cursor_and_a_copy_is_stored_once(db_engine, settings, dovecot):
    dovecot.append([sample_email(1), sample_email(2)])
    dovecot.append([sample_email(2), sample_email(3), sample_email(4)], folder="Parents")
    source = imap_source(dovecot, folders=["INBOX", "Parents"])

    result = sync_source(db_engine, source, settings)
    assert (result.fetched, result.new) == (5, 4)  # msg-2 is in both folders
    cursor = source_state(db_engine).cursor
    assert cursor["INBOX"]["last_uid"] == 2 and cursor["Parents"]["last_uid"] == 3
    assert cursor["INBOX"]["uidvalidity"] != cursor["Parents"]["uidvalidity"]

    dovecot.append([sample_email(5)], folder="Parents")
    again = sync_source(db_engine, source, settings)
    assert (again.fetched, again.new) == (1, 1)
    assert by_id(db_engine)["msg-5@mail.example.org"].meta["folder"] == "Parents"


def test_a_new_uidvalidity_rereads_the_folder_and_adds_nothing(db_engine, settings, dovecot):
    originals = [sample_email(n) for n in range(3)]
    dovecot.append(originals, folder="Parents")
    source = imap_source(dovecot, folders=["Parents"])
    assert sync_source(db_engine, source, settings).new == 3
    old = source_state(db_engine).cursor["Parents"]

    client = dovecot.client()  # the mailbox is recreated: every UID starts again from 1
    client.delete_folder("Parents")
    client.logout()
    dovecot.append(originals, folder="Parents")
    new_validity = uidvalidity(dovecot, "Parents")
    assert new_validity != old["uidvalidity"]

    reset = sync_source(db_engine, source, settings)
    assert (reset.fetched, reset.new, reset.error) == (3, 0, None)  # read again, stored once
    assert source_state(db_engine).cursor == {
        "Parents": {"uidvalidity": new_validity, "last_uid": 3}
    }
    dovecot.append([sample_email(9)], folder="Parents")
    assert sync_source(db_engine, source, settings).new == 1
    assert len(messages(db_engine)) == 4


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "shutdown"])
def test_server_killed_mid_sync_loses_nothing(db_engine, settings, dovecot, sig):
    dovecot.append([sample_email(0)])
    assert sync_source(db_engine, imap_source(dovecot), settings).new == 1
    cursor_before = source_state(db_engine).cursor
    dovecot.append([sample_email(n) for n in range(1, 6)])

    class KillsServerAfterFirstBatch(ImapSource):
        batches = 0

        def _fetch_batch(self, client, folder, uidvalidity, uids):
            fetched = super()._fetch_batch(client, folder, uidvalidity, uids)
            type(self).batches += 1
            if type(self).batches == 1:
                dovecot.kill(sig)  # the server goes away with the connection open, mid-sync
            return fetched

    killer = imap_source(dovecot, KillsServerAfterFirstBatch, batch_size=2)
    delays: list[float] = []
    result = sync_source(db_engine, killer, settings, sleep=delays.append, rand=lambda: 0.5)
    assert result.error and "RetryableError" in result.error
    assert KillsServerAfterFirstBatch.batches == 1  # the second batch hit the dead server
    assert len(delays) == settings.sync_max_attempts - 1  # retried (refused while down)
    state = source_state(db_engine)
    assert state.cursor == cursor_before and state.consecutive_failures == 1
    assert len(messages(db_engine)) == 1  # nothing of the broken sync was stored

    dovecot.start()  # same maildir, same port
    recovered = sync_source(db_engine, imap_source(dovecot), settings)
    assert (recovered.fetched, recovered.new, recovered.error) == (5, 5, None)
    assert len(messages(db_engine)) == 6
    assert source_state(db_engine).cursor["INBOX"]["last_uid"] == 6


def test_a_wrong_password_is_fatal_and_not_retried(db_engine, settings, dovecot):
    dovecot.append([sample_email(1)])

    class CountsLogins(ImapSource):
        logins = 0

        def _connect(self):
            type(self).logins += 1
            return super()._connect()

    source = imap_source(dovecot, CountsLogins, password="not the password")
    delays: list[float] = []
    result = sync_source(db_engine, source, settings, sleep=delays.append)
    assert result.error.startswith("FatalError:")
    assert f"login as {USER!r} failed ([AUTHENTICATIONFAILED]" in result.error
    assert "check the username and password" in result.error
    assert CountsLogins.logins == 1 and delays == []
    log = dovecot.wait_for_log("auth failed, 1 attempts")
    assert log.count("auth failed, 1 attempts") == 1  # the server saw one attempt
    state = source_state(db_engine)
    assert state.last_error == result.error and state.cursor is None
    assert messages(db_engine) == []


def test_xoauth2_login(db_engine, settings, dovecot):
    token = "ya29.a0AfB_byC-test-access-token"
    dovecot.add_user("oauth-user", token)  # Dovecot checks the bearer token as the password
    dovecot.append([sample_email(1), sample_email(2)], user="oauth-user")
    source = imap_source(dovecot, username="oauth-user", password=None, oauth2_token=token)
    assert sync_source(db_engine, source, settings).new == 2
    assert "user=<oauth-user>, method=XOAUTH2" in dovecot.wait_for_log("method=XOAUTH2")

    expired = imap_source(dovecot, username="oauth-user", password=None, oauth2_token="expired")
    with pytest.raises(FatalError, match="OAuth2 token"):
        expired.fetch(None)


def test_a_missing_folder_is_fatal_and_named(dovecot):
    with pytest.raises(FatalError, match="'Archive/2025'"):
        imap_source(dovecot, folders=["Archive/2025"]).fetch(None)


def test_tls_to_a_plain_imap_port_is_a_setting_to_fix(dovecot):
    source = ImapSource(
        name="x", host="127.0.0.1", port=dovecot.port, ssl=True, username=USER, password=PASSWORD
    )
    with pytest.raises(FatalError, match="does not speak TLS on this port"):
        source.fetch(None)


def test_refused_and_silent_servers_are_retryable():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = ImapSource(
        name="x", host="127.0.0.1", port=port, ssl=False, username="u", password="p"
    )
    with pytest.raises(RetryableError, match="connection refused"):
        refused.fetch(None)

    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        hung = ImapSource(
            name="x",
            host="127.0.0.1",
            port=port,
            ssl=False,
            username="u",
            password="p",
            timeout=0.2,
        )
        with pytest.raises(RetryableError, match=r"no answer within 0\.2s"):
            hung.fetch(None)


def big_email(megabytes: int = 5) -> bytes:
    line = b"The heating in room 4 has been broken since Monday and the children are cold.\n"
    body = line * (megabytes * 1_000_000 // len(line))
    return (
        b"From: long.letter@example.org\nSubject: A very long letter\n"
        b"Message-ID: <big-body@example.org>\nContent-Type: text/plain; charset=utf-8\n\n" + body
    )


def corpus() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(EMAILS.glob("*.eml"))}


def test_nasty_emails_all_ingest_with_sensible_text(db_engine, settings, dovecot):
    samples = corpus()
    assert len(samples) >= 10
    dovecot.append([*samples.values(), big_email()])
    source = imap_source(dovecot)

    result = sync_source(db_engine, source, settings)
    assert result.error is None and result.new == len(samples) + 1
    stored = {m.meta["uid"]: m for m in messages(db_engine)}
    by_name = dict(zip(samples, (stored[uid] for uid in range(1, len(samples) + 1)), strict=True))

    unknown = by_name["unknown_charset.eml"]
    assert "no llegó otra vez esta mañana" in unknown.body
    assert by_name["latin1_declared_utf8.eml"].body.startswith("La cantine a servi du poisson")
    assert "fille était malade" in by_name["latin1_declared_utf8.eml"].body
    spanish = by_name["spanish_encoded_subject.eml"]
    assert spanish.subject == "Reunión de padres y cancelación del año"
    assert spanish.body.startswith("¿Por qué se canceló la reunión")
    html = by_name["html_only_script.eml"]
    assert html.body_html_stripped and "they served fish & chips" in html.body
    assert "document.cookie" not in html.body and "alert" not in html.body
    no_id = by_name["no_message_id.eml"]
    assert no_id.external_id.startswith("sha256:") and no_id.meta["message_id"] is None
    attachments = by_name["multipart_attachments.eml"]
    assert attachments.meta["attachments"] == 4
    assert (
        attachments.body
        == "Attached is the signed permission slip for the field trip, plus two photos."
    )
    reply = by_name["reply_signature_en.eml"]
    assert reply.body.endswith("My son needs care until 5.")
    assert "Jordan Smith" not in reply.body and "Dear families" in reply.raw
    assert by_name["reply_outlook_es.eml"].body.endswith("¿Pueden revisar el horario?")
    assert by_name["raw_8bit_headers.eml"].subject == "Calefacción rota en el aula 4"
    assert by_name["raw_8bit_headers.eml"].external_id == "raw-8bit@example.org"
    assert "forgot the boundary" in by_name["broken_multipart.eml"].body
    big = stored[len(samples) + 1]
    assert big.body_truncated and len(big.body) == settings.max_body_chars
    assert big.body.startswith("The heating in room 4")

    with write_session(db_engine) as session:  # forget the cursor: everything is read again
        session.get_one(SourceState, NAME).cursor = None
    again = sync_source(db_engine, source, settings)
    assert (again.fetched, again.new) == (len(samples) + 1, 0)  # ids (and fallbacks) are stable


def test_a_message_over_the_size_limit_is_fetched_as_a_prefix(db_engine, settings, dovecot):
    dovecot.append([big_email(), sample_email(1)])
    source = imap_source(dovecot, max_message_bytes=50_000)
    assert sync_source(db_engine, source, settings).new == 2
    stored = by_id(db_engine)
    big = stored["big-body@example.org"]
    assert big.meta["truncated"] is True and big.meta["size"] > 5_000_000
    assert big.body.startswith("The heating in room 4") and len(big.raw) <= 50_000
    assert stored["msg-1@mail.example.org"].meta["truncated"] is False


def test_built_from_the_sources_file_options(monkeypatch, settings):
    monkeypatch.setenv("PULSE_TEST_IMAP_PASSWORD", "s3cret")
    table = {
        "name": "office",
        "type": "imap",
        "host": "imap.example.org",
        "username": "office@example.org",
        "password_env": "PULSE_TEST_IMAP_PASSWORD",
        "folders": ["INBOX", "Parents"],
        "interval_seconds": 120,
    }
    source = build_source("sources.toml [[source]] #1", table, settings)
    assert isinstance(source, ImapSource) and source.kind == "email"
    assert source.password == "s3cret" and source.folders == ("INBOX", "Parents")
    assert source.port == 993 and source.ssl and "s3cret" not in repr(source)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of password"),
        ({"password": "p", "oauth2_token": "t"}, "exactly one of password"),
        ({"password": "p", "folders": "INBOX"}, "list of folder names"),
        ({"password": "p", "port": 0}, "TCP port"),
        ({"password": "p", "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_are_refused_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        ImapSource(name="x", host="h", username="u", **options)
