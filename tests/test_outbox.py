"""The outbox: one row per recipient, in the caller's transaction, never twice for one key."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from alerts.outbox import DEDUP_KEY_LENGTH, enqueue, notification_key, outbox_status
from core.db import read_session, write_session
from core.models import Alert, Notification

T0 = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


def queue(engine, key, recipients, **kwargs) -> int:
    with write_session(engine) as session:
        return enqueue(session, key, recipients, "Subject", "Text", "<p>HTML</p>", **kwargs)


def rows(engine) -> list[Notification]:
    with read_session(engine) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def test_one_queued_row_per_recipient(db_engine):
    with write_session(db_engine) as session:
        alert = Alert(kind="spike", fingerprint="spike:topic:7", state="firing", fired_at=T0)
        session.add(alert)
        session.flush()
        added = enqueue(
            session,
            f"alert:{alert.id}:fired",
            ["transport@mvsd.example", " cabinet@mvsd.example "],
            "[Pulse] Spike: Buses",
            "text body",
            "<p>html body</p>",
            alert_id=alert.id,
            now=T0,
        )
    assert added == 2
    stored = rows(db_engine)
    assert [n.recipient for n in stored] == ["transport@mvsd.example", "cabinet@mvsd.example"]
    for n in stored:
        assert n.dedup_key == f"alert:{alert.id}:fired:{n.recipient}"
        assert (n.alert_id, n.status, n.attempts) == (alert.id, "queued", 0)
        assert (n.subject, n.body_text, n.body_html) == (
            "[Pulse] Spike: Buses",
            "text body",
            "<p>html body</p>",
        )
        assert n.created_at == T0
        assert n.next_attempt_at is None  # due at once
        assert n.sent_at is None and n.last_error is None


def test_same_key_twice_adds_nothing(db_engine):
    assert queue(db_engine, "digest:2026-03-03", ["a@mvsd.example", "b@mvsd.example"]) == 2
    assert queue(db_engine, "digest:2026-03-03", ["a@mvsd.example", "b@mvsd.example"]) == 0
    # Only the recipient that is new for this key gets a row; case does not make a new one.
    assert queue(db_engine, "digest:2026-03-03", ["A@mvsd.example", "c@mvsd.example"]) == 1
    assert queue(db_engine, "digest:2026-03-04", ["a@mvsd.example"]) == 1
    assert len(rows(db_engine)) == 4


def test_duplicates_within_one_call_make_one_row(db_engine):
    assert queue(db_engine, "k", ["a@mvsd.example", "A@MVSD.example", "a@mvsd.example"]) == 1
    assert [n.recipient for n in rows(db_engine)] == ["a@mvsd.example"]


def test_a_failed_firing_transaction_queues_nothing(db_engine):
    with pytest.raises(RuntimeError), write_session(db_engine) as session:
        alert = Alert(kind="spike", fingerprint="spike:topic:7", state="firing")
        session.add(alert)
        session.flush()
        enqueue(session, f"alert:{alert.id}", ["a@mvsd.example"], "s", "t", alert_id=alert.id)
        raise RuntimeError("the engine crashed before committing")
    assert rows(db_engine) == []
    with read_session(db_engine) as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 0


def test_long_keys_fit_the_column_and_still_dedup(db_engine):
    key = "digest:" + "x" * 250
    recipient = "someone.with.a.long.name@" + "sub." * 20 + "mvsd.example"
    assert queue(db_engine, key, [recipient]) == 1
    assert queue(db_engine, key, [recipient]) == 0
    assert queue(db_engine, key, ["other@mvsd.example"]) == 1
    keys = [n.dedup_key for n in rows(db_engine)]
    assert all(len(k) <= DEDUP_KEY_LENGTH for k in keys)
    assert len(set(keys)) == 2
    assert notification_key("k", "A@x.org") == "k:a@x.org"


def test_invalid_recipients_are_skipped_and_logged(db_engine, caplog):
    caplog.set_level(logging.ERROR, logger="alerts.outbox")
    recipients = ["not-an-address", "a@mvsd.example\r\nBcc: x@evil.example", "ok@mvsd.example"]
    assert queue(db_engine, "k", recipients) == 1
    assert [n.recipient for n in rows(db_engine)] == ["ok@mvsd.example"]
    assert len([r for r in caplog.records if "invalid recipient" in r.getMessage()]) == 2
    assert queue(db_engine, "k2", []) == 0


def test_digest_date_is_kept(db_engine):
    queue(db_engine, "digest:2026-03-03", ["a@mvsd.example"], digest_date=date(2026, 3, 3))
    assert rows(db_engine)[0].digest_date == date(2026, 3, 3)


def test_outbox_status_counts_every_status(db_engine):
    assert outbox_status(db_engine) == {"queued": 0, "sending": 0, "sent": 0, "failed": 0}
    queue(db_engine, "k", ["a@mvsd.example", "b@mvsd.example", "c@mvsd.example"])
    with write_session(db_engine) as session:
        first, second, _ = session.scalars(select(Notification).order_by(Notification.id))
        first.status = "sent"
        second.status = "failed"
    assert outbox_status(db_engine) == {"queued": 1, "sending": 0, "sent": 1, "failed": 1}
