"""The email outbox: notifications written in the transaction that fires an alert.

:func:`enqueue` runs inside the caller's transaction, so an alert and its emails are committed
together or not at all; :mod:`alerts.mailer` drains the table. Every row's ``dedup_key`` is
unique (the caller's key plus the recipient), and enqueueing is insert-or-ignore, so enqueueing
the same thing twice adds nothing.

A row moves ``queued`` → ``sending`` (claimed by a sender) → ``sent``, or back to ``queued`` with
a later ``next_attempt_at`` after a passing failure, or to ``failed`` when the server refused it
for good. ``next_attempt_at`` NULL means "due now".

HTML bodies carry their images as ``data:image/png;base64`` URIs; the mailer sends each as an
inline part referenced by ``cid:``, which mail clients show (many block ``data:`` images).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.db import read_session
from core.models import Notification, utcnow

log = logging.getLogger(__name__)

STATUSES = ("queued", "sending", "sent", "failed")
DEDUP_KEY_LENGTH = 255  # the column's size
# One address, no display name, no whitespace or line breaks (header injection).
ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


def notification_key(key: str, recipient: str) -> str:
    """The unique ``dedup_key`` of ``key`` sent to ``recipient`` (hashed to fit the column)."""
    full = f"{key}:{recipient.lower()}"
    if len(full) <= DEDUP_KEY_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()
    return f"{full[: DEDUP_KEY_LENGTH - len(digest) - 1]}~{digest}"


def enqueue(
    session: Session,
    dedup_key: str,
    recipients: Iterable[str],
    subject: str,
    body_text: str,
    body_html: str | None = None,
    alert_id: int | None = None,
    digest_date: date | None = None,
    *,
    now: datetime | None = None,
) -> int:
    """Queue one email per recipient in the caller's transaction; returns how many were new.

    A recipient that already has a notification with ``dedup_key`` gets nothing new. Invalid
    addresses are logged and skipped, so one typo in the routing never blocks an alert.
    """
    created = now or utcnow()
    rows: dict[str, dict[str, object]] = {}
    for raw in recipients:
        recipient = raw.strip()
        if not ADDRESS.fullmatch(recipient):
            log.error("outbox: skipping invalid recipient %r for %s", raw, dedup_key)
            continue
        key = notification_key(dedup_key, recipient)
        rows.setdefault(
            key,
            {
                "dedup_key": key,
                "alert_id": alert_id,
                "digest_date": digest_date,
                "recipient": recipient,
                "subject": subject,
                "body_text": body_text,
                "body_html": body_html,
                "status": "queued",
                "attempts": 0,
                "created_at": created,
            },
        )
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(Notification)
        .values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(Notification.id)
    )
    return len(session.execute(stmt).all())


def outbox_status(engine: Engine) -> dict[str, int]:
    """How many notifications are in each status (every status listed, zeros included)."""
    with read_session(engine) as session:
        counts = session.execute(
            select(Notification.status, func.count()).group_by(Notification.status)
        ).all()
    return {status: 0 for status in STATUSES} | {status: n for status, n in counts}
