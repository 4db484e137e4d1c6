"""The SMTP sender and alert emails, against a real SMTP server (aiosmtpd, tests/smtp_server.py).

Time is injected (``now``): backoff and stale claims are checked without sleeping.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from conftest import free_port
from pydantic import SecretStr
from sqlalchemy import select

from alerts import mailer
from alerts.mailer import STALE_AFTER, backoff, message_id, send_pending, smtp_connect
from alerts.outbox import enqueue, notification_key, outbox_status
from alerts.render import AlertSummary, drilldown_url, mask_pii, render_alert_email, sample_text
from core.db import create_db_engine, migrate, read_session, write_session
from core.models import Alert, Notification
from core.settings import PROJECT_ROOT
from tests.smtp_server import OPENSSL, SmtpServer, make_certificate

T0 = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


@pytest.fixture
def smtp():
    with SmtpServer(free_port()) as server:
        yield server


@pytest.fixture
def engine(settings):
    """A migrated SQLite engine, for tests where the database does not matter."""
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def configure(settings, port, **changes):
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            "mail_from": "Pulse <pulse@mvsd.example>",
            "public_url": "https://pulse.mvsd.example/",
            **changes,
        }
    )


def queue(engine, key, recipients, subject="[Pulse] Test", text="Text", html=None) -> int:
    with write_session(engine) as session:
        return enqueue(session, key, recipients, subject, text, html)


def notifications(engine) -> list[Notification]:
    with read_session(engine) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def spike_summary(**changes) -> AlertSummary:
    values = {
        "kind": "spike",
        "label": "Bus routes",
        "window_start": T0 - timedelta(hours=3),
        "window_end": T0,
        "topic_id": 17,
        "top_words": ["bus", "late", "route"],
        "observed": 42,
        "expected": 8.2,
        "p_value": 0.00002,
        "samples": [
            "The 7:15 bus never came, call me at (555) 123-4567 or jane.doe@example.org",
            "<script>alert('x')</script> Route 12 is late again & nobody answers",
        ],
        "series": [2, 3, 1, 4, 2, 3, 9, 18, 15],
    }
    return AlertSummary(**(values | changes))


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call (555) 123-4567 now", "call [phone] now"),
        ("text +1 555 123 4567.", "text [phone]."),
        ("(my cell 5551234567)", "(my cell [phone])"),
        ("write jane.doe@example.org or mailto:a@b.co", "write [email] or [email]"),
        ("see https://x.example.com/a?b=1 or mvsd.k12.us/lunch", "see [link] or [link]"),
        ("grade 5, room 204, 3 buses at 7:15", "grade 5, room 204, 3 buses at 7:15"),
    ],
)
def test_mask_pii(text, masked):
    assert mask_pii(text) == masked


def test_sample_text_is_one_short_line():
    sample = sample_text("line one\n\n  line two " + "word " * 100)
    assert "\n" not in sample and sample.startswith("line one line two word")
    assert len(sample) <= 280 and sample.endswith("…")


def test_drilldown_url():
    url = drilldown_url(spike_summary(), "https://pulse.mvsd.example/")
    assert url == (
        "https://pulse.mvsd.example/topics/17"
        "?from=2026-03-03T12%3A00%3A00Z&to=2026-03-03T15%3A00%3A00Z"
    )
    down = spike_summary(kind="source_down", topic_id=None, label="district inbox")
    assert drilldown_url(down, "https://p.example") == "https://p.example/sources"
    assert drilldown_url(spike_summary(path="/alerts/5"), "https://p.example") == (
        "https://p.example/alerts/5"
    )


def test_several_alerts_make_one_email(settings):
    group = [
        spike_summary(),
        spike_summary(kind="emerging", label="Phone policy", topic_id=31, expected=None),
        spike_summary(kind="source_down", label="district inbox", topic_id=None, observed=None),
    ]
    subject, text, html = render_alert_email(group, settings)
    assert subject == (
        "[Pulse] 3 alerts: Spike: Bus routes; New topic: Phone policy; Source down: district inbox"
    )
    for part in (text, html):
        assert "Spike: Bus routes: 42 messages in 3 h (usually 8.2)" in part
        assert "New topic: Phone policy: 42 messages in 3 h" in part
        assert "Source down: district inbox" in part
        assert "/topics/31?from=" in part and "/sources" in part
    assert html.count("data:image/png;base64,") == 3  # a sparkline per alert with a series
    single = render_alert_email(spike_summary(), settings)
    assert single.subject == "[Pulse] Spike: Bus routes: 42 messages in 3 h (usually 8.2)"
    assert "42 messages; usually about 8.2 at this time (5.1×)" in single.text
    assert "p < 0.001" in single.text and "p &lt; 0.001" in single.html
    many = [spike_summary(label=f"Topic\nnumber {n}") for n in range(12)]
    long_subject = render_alert_email(many, settings).subject
    assert long_subject.startswith("[Pulse] 12 alerts: Spike: Topic number 0; Spike: Topic")
    assert len(long_subject) == 160 and long_subject.endswith("…") and "\n" not in long_subject


def test_link_only_risk_email_carries_no_message_text(settings):
    risk = spike_summary(
        kind="risk",
        label="self-harm",
        topic_id=None,
        observed=1,
        expected=None,
        p_value=None,
        samples=["I don't want to be here anymore"],
        top_words=["anymore"],
        link_only=True,
    )
    subject, text, html = render_alert_email(risk, settings)
    assert subject == "[Pulse] Risk: self-harm: 1 message to review"
    for part in (subject, text, html):
        assert "want to be here" not in part and "anymore" not in part
    assert "http://127.0.0.1:8050/risk" in text and 'href="http://127.0.0.1:8050/risk"' in html


def test_render_rejects_nonsense(settings):
    with pytest.raises(ValueError, match="at least one"):
        render_alert_email([], settings)
    with pytest.raises(ValueError, match="unknown alert kind"):
        render_alert_email(spike_summary(kind="weather"), settings)


# --- delivery ----------------------------------------------------------------------------------


def test_alert_email_arrives_with_its_content(db_engine, settings, smtp):
    settings = configure(settings, smtp.port)
    subject, text, html = render_alert_email(spike_summary(), settings)
    recipients = ["transport@mvsd.example", "cabinet@mvsd.example"]
    with write_session(db_engine) as session:  # the transaction that fires the alert
        alert = Alert(kind="spike", fingerprint="spike:topic:17", state="firing", fired_at=T0)
        session.add(alert)
        session.flush()
        enqueue(session, f"alert:{alert.id}:fired", recipients, subject, text, html, alert.id)

    report = send_pending(db_engine, settings, now=T0)

    assert (report.sent, report.deferred, report.failed, report.error) == (2, 0, 0, None)
    assert [r.rcpt_tos for r in smtp.received] == [[r] for r in recipients]
    received = smtp.received[0]
    assert received.mail_from == "pulse@mvsd.example"
    msg = received.message
    assert msg["From"] == "Pulse <pulse@mvsd.example>"
    assert msg["To"] == "transport@mvsd.example"
    assert msg["Subject"] == "[Pulse] Spike: Bus routes: 42 messages in 3 h (usually 8.2)"
    assert msg["Date"].datetime == T0
    key = notification_key(f"alert:{alert.id}:fired", "transport@mvsd.example")
    assert msg["Message-ID"] == message_id(key, settings.mail_from)
    assert msg["Message-ID"] != smtp.received[1].message["Message-ID"]
    assert msg["Auto-Submitted"] == "auto-generated"

    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
    assert image.get_content_disposition() == "inline"

    body_text, body_html = plain.get_content(), html_part.get_content()
    link = "https://pulse.mvsd.example/topics/17?from=2026-03-03T12%3A00%3A00Z"
    assert f"{link}&to=2026-03-03T15%3A00%3A00Z" in body_text
    assert f'href="{link}&amp;to=2026-03-03T15%3A00%3A00Z"' in body_html
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in body_html
    assert "data:image" not in body_html
    for body in (body_text, body_html):
        assert "call me at [phone] or [email]" in body
        assert "123-4567" not in body and "jane.doe" not in body
        assert "Top words" in body and "bus, late, route" in body
        assert "42 messages; usually about 8.2 at this time (5.1×)" in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Route 12 is late again &amp;" in (
        body_html
    )
    assert "<script>" not in body_html
    assert "<script>alert('x')</script>" in body_text  # plain text needs no escaping

    sent = notifications(db_engine)
    assert [(n.status, n.attempts, n.sent_at) for n in sent] == [("sent", 1, T0)] * 2
    assert outbox_status(db_engine) == {"queued": 0, "sending": 0, "sent": 2, "failed": 0}
    assert send_pending(db_engine, settings, now=T0 + MINUTE).sent == 0
    assert len(smtp.received) == 2


def test_backoff_doubles_up_to_an_hour():
    minutes = [backoff(n) / MINUTE for n in range(1, 9)]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60]


def test_outage_keeps_mail_queued_then_delivers_it_once(db_engine, settings):
    server = SmtpServer(free_port())
    settings = configure(settings, server.port)
    with server:
        queue(db_engine, "before", ["a@mvsd.example"])
        assert send_pending(db_engine, settings, now=T0).sent == 1
    # The server is down: the port refuses connections.
    queue(db_engine, "during", ["a@mvsd.example"])
    report = send_pending(db_engine, settings, now=T0)
    assert (report.sent, report.deferred) == (0, 1)
    assert "cannot connect to 127.0.0.1" in report.error and "PULSE_SMTP_HOST" in report.error
    waiting = notifications(db_engine)[1]
    assert (waiting.status, waiting.attempts) == ("queued", 1)
    assert waiting.next_attempt_at == T0 + MINUTE
    assert "ConnectionRefusedError" in waiting.last_error

    # Not due yet: nobody tries.
    assert send_pending(db_engine, settings, now=T0 + 30 * timedelta(seconds=1)).deferred == 0
    assert notifications(db_engine)[1].attempts == 1
    # Due and still down: the wait doubles.
    assert send_pending(db_engine, settings, now=T0 + MINUTE).deferred == 1
    waiting = notifications(db_engine)[1]
    assert (waiting.attempts, waiting.next_attempt_at) == (2, T0 + 3 * MINUTE)

    with server:  # back, on the same port
        assert send_pending(db_engine, settings, now=T0 + 2 * MINUTE).sent == 0  # not due
        assert send_pending(db_engine, settings, now=T0 + 3 * MINUTE).sent == 1
        assert send_pending(db_engine, settings, now=T0 + 4 * MINUTE).sent == 0
    assert [r.message["Message-ID"] for r in server.received] == [
        message_id(notification_key(k, "a@mvsd.example"), settings.mail_from)
        for k in ("before", "during")
    ]
    delivered = notifications(db_engine)[1]
    assert (delivered.status, delivered.attempts, delivered.sent_at) == (
        "sent",
        3,
        T0 + 3 * MINUTE,
    )


def test_enqueued_twice_is_sent_once(db_engine, settings, smtp):
    settings = configure(settings, smtp.port)
    assert queue(db_engine, "alert:1:fired", ["a@mvsd.example"]) == 1
    assert queue(db_engine, "alert:1:fired", ["a@mvsd.example"]) == 0
    send_pending(db_engine, settings, now=T0)
    assert queue(db_engine, "alert:1:fired", ["a@mvsd.example"]) == 0  # after sending too
    send_pending(db_engine, settings, now=T0 + MINUTE)
    assert len(smtp.received) == 1


CRASH_AFTER_ENQUEUE = """
import os, signal, sys
from alerts.outbox import enqueue
from core.db import create_db_engine, write_session
from core.models import Alert

engine = create_db_engine(sys.argv[1])
with write_session(engine) as session:
    alert = Alert(kind="spike", fingerprint="spike:topic:3", state="firing")
    session.add(alert)
    session.flush()
    enqueue(session, f"alert:{alert.id}:fired", ["a@mvsd.example"], "Spike", "text", None, alert.id)
    if sys.argv[2] == "before-commit":
        os.kill(os.getpid(), signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)  # fired and queued; the sender never ran
"""


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
def test_crash_between_firing_and_sending(db_url, settings, smtp, when):
    engine = create_db_engine(db_url)
    migrate(engine)
    engine.dispose()
    died = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_ENQUEUE, db_url, when],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=60,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()

    settings = configure(settings, smtp.port)
    restarted = create_db_engine(db_url)  # a new process's engine
    try:
        send_pending(restarted, settings, now=T0)
        send_pending(restarted, settings, now=T0 + STALE_AFTER + MINUTE)
        expected = 0 if when == "before-commit" else 1  # all or nothing, then exactly once
        assert len(smtp.received) == expected
        assert len(notifications(restarted)) == expected
    finally:
        restarted.dispose()


class SenderKilled(BaseException):
    """The sender process dies (not an error it could handle)."""


class DiesWhileSending:
    """A real SMTP connection in a process that dies before or after the server accepts."""

    def __init__(self, conn, after_accept):
        self.conn = conn
        self.after_accept = after_accept

    def send_message(self, msg, **kwargs):
        if self.after_accept:
            self.conn.send_message(msg, **kwargs)
        raise SenderKilled

    def quit(self):
        self.conn.quit()

    def close(self):
        self.conn.close()


@pytest.mark.parametrize("after_accept", [False, True], ids=["before-server", "after-server"])
def test_crash_after_claim_is_requeued_after_the_stale_timeout(
    db_engine, settings, smtp, after_accept
):
    settings = configure(settings, smtp.port)
    queue(db_engine, "alert:9:fired", ["a@mvsd.example"])

    def dying(s):
        return DiesWhileSending(smtp_connect(s), after_accept)

    with pytest.raises(SenderKilled):
        send_pending(db_engine, settings, now=T0, connect=dying)
    claimed = notifications(db_engine)[0]
    assert (claimed.status, claimed.attempts) == ("sending", 1)
    assert len(smtp.received) == int(after_accept)

    # A restarted sender inside the claim deadline leaves the claim alone: no silent resend.
    report = send_pending(db_engine, settings, now=T0 + STALE_AFTER - MINUTE)
    assert (report.requeued_stale, report.sent) == (0, 0)
    assert outbox_status(db_engine)["sending"] == 1

    # After it, the mail is queued again and sent: never lost (at-least-once, see alerts.mailer).
    report = send_pending(db_engine, settings, now=T0 + STALE_AFTER)
    assert (report.requeued_stale, report.sent) == (1, 1)
    done = notifications(db_engine)[0]
    assert (done.status, done.attempts) == ("sent", 2)
    assert "stopped while sending" in done.last_error
    ids = {r.message["Message-ID"] for r in smtp.received}
    assert len(smtp.received) == 1 + int(after_accept) and len(ids) == 1  # one Message-ID


def test_a_second_sender_never_sends_what_the_first_claimed(db_engine, settings, smtp):
    settings = configure(settings, smtp.port)
    queue(db_engine, "k", [f"p{n}@mvsd.example" for n in range(4)])
    nested = []

    class SlowFirstSender:
        """Runs a whole second sender while the first is in the middle of its first send."""

        def __init__(self, conn):
            self.conn = conn

        def send_message(self, msg, **kwargs):
            if not nested:
                nested.append(send_pending(db_engine, settings, now=T0))
            self.conn.send_message(msg, **kwargs)

        def quit(self):
            self.conn.quit()

    first = send_pending(
        db_engine, settings, now=T0, connect=lambda s: SlowFirstSender(smtp_connect(s))
    )
    assert (first.sent, nested[0].sent) == (1, 3)
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [f"p{n}@mvsd.example" for n in range(4)]


def test_refused_recipient_fails_deferred_one_waits_others_are_sent(db_engine, settings):
    replies = {
        "gone@mvsd.example": "550 5.1.1 mailbox unavailable",
        "busy@mvsd.example": "451 4.3.0 try again later",
    }
    with SmtpServer(free_port(), replies=replies) as smtp:
        settings = configure(settings, smtp.port)
        queue(db_engine, "k", ["gone@mvsd.example", "busy@mvsd.example", "ok@mvsd.example"])
        report = send_pending(db_engine, settings, now=T0)
        assert (report.sent, report.deferred, report.failed) == (1, 1, 1)
        gone, busy, ok = notifications(db_engine)
        assert gone.status == "failed" and gone.last_error.startswith("recipient refused: 550")
        assert gone.next_attempt_at is None
        assert (busy.status, busy.next_attempt_at) == ("queued", T0 + MINUTE)
        assert busy.last_error.startswith("recipient refused: 451")
        assert ok.status == "sent"

        smtp.handler.replies.pop("busy@mvsd.example")
        report = send_pending(db_engine, settings, now=T0 + MINUTE)
        assert (report.sent, report.deferred, report.failed) == (1, 0, 0)
        assert [r.rcpt_tos for r in smtp.received] == [["ok@mvsd.example"], ["busy@mvsd.example"]]
        assert notifications(db_engine)[0].status == "failed"  # a permanent refusal stays failed


def test_a_hang_up_mid_run_leaves_the_rest_due(engine, settings):
    replies = {"b@mvsd.example": "421 4.3.2 shutting down"}  # smtplib closes the connection
    with SmtpServer(free_port(), replies=replies) as smtp:
        settings = configure(settings, smtp.port)
        queue(engine, "k", ["a@mvsd.example", "b@mvsd.example", "c@mvsd.example"])
        report = send_pending(engine, settings, now=T0)
        assert (report.sent, report.deferred, report.failed) == (1, 1, 0)
        a, b, c = notifications(engine)
        assert a.status == "sent"
        assert (b.status, b.next_attempt_at) == ("queued", T0 + MINUTE)
        assert (c.status, c.attempts, c.last_error) == ("queued", 0, None)  # never tried
        assert send_pending(engine, settings, now=T0).sent == 1  # c, at once, on a new connection
        smtp.handler.replies.clear()
        assert send_pending(engine, settings, now=T0 + MINUTE).sent == 1  # b, when due
        assert [r.rcpt_tos[0][0] for r in smtp.received] == ["a", "c", "b"]


def test_refused_sender_is_a_setting_to_fix_not_a_failure(engine, settings, smtp):
    settings = configure(settings, smtp.port)
    smtp.handler.mail_reply = "553 5.7.1 sender address not owned by user"
    queue(engine, "k", ["a@mvsd.example"])
    report = send_pending(engine, settings, now=T0)
    assert (report.sent, report.deferred, report.failed) == (0, 1, 0)
    n = notifications(engine)[0]
    assert n.status == "queued" and n.last_error == (
        "sender refused: 553 5.7.1 sender address not owned by user — "
        "fix PULSE_MAIL_FROM or the SMTP login"
    )
    smtp.handler.mail_reply = None
    assert send_pending(engine, settings, now=T0 + MINUTE).sent == 1
    assert smtp.received[0].mail_from == "pulse@mvsd.example"


def test_grouped_email_carries_every_sparkline_inline(engine, settings, smtp):
    settings = configure(settings, smtp.port)
    group = [spike_summary(), spike_summary(label="Lunch", topic_id=4, series=[1, 1, 5, 9])]
    subject, text, html = render_alert_email(group, settings)
    with write_session(engine) as session:
        enqueue(session, "group:1", ["a@mvsd.example"], subject, text, html)
    assert send_pending(engine, settings, now=T0).sent == 1
    msg = smtp.received[0].message
    body = msg.get_body(("html",)).get_content()
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 2
    for image in images:
        assert f'src="cid:{image["Content-ID"].strip("<>")}"' in body
    assert images[0].get_content() != images[1].get_content()
    assert msg.get_body(("plain",)).get_content().count("Open in Pulse:") == 2


@pytest.mark.parametrize("smtputf8", [True, False])
def test_non_ascii_address_needs_smtputf8(engine, settings, smtputf8):
    with SmtpServer(free_port(), smtputf8=smtputf8) as smtp:
        settings = configure(settings, smtp.port)
        queue(engine, "k", ["josé@mvsd.example", "ok@mvsd.example"], subject="Año escolar")
        report = send_pending(engine, settings, now=T0)
        jose = notifications(engine)[0]
        if smtputf8:
            assert report.sent == 2 and jose.status == "sent"
            assert smtp.received[0].rcpt_tos == ["josé@mvsd.example"]
            assert smtp.received[0].message["Subject"] == "Año escolar"
        else:  # permanent for that one; the connection is still used for the next
            assert (report.sent, report.failed) == (1, 1)
            assert jose.status == "failed" and "cannot take this email" in jose.last_error
            assert [r.rcpt_tos for r in smtp.received] == [["ok@mvsd.example"]]


def test_a_message_that_cannot_be_built_fails_without_injection(engine, settings, smtp):
    settings = configure(settings, smtp.port)
    queue(engine, "bad", ["a@mvsd.example"], subject="Hi\r\nBcc: victim@evil.example")
    queue(engine, "good", ["a@mvsd.example"])
    report = send_pending(engine, settings, now=T0)
    assert (report.sent, report.failed) == (1, 1)
    bad = notifications(engine)[0]
    assert bad.status == "failed" and bad.last_error.startswith("cannot build the email")
    assert [r.rcpt_tos for r in smtp.received] == [["a@mvsd.example"]]


def test_login(engine, settings):
    with SmtpServer(free_port(), user=("pulse", "s3cret")) as smtp:
        settings = configure(
            settings, smtp.port, smtp_username="pulse", smtp_password=SecretStr("s3cret")
        )
        queue(engine, "k", ["a@mvsd.example"])
        assert send_pending(engine, settings, now=T0).sent == 1
        assert smtp.received[0].login == "pulse"


def test_refused_login_keeps_mail_queued_with_a_fix_it_error(engine, settings):
    with SmtpServer(free_port(), user=("pulse", "s3cret")) as smtp:
        wrong = configure(
            settings, smtp.port, smtp_username="pulse", smtp_password=SecretStr("wrong-pw")
        )
        queue(engine, "k", ["a@mvsd.example", "b@mvsd.example"])
        report = send_pending(engine, wrong, now=T0)
        assert (report.sent, report.deferred, report.failed) == (0, 2, 0)
        assert "SMTP login refused" in report.error and "535" in report.error
        assert "PULSE_SMTP_USERNAME / PULSE_SMTP_PASSWORD" in report.error
        for n in notifications(engine):
            assert (n.status, n.attempts, n.next_attempt_at) == ("queued", 1, T0 + MINUTE)
            assert n.last_error == report.error and "wrong-pw" not in n.last_error
        fixed = wrong.model_copy(update={"smtp_password": SecretStr("s3cret")})
        assert send_pending(engine, fixed, now=T0 + MINUTE).sent == 2
        assert [r.login for r in smtp.received] == ["pulse", "pulse"]


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    """A self-signed certificate the client trusts (through SSL_CERT_FILE)."""
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


@needs_openssl
def test_starttls_with_login(engine, settings, certificate):
    server = SmtpServer(
        free_port(), tls="starttls", user=("pulse", "s3cret"), certificate=certificate
    )
    with server as smtp:
        settings = configure(
            settings,
            smtp.port,
            smtp_security="starttls",
            smtp_username="pulse",
            smtp_password=SecretStr("s3cret"),
        )
        queue(engine, "k", ["a@mvsd.example"])
        assert send_pending(engine, settings, now=T0).sent == 1
        assert (smtp.received[0].tls, smtp.received[0].login) == (True, "pulse")


@needs_openssl
def test_tls_on_connect(engine, settings, certificate):
    with SmtpServer(free_port(), tls="ssl", certificate=certificate) as smtp:
        settings = configure(settings, smtp.port, smtp_security="ssl")
        queue(engine, "k", ["a@mvsd.example"])
        assert send_pending(engine, settings, now=T0).sent == 1
        assert smtp.received[0].tls


@needs_openssl
def test_untrusted_certificate_keeps_mail_queued(engine, settings, tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    certificate = make_certificate(tmp_path)
    with SmtpServer(free_port(), tls="starttls", certificate=certificate) as smtp:
        settings = configure(settings, smtp.port, smtp_security="starttls")
        queue(engine, "k", ["a@mvsd.example"])
        report = send_pending(engine, settings, now=T0)
        assert (report.sent, report.deferred) == (0, 1)
        assert "CERTIFICATE_VERIFY_FAILED" in report.error
        assert smtp.received == []


def test_starttls_missing_on_the_server_keeps_mail_queued(engine, settings, smtp):
    settings = configure(settings, smtp.port, smtp_security="starttls")
    queue(engine, "k", ["a@mvsd.example"])
    report = send_pending(engine, settings, now=T0)
    assert (report.sent, report.deferred) == (0, 1)
    assert report.error == (
        f"cannot connect to 127.0.0.1:{smtp.port} (starttls): SMTPNotSupportedError: STARTTLS "
        "extension not supported by server. — if this persists, fix PULSE_SMTP_HOST / "
        "PULSE_SMTP_PORT / PULSE_SMTP_SECURITY"
    )
    assert smtp.received == []


def test_a_server_that_never_answers_times_out(engine, settings):
    with socket.socket() as silent:  # accepts connections (backlog), never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        settings = configure(settings, silent.getsockname()[1])
        queue(engine, "k", ["a@mvsd.example"])
        report = send_pending(
            engine, settings, now=T0, connect=lambda s: smtp_connect(s, timeout=0.3)
        )
    assert report.deferred == 1 and "timed out" in report.error
    assert notifications(engine)[0].status == "queued"


def test_without_smtp_host_everything_stays_queued(engine, settings, caplog, monkeypatch):
    monkeypatch.setattr(mailer, "_unconfigured_logged", False)
    caplog.set_level(logging.WARNING, logger="alerts.mailer")
    queue(engine, "k", ["a@mvsd.example"])
    for minutes in range(3):
        report = send_pending(engine, settings, now=T0 + minutes * MINUTE)
        assert (report.sent, report.deferred, report.failed) == (0, 0, 0)
    n = notifications(engine)[0]
    assert (n.status, n.attempts, n.last_error) == ("queued", 0, None)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and re.search("PULSE_SMTP_HOST is not set", warnings[0])
