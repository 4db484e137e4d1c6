"""The SMTP sender: drains the outbox (:mod:`alerts.outbox`) over smtplib.

Exactly-once discipline. A sender first *claims* a notification (``sending``, ``attempts`` + 1,
committed) and only then talks to the server; when the server accepts it the row becomes
``sent`` (committed). Two senders never send the same row: the claim is a conditional UPDATE.
An alert fired and queued before a crash is simply sent by the next run, once.

Failures:

- passing (connection refused, timeouts, TLS errors, 4xx replies): back to ``queued`` with
  ``next_attempt_at`` = now + 1 min, 2, 4 … capped at 1 h, and ``last_error``. Queued mail is
  retried for as long as it takes: nothing is dropped because a server was away.
- configuration (login refused, STARTTLS missing, sender refused): handled as passing, with an
  error naming the ``PULSE_SMTP_*`` / ``PULSE_MAIL_FROM`` setting to fix, because an admin can
  fix them and the queued alerts should then go out.
- permanent (5xx for the recipient or the content, or a message that cannot be built):
  ``failed`` with ``last_error``; the other notifications are still sent.

A crash after the claim and before the server's answer leaves a row ``sending``, and nobody can
know whether the server got it. Such a row's ``next_attempt_at`` is its claim deadline
(:data:`STALE_AFTER`, far longer than any live send); once it passes, the row is queued again
and re-sent with the same ``Message-ID``. This is at-least-once for that narrow window, on
purpose: a lost urgent alert is worse than a duplicate, and clients that de-duplicate by
Message-ID show one. Each such re-queue is logged as a warning and noted in ``last_error``.

TLS uses the system's trusted certificates; for a relay with a private CA point the standard
``SSL_CERT_FILE`` environment variable at its certificate.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from sqlalchemy import ColumnElement, Engine, or_, select, update

from core.db import read_session, write_session
from core.models import Notification, utcnow
from core.settings import Settings

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 30.0
STALE_AFTER = timedelta(minutes=10)
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
DATA_IMAGE = re.compile(r"""(["'])data:image/(png|jpeg|gif);base64,([A-Za-z0-9+/=\s]+)\1""")
SMTP_SETTINGS_HINT = "fix PULSE_SMTP_HOST / PULSE_SMTP_PORT / PULSE_SMTP_SECURITY"
LOGIN_HINT = "fix PULSE_SMTP_USERNAME / PULSE_SMTP_PASSWORD"
SENDER_HINT = "fix PULSE_MAIL_FROM or the SMTP login"
STALE_ERROR = (
    "the sender stopped while sending (attempt {n}); the server may have it: "
    "sending again with the same Message-ID"
)

Connect = Callable[[Settings], smtplib.SMTP]
_unconfigured_logged = False


@dataclass
class SendReport:
    """What one :func:`send_pending` run did."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    requeued_stale: int = 0
    error: str | None = None  # why the server could not be used at all in this run


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: 1 min, 2, 4 … at most 1 h."""
    return min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MAX)


def smtp_connect(settings: Settings, timeout: float = SMTP_TIMEOUT_SECONDS) -> smtplib.SMTP:
    """An open SMTP connection per the settings: TLS as configured, logged in if a user is set."""
    if not settings.smtp_host:
        raise ValueError("PULSE_SMTP_HOST is not set")
    host, port = settings.smtp_host, settings.smtp_port
    conn: smtplib.SMTP
    if settings.smtp_security == "ssl":
        conn = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = smtplib.SMTP(host, port, timeout=timeout)
    try:
        conn.ehlo()
        if settings.smtp_security == "starttls":
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            conn.login(settings.smtp_username, password)
    except BaseException:
        conn.close()
        raise
    return conn


def message_id(dedup_key: str, mail_from: str) -> str:
    """A Message-ID that is the same on every attempt for one notification."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "pulse.localhost"
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:32]
    return f"<pulse.{digest}@{domain}>"


def build_message(notification: Notification, settings: Settings, now: datetime) -> EmailMessage:
    """The email for ``notification``: text, and HTML with its images as inline CID parts."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = notification.recipient
    msg["Subject"] = notification.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(notification.dedup_key, settings.mail_from)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg.set_content(notification.body_text)
    if notification.body_html:
        html, images = _inline_images(notification.body_html, notification.dedup_key)
        msg.add_alternative(html, subtype="html")
        html_part = msg.get_payload()[-1]
        for n, (cid, subtype, data) in enumerate(images, start=1):
            html_part.add_related(
                data,
                maintype="image",
                subtype=subtype,
                cid=f"<{cid}>",
                disposition="inline",
                filename=f"image{n}.{subtype}",
            )
    return msg


def _inline_images(html: str, key: str) -> tuple[str, list[tuple[str, str, bytes]]]:
    images: list[tuple[str, str, bytes]] = []
    cids: dict[str, str] = {}
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_cid(match: re.Match[str]) -> str:
        quote, subtype, encoded = match.groups()
        if encoded not in cids:
            cids[encoded] = f"image{len(cids) + 1}.{tag}@pulse"
            images.append((cids[encoded], subtype, base64.b64decode(encoded)))
        return f"{quote}cid:{cids[encoded]}{quote}"

    return DATA_IMAGE.sub(to_cid, html), images


def send_pending(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    connect: Connect | None = None,
) -> SendReport:
    """Send every queued notification that is due; see the module docstring for the rules."""
    now = now or utcnow()
    report = SendReport(requeued_stale=_requeue_stale(engine, now))
    if not settings.smtp_host:
        _log_unconfigured()
        return report
    due = _due_ids(engine, now)
    if not due:
        return report
    try:
        conn = (connect or smtp_connect)(settings)
    except (smtplib.SMTPException, OSError) as exc:
        report.error = _connect_error(exc, settings)
        log.warning("outbox: cannot use the SMTP server: %s", report.error)
        report.deferred = _defer_all(engine, due, now, report.error)
        return report
    envelope_from = parseaddr(settings.mail_from)[1]
    try:
        for notification_id in due:
            notification = _claim(engine, notification_id, now)
            if notification is None:
                continue  # another sender claimed it first
            if not _send_one(engine, conn, notification, settings, envelope_from, now, report):
                break  # the connection is gone: the rest stays queued and due for the next run
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()
    return report


def _send_one(
    engine: Engine,
    conn: smtplib.SMTP,
    notification: Notification,
    settings: Settings,
    envelope_from: str,
    now: datetime,
    report: SendReport,
) -> bool:
    """Send one claimed notification and record the outcome; False when the connection is gone."""
    try:
        msg = build_message(notification, settings, now)
    except (ValueError, TypeError) as exc:
        _finish(engine, notification, "failed", now, f"cannot build the email: {exc}")
        report.failed += 1
        return True
    try:
        conn.send_message(msg, from_addr=envelope_from, to_addrs=[notification.recipient])
    except (smtplib.SMTPException, OSError) as exc:
        permanent, error, gone = _classify(exc)
        if permanent:
            _finish(engine, notification, "failed", now, error)
            report.failed += 1
            log.error("outbox: notification %s failed: %s", notification.id, error)
        else:
            _finish(engine, notification, "queued", now, error)
            report.deferred += 1
            log.warning("outbox: notification %s deferred: %s", notification.id, error)
        return not gone
    _finish(engine, notification, "sent", now)
    report.sent += 1
    return True


def _classify(exc: Exception) -> tuple[bool, str, bool]:
    """(permanent, error text, connection gone) for an error while sending one message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        return code >= 500, f"recipient refused: {code} {_text(reply)}", code == 421
    if isinstance(exc, smtplib.SMTPSenderRefused):
        error = f"sender refused: {exc.smtp_code} {_text(exc.smtp_error)} — {SENDER_HINT}"
        return False, error, exc.smtp_code == 421
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # e.g. a non-ASCII address, no SMTPUTF8
        return True, f"the server cannot take this email: {exc}", False
    if isinstance(exc, smtplib.SMTPResponseException):  # smtplib hangs up on a 421
        code = exc.smtp_code
        return code >= 500, f"server replied {code} {_text(exc.smtp_error)}", code == 421
    return False, f"connection lost: {_describe(exc)}", True


def _connect_error(exc: Exception, settings: Settings) -> str:
    where = f"{settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return f"SMTP login refused by {where}: {reply} — {LOGIN_HINT}"
    return f"cannot connect to {where}: {_describe(exc)} — if this persists, {SMTP_SETTINGS_HINT}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _log_unconfigured() -> None:
    global _unconfigured_logged
    if not _unconfigured_logged:
        _unconfigured_logged = True
        log.warning("outbox: PULSE_SMTP_HOST is not set: emails stay queued until it is")


def _due_clause(now: datetime) -> ColumnElement[bool]:
    return or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now)


def _due_ids(engine: Engine, now: datetime) -> list[int]:
    with read_session(engine) as session:
        query = (
            select(Notification.id)
            .where(Notification.status == "queued", _due_clause(now))
            .order_by(Notification.id)
        )
        return list(session.scalars(query))


def _requeue_stale(engine: Engine, now: datetime) -> int:
    with write_session(engine) as session:
        stale = session.scalars(
            select(Notification).where(
                Notification.status == "sending", Notification.next_attempt_at <= now
            )
        ).all()
        for notification in stale:
            notification.status = "queued"
            notification.last_error = STALE_ERROR.format(n=notification.attempts)
            log.warning(
                "outbox: notification %s was left sending by a stopped sender; queued again "
                "(it may arrive twice, with the same Message-ID)",
                notification.id,
            )
    return len(stale)


def _defer_all(engine: Engine, ids: list[int], now: datetime, error: str) -> int:
    with write_session(engine) as session:
        rows = session.scalars(
            select(Notification).where(Notification.id.in_(ids), Notification.status == "queued")
        ).all()
        for notification in rows:
            notification.attempts += 1
            notification.next_attempt_at = now + backoff(notification.attempts)
            notification.last_error = error
    return len(rows)


def _claim(engine: Engine, notification_id: int, now: datetime) -> Notification | None:
    with write_session(engine) as session:
        claimed = session.execute(
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.status == "queued",
                _due_clause(now),
            )
            .values(
                status="sending",
                attempts=Notification.attempts + 1,
                next_attempt_at=now + STALE_AFTER,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return None  # another sender claimed it first
        return session.get(Notification, notification_id)


def _finish(
    engine: Engine, notification: Notification, status: str, now: datetime, error: str | None = None
) -> None:
    values: dict[str, object] = {"status": status, "next_attempt_at": None}
    if status == "sent":
        values["sent_at"] = now  # last_error stays: the story of a late or repeated email
    else:
        values["last_error"] = error
    if status == "queued":
        values["next_attempt_at"] = now + backoff(notification.attempts)
    with write_session(engine) as session:
        session.execute(
            update(Notification)
            .where(Notification.id == notification.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
