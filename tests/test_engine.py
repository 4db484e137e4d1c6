"""The alert engine: lifecycle, silences, calendar, grouping, routing, risk, exactly-once emails.

Time is injected (``now``): nothing sleeps. The district is four topics at a steady two
messages an hour for three weeks; a spike is one hour of 40 messages on one topic.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from click.testing import CliRunner
from conftest import free_port
from sqlalchemy import func, insert, select, update

from alerts.engine import (
    AlertError,
    PendingRule,
    RuleState,
    acknowledge,
    add_calendar_event,
    add_silence,
    evaluate_alerts,
    evaluate_risk,
    expire_silence,
    school_calendar,
    tick_for,
)
from alerts.mailer import send_pending
from app import cli
from core.db import create_db_engine, migrate, read_session, write_session
from core.models import (
    Alert,
    AuditLog,
    Embedding,
    Message,
    Notification,
    SourceState,
    Topic,
    TopicCount,
)
from core.worker import schedule_alert_jobs
from tests.smtp_server import SmtpServer

NOW = datetime(2026, 3, 3, 15, 5, tzinfo=UTC)  # a Tuesday, 10:05 in New York
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SPIKE_HOUR = datetime(2026, 3, 3, 14, tzinfo=UTC)  # the last complete hour at NOW
TOPICS = {
    1: ("Bus routes", "transportation", ["bus", "route", "late", "driver"]),
    2: ("Lunch menu", "food_service", ["lunch", "menu", "cafeteria"]),
    3: ("Report cards", "grades_report_cards", ["grades", "report", "card"]),
    4: ("Building repairs", "facilities", ["heat", "roof", "repair"]),
}
ROUTES = """
[[group]]
name = "communications"
recipients = ["comms@district.example"]
kinds = ["spike", "emerging"]

[[group]]
name = "transportation"
recipients = ["transport@district.example"]
topics = ["transportation"]

[[group]]
name = "safety"
recipients = ["safety@district.example"]
kinds = ["risk"]
authorised = true

[[group]]
name = "cabinet"
recipients = ["cabinet@district.example"]
kinds = ["risk"]
"""


@pytest.fixture
def settings(settings, tmp_path):
    """No routes or calendar file (unless a test writes one); alerts to one address."""
    return settings.model_copy(
        update={
            "alert_routes_file": tmp_path / "alerts.toml",
            "calendar_file": tmp_path / "calendar.toml",
            "alert_recipients": "comms@district.example",
            "public_url": "https://pulse.district.example",
        }
    )


@pytest.fixture
def engine(settings):
    """A migrated SQLite engine with the four topics and three weeks of steady counts."""
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    district(engine)
    yield engine
    engine.dispose()


def district(engine) -> None:
    start = SPIKE_HOUR - 21 * 24 * HOUR
    with write_session(engine) as session:
        for topic_id, (label, seed, words) in TOPICS.items():
            session.add(
                Topic(
                    id=topic_id,
                    label=label,
                    seed=seed,
                    words=[[w, 1.0] for w in words],
                    first_seen=start,
                    last_seen=start,
                )
            )
        session.flush()
        rows = [
            {"topic_id": t, "bucket_start": start + h * HOUR, "source_kind": "sms", "n": 2}
            for t in TOPICS
            for h in range(21 * 24 + 1)
        ]
        session.execute(insert(TopicCount), rows)


def set_count(engine, topic_id: int, hour: datetime, n: int) -> None:
    with write_session(engine) as session:
        session.execute(
            update(TopicCount)
            .where(TopicCount.topic_id == topic_id, TopicCount.bucket_start == hour)
            .values(n=n)
        )


def add_messages(engine, bodies, at, topic_id=None, **fields) -> list[int]:
    with write_session(engine) as session:
        rows = [
            Message(
                source_kind="sms",
                source_name="text-line",
                external_id=hashlib.sha256(f"{body}{at}{i}{topic_id}".encode()).hexdigest()[:20],
                received_at=at + i * MINUTE,
                body=body,
                content_hash=hashlib.sha256(body.encode()).hexdigest(),
                topic_id=topic_id,
                **fields,
            )
            for i, body in enumerate(bodies)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def spike(engine, topic_id: int = 1) -> None:
    """40 messages in the last complete hour (usually 2), three of them stored."""
    set_count(engine, topic_id, SPIKE_HOUR, 40)
    bodies = [
        "Bus 17 never came this morning, call me at 555-201-3344",
        "The bus driver skipped our stop again",
        "Route 9 is an hour late, kids are waiting in the cold",
    ]
    add_messages(engine, bodies, SPIKE_HOUR + 5 * MINUTE, topic_id=topic_id)


def source(engine, name: str, down: bool = True) -> None:
    with write_session(engine) as session:
        state = session.get(SourceState, name) or SourceState(source_name=name, source_kind="email")
        state.last_attempt_at = NOW - MINUTE
        state.interval_seconds = 300
        state.consecutive_failures = 3 if down else 0
        state.last_success_at = None if down else NOW - MINUTE
        state.last_error = "connection refused" if down else None
        session.add(state)


def alerts(engine) -> list[Alert]:
    with read_session(engine) as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def notifications(engine) -> list[Notification]:
    with read_session(engine) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def only(items):
    assert len(items) == 1, items
    return items[0]


# The rule (shared with benchmarks/bench_alerts.py)


def test_the_rule_fires_after_the_pending_evaluations_or_at_once_and_resolves_after_quiet():
    rule = PendingRule(for_evaluations=2, resolve_after=2)
    state, event = rule.advance(RuleState(), True)
    assert (state, event) == (RuleState(streak=1), None)
    state, event = rule.advance(state, True)
    assert event is None and state.streak == 2
    state, event = rule.advance(state, True)
    assert event == "fire" and state.firing
    assert rule.advance(RuleState(streak=1), False) == (RuleState(), None)  # the streak breaks
    assert rule.advance(RuleState(), True, immediate=True)[1] == "fire"
    assert PendingRule(immediate=False).advance(RuleState(), True, immediate=True)[1] is None
    state, event = rule.advance(RuleState(firing=True), False)
    assert event is None and state == RuleState(firing=True, absent=1)
    assert rule.advance(RuleState(firing=True, absent=1), True)[0].absent == 0
    assert rule.advance(state, False) == (RuleState(), "resolve")


def test_a_spike_counts_one_evaluation_per_hour_of_data_other_kinds_every_evaluation():
    assert tick_for("spike", NOW) == SPIKE_HOUR + HOUR
    assert tick_for("spike", NOW + 50 * MINUTE) == SPIKE_HOUR + HOUR
    assert tick_for("emerging", NOW) == NOW


# Lifecycle


def test_a_new_topic_is_pending_first_then_fires(engine, settings):
    with write_session(engine) as session:
        session.add(Topic(id=5, label="Field trip forms", words=[["trip", 1.0]]))
        session.flush()
        rows = [
            {"topic_id": 5, "bucket_start": SPIKE_HOUR - h * HOUR, "source_kind": "sms", "n": 4}
            for h in range(3)
        ]
        session.execute(insert(TopicCount), rows)

    first = evaluate_alerts(engine, settings, NOW)
    pending = only(alerts(engine))
    assert (pending.fingerprint, pending.state, pending.observed) == (
        "emerging:topic:5",
        "pending",
        12,
    )
    assert first.pending == 1 and first.fired == [] and notifications(engine) == []
    again = evaluate_alerts(engine, settings, NOW)  # the same evaluation again: not counted
    assert again.fired == [] and only(alerts(engine)).state == "pending"

    second = evaluate_alerts(engine, settings, NOW + 5 * MINUTE)
    fired = only(alerts(engine))
    assert second.fired == [fired.id] and fired.state == "firing"
    assert fired.fired_at == NOW + 5 * MINUTE and fired.severity == "info"
    assert fired.details["label"] == "Field trip forms"
    mail = only(notifications(engine))
    assert mail.recipient == "comms@district.example" and mail.alert_id == fired.id
    assert mail.subject.startswith("[Pulse] New topic: Field trip forms: 12 messages in 24 h")


def test_a_strong_spike_fires_at_once_with_its_numbers_words_and_messages(engine, settings):
    spike(engine)
    result = evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    assert result.fired == [alert.id] and result.emails == 1
    assert (alert.fingerprint, alert.state, alert.severity) == (
        "spike:topic:1",
        "firing",
        "warning",
    )
    assert alert.observed == 40 and alert.expected == pytest.approx(2, abs=0.5)
    assert alert.p_value < 1e-10
    assert alert.details["window_hours"] == 1 and alert.details["top_words"][:2] == ["bus", "route"]
    assert len(alert.message_ids) == 3 and "expected_events" not in alert.details
    mail = only(notifications(engine))
    assert mail.subject == "[Pulse] Spike: Bus routes: 40 messages in 1 h (usually 2)"
    assert "Bus 17 never came" in mail.body_text and "[phone]" in mail.body_text
    assert "555-201-3344" not in mail.body_text + mail.body_html
    assert "https://pulse.district.example/topics/1?" in mail.body_text


def test_running_the_same_evaluation_again_queues_nothing_new(engine, settings):
    spike(engine)
    source(engine, "imap")
    add_messages(engine, ["I want to kill myself tonight"], NOW - 10 * MINUTE,
                 risk_level="urgent", risk_categories=["self_harm"])  # fmt: skip
    first = evaluate_alerts(engine, settings, NOW)
    assert len(first.fired) == 3 and first.emails == 1
    queued = [n.id for n in notifications(engine)]
    second = evaluate_alerts(engine, settings, NOW)
    assert second.fired == [] and second.emails == 0 and second.repeated == []
    assert evaluate_risk(engine, settings, NOW).emails == 0
    assert [n.id for n in notifications(engine)] == queued
    assert [a.state for a in alerts(engine)] == ["firing"] * 3


def test_a_firing_alert_is_emailed_again_after_the_repeat_interval_not_before(engine, settings):
    source(engine, "imap")
    evaluate_alerts(engine, settings, NOW)
    assert len(notifications(engine)) == 1
    assert evaluate_alerts(engine, settings, NOW + 5 * HOUR + 59 * MINUTE).repeated == []
    assert len(notifications(engine)) == 1
    result = evaluate_alerts(engine, settings, NOW + 6 * HOUR)
    assert result.repeated == [only(alerts(engine)).id] and result.emails == 1
    repeat = notifications(engine)[-1]
    assert repeat.subject == "[Pulse] Source down: imap (still active)"
    assert evaluate_alerts(engine, settings, NOW + 6 * HOUR + 5 * MINUTE).emails == 0


def test_a_source_down_fires_at_once_and_resolves_when_it_recovers(engine, settings):
    settings = settings.model_copy(update={"alert_resolved_email": True})
    source(engine, "imap")
    source(engine, "twilio", down=False)
    evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    assert (alert.fingerprint, alert.state) == ("source_down:imap", "firing")
    assert alert.details["last_error"] == "connection refused"
    assert "/sources" in only(notifications(engine)).body_text

    source(engine, "imap", down=False)
    result = evaluate_alerts(engine, settings, NOW + 5 * MINUTE)
    alert = only(alerts(engine))
    assert result.resolved == [alert.id] and alert.state == "resolved"
    assert alert.resolved_at == NOW + 5 * MINUTE
    assert notifications(engine)[-1].subject == "[Pulse] Source down: imap has subsided"

    source(engine, "imap")  # down again: a new episode, a new row
    evaluate_alerts(engine, settings, NOW + 10 * MINUTE)
    assert [a.state for a in alerts(engine)] == ["resolved", "firing"]


def test_no_subsided_email_unless_asked(engine, settings):
    source(engine, "imap")
    evaluate_alerts(engine, settings, NOW)
    source(engine, "imap", down=False)
    assert evaluate_alerts(engine, settings, NOW + 5 * MINUTE).resolved
    assert len(notifications(engine)) == 1


def test_acknowledging_stops_repeats_and_is_audited(engine, settings):
    source(engine, "imap")
    evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    acknowledge(engine, alert.id, "alice", NOW + HOUR)
    alert = only(alerts(engine))
    assert (alert.state, alert.acknowledged_by, alert.acknowledged_at) == (
        "acknowledged",
        "alice",
        NOW + HOUR,
    )
    with read_session(engine) as session:
        audit = only(session.scalars(select(AuditLog)).all())
    assert (audit.username, audit.action, audit.target_id) == (
        "alice",
        "alert_acknowledge",
        str(alert.id),
    )
    assert evaluate_alerts(engine, settings, NOW + 7 * HOUR).emails == 0
    assert len(notifications(engine)) == 1
    with pytest.raises(AlertError, match="is acknowledged: only firing or silenced"):
        acknowledge(engine, alert.id, "bob", NOW + 8 * HOUR)
    with pytest.raises(AlertError, match="no alert 999"):
        acknowledge(engine, 999, "bob", NOW)
    with pytest.raises(AlertError, match="name of the person"):
        acknowledge(engine, alert.id, " ", NOW)
    source(engine, "imap", down=False)  # an acknowledged alert still resolves
    assert evaluate_alerts(engine, settings, NOW + 8 * HOUR).resolved == [alert.id]


def test_a_silence_mutes_the_alert_and_it_fires_when_the_silence_ends(engine, settings):
    spike(engine)
    silence = add_silence(engine, None, 1, NOW - HOUR, NOW + 2 * HOUR, "bob", "known bus issue")
    result = evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    assert result.fired == result.silenced == [alert.id]
    assert (
        alert.state == "silenced"
        and alert.details["silenced_by"] == f"silence {silence}: known bus issue"
    )
    assert notifications(engine) == []

    expire_silence(engine, silence, NOW + 10 * MINUTE, "bob")
    evaluate_alerts(engine, settings, NOW + 15 * MINUTE)
    alert = only(alerts(engine))
    assert alert.state == "firing" and "silenced_by" not in alert.details
    assert "Spike: Bus routes" in only(notifications(engine)).subject


def test_a_silence_by_kind_mutes_only_that_kind(engine, settings):
    spike(engine)
    source(engine, "imap")
    add_silence(engine, "source_down", None, NOW - HOUR, NOW + HOUR, "it-team")
    evaluate_alerts(engine, settings, NOW)
    states = {a.kind: a.state for a in alerts(engine)}
    assert states == {"spike": "firing", "source_down": "silenced"}
    assert "Source down" not in only(notifications(engine)).subject
    with read_session(engine) as session:
        assert session.scalar(select(AuditLog.action)) == "silence_add"


@pytest.mark.parametrize(
    ("kind", "topic", "hours", "by", "message"),
    [
        (None, None, 1, "bob", "needs a kind or a topic"),
        ("spikes", None, 1, "bob", "unknown alert kind 'spikes'"),
        ("spike", None, 0, "bob", "must end after it starts"),
        (None, 99, 1, "bob", "no topic 99"),
        ("spike", None, 1, "", "name of the person"),
    ],
)
def test_a_bad_silence_is_refused_with_the_reason(engine, kind, topic, hours, by, message):
    with pytest.raises(AlertError, match=message):
        add_silence(engine, kind, topic, NOW, NOW + hours * HOUR, by)


def test_a_spike_on_a_known_event_day_is_expected_and_muted_when_the_event_says(engine, settings):
    spike(engine)
    add_calendar_event(engine, "Bond vote", "vote", NOW.date())
    evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    assert alert.state == "firing" and alert.details["expected_events"] == ["Bond vote"]
    assert len(notifications(engine)) == 1


def test_a_muting_calendar_event_records_the_spike_but_sends_nothing(engine, settings):
    spike(engine)
    add_calendar_event(engine, "Snow day", "snow_day", NOW.date(), mute_alerts=True)
    evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    assert alert.state == "silenced" and alert.details["expected_events"] == ["Snow day"]
    assert alert.details["silenced_by"] == "calendar event 'Snow day'"
    assert notifications(engine) == []


def test_the_calendar_is_the_file_and_the_table(engine, settings):
    settings.calendar_file.write_text(
        '[[events]]\nname = "First day of school"\nkind = "first_day"\nstart = 2026-08-26\n'
    )
    add_calendar_event(engine, "Bond vote", "vote", NOW.date(), NOW.date() + timedelta(days=1))
    calendar = school_calendar(engine, settings)
    assert [e.name for e in calendar.events] == ["First day of school", "Bond vote"]
    assert [e.name for e in calendar.events_on(NOW.date() + timedelta(days=1))] == ["Bond vote"]
    with pytest.raises(AlertError, match="before it starts"):
        add_calendar_event(engine, "Oops", "vote", NOW.date(), NOW.date() - timedelta(days=1))


def test_the_lifecycle_on_each_database(db_engine, settings):
    district(db_engine)
    spike(db_engine)
    source(db_engine, "imap")
    add_messages(db_engine, ["he has a gun in his backpack"], NOW - MINUTE,
                 risk_level="urgent", risk_categories=["violence_threat"])  # fmt: skip
    first = evaluate_alerts(db_engine, settings, NOW)
    assert len(first.fired) == 3 and first.emails == 1
    assert evaluate_alerts(db_engine, settings, NOW).emails == 0
    source(db_engine, "imap", down=False)
    later = evaluate_alerts(db_engine, settings, NOW + 5 * MINUTE)
    assert len(later.resolved) == 1 and later.emails == 0
    states = {a.kind: a.state for a in alerts(db_engine)}
    assert states == {"spike": "firing", "source_down": "resolved", "risk": "firing"}


def test_two_workers_evaluating_at_once_fire_one_alert_and_one_email(db_engine, settings):
    district(db_engine)
    spike(db_engine)
    source(db_engine, "imap")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: evaluate_alerts(db_engine, settings, NOW), range(2)))
    assert sorted(len(r.fired) for r in results) == [0, 2]
    assert sorted(r.emails for r in results) == [0, 1]
    assert len(alerts(db_engine)) == 2 and len(notifications(db_engine)) == 1


# Grouping and routing


def test_alerts_of_one_evaluation_go_out_as_one_email_per_recipient(engine, settings):
    settings = settings.model_copy(
        update={"alert_recipients": "comms@district.example, ops@district.example"}
    )
    spike(engine)
    source(engine, "imap")
    source(engine, "twilio")
    result = evaluate_alerts(engine, settings, NOW)
    assert len(result.fired) == 3 and result.emails == 2
    mails = notifications(engine)
    assert sorted(m.recipient for m in mails) == ["comms@district.example", "ops@district.example"]
    for mail in mails:
        assert mail.subject.startswith("[Pulse] 3 alerts: ")
        for part in ("Spike: Bus routes", "Source down: imap", "Source down: twilio"):
            assert part in mail.body_text


def test_alerts_are_routed_by_kind_and_topic(engine, settings):
    settings.alert_routes_file.write_text(ROUTES)
    spike(engine, 1)  # transportation
    spike(engine, 2)  # food service
    source(engine, "imap")  # no group takes it: PULSE_ALERT_RECIPIENTS
    evaluate_alerts(engine, settings, NOW)
    mails = {m.recipient: m for m in notifications(engine)}
    assert len(mails) == len(notifications(engine)) == 2  # one email per person
    assert set(mails) == {"comms@district.example", "transport@district.example"}
    transport = mails["transport@district.example"]
    assert "Bus routes" in transport.subject and "Lunch menu" not in transport.body_text
    comms = mails["comms@district.example"]
    assert comms.subject.startswith("[Pulse] 3 alerts")  # its two spikes + the default group's
    assert "Source down: imap" in comms.body_text


# Risk


def test_an_urgent_message_alerts_at_once_with_its_text_only_to_authorised_recipients(
    engine, settings
):
    settings.alert_routes_file.write_text(ROUTES)
    [message_id] = add_messages(
        engine,
        ["I took all of my mom's pills, text me at 555-777-1234"],
        NOW - 2 * MINUTE,
        risk_level="urgent",
        risk_categories=["self_harm"],
    )
    add_messages(engine, ["we are going to die of boredom"], NOW - MINUTE, risk_level="review")
    add_messages(engine, ["old flag"], NOW - 3 * 24 * HOUR, risk_level="urgent")
    result = evaluate_risk(engine, settings, NOW)
    alert = only(alerts(engine))
    assert result.fired == [alert.id] and alert.fired_at == NOW
    assert (alert.kind, alert.fingerprint, alert.severity) == (
        "risk",
        f"risk:message:{message_id}",
        "critical",
    )
    assert alert.message_ids == [message_id] and alert.details["categories"] == ["self_harm"]
    mails = {m.recipient: m for m in notifications(engine)}
    assert set(mails) == {"safety@district.example", "cabinet@district.example"}
    safety, cabinet = mails["safety@district.example"], mails["cabinet@district.example"]
    assert safety.subject == cabinet.subject == "[Pulse] Risk: self harm: 1 message to review"
    assert "took all of my mom's pills" in safety.body_text and "[phone]" in safety.body_text
    assert "pills" not in cabinet.body_text + cabinet.body_html
    link = f"https://pulse.district.example/risk?message={message_id}"
    assert link in safety.body_text and link in cabinet.body_text

    assert evaluate_risk(engine, settings, NOW + MINUTE).emails == 0  # alerted once
    with write_session(engine) as session:
        session.get(Message, message_id).risk_review = "dismissed"
    resolved = evaluate_risk(engine, settings, NOW + 2 * MINUTE)
    assert resolved.resolved == [alert.id] and only(alerts(engine)).state == "resolved"
    assert evaluate_risk(engine, settings, NOW + 3 * MINUTE).fired == []  # never again


def test_risk_evaluation_leaves_other_alerts_alone(engine, settings):
    source(engine, "imap")
    evaluate_alerts(engine, settings, NOW)
    source(engine, "imap", down=False)
    assert evaluate_risk(engine, settings, NOW + HOUR).resolved == []
    assert only(alerts(engine)).state == "firing"


# Emerging groups of unassigned messages


def test_a_dense_group_of_unassigned_messages_fires_an_emerging_alert(engine, settings):
    rng = np.random.default_rng(3)
    dim = 32
    theme = rng.normal(size=dim)
    vectors = [theme + 0.2 * rng.normal(size=dim) for _ in range(12)]
    vectors += [rng.normal(size=dim) for _ in range(20)]
    bodies = [f"The new dismissal gate is locked again ({i})" for i in range(12)]
    bodies += [f"unrelated message number {i}" for i in range(20)]
    ids = add_messages(engine, bodies, NOW - 3 * HOUR, topic_score=0.1)
    with write_session(engine) as session:
        session.add_all(
            Embedding(message_id=i, model_key="test", vector=np.float32(v).tobytes())
            for i, v in zip(ids, vectors, strict=True)
        )
    evaluate_alerts(engine, settings, NOW)
    evaluate_alerts(engine, settings, NOW + 5 * MINUTE)
    alert = only(alerts(engine))
    assert alert.kind == "emerging" and alert.state == "firing"
    assert alert.fingerprint == f"emerging:cluster:{ids[0]}"
    assert sorted(alert.message_ids) == ids[:12] and alert.observed == 12
    assert alert.details["label"].startswith("“The new dismissal gate is locked again")
    assert "New topic: “The new dismissal gate" in only(notifications(engine)).subject


# End to end: a real SMTP server


def test_a_fired_alert_arrives_once_by_smtp_with_its_content(engine, settings):
    spike(engine)
    with SmtpServer(free_port()) as server:
        settings = settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": server.port,
                "smtp_security": "none",
                "mail_from": "Pulse <pulse@district.example>",
            }
        )
        evaluate_alerts(engine, settings, NOW)
        assert send_pending(engine, settings, NOW).sent == 1
        evaluate_alerts(engine, settings, NOW + 5 * MINUTE)  # same signal, same hour
        assert send_pending(engine, settings, NOW + 5 * MINUTE).sent == 0
        received = only(server.received)
    assert received.rcpt_tos == ["comms@district.example"]
    message = received.message
    assert message["Subject"] == "[Pulse] Spike: Bus routes: 40 messages in 1 h (usually 2)"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "The bus driver skipped our stop again" in text and "bus, route, late" in text
    assert "555-201-3344" not in text + html and "cid:" in html
    assert only(notifications(engine)).status == "sent"


# The worker and the command line


def test_the_worker_schedules_the_three_alert_jobs(engine, settings):
    scheduler = BackgroundScheduler()
    schedule_alert_jobs(scheduler, engine, settings)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert {name: job.trigger.interval.total_seconds() for name, job in jobs.items()} == {
        "alerts:evaluate": 300,
        "alerts:risk": 30,
        "alerts:mail": 30,
    }
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())


def test_the_worker_refuses_a_bad_routes_file_at_start(engine, settings):
    settings.alert_routes_file.write_text('[[group]]\nname = "x"\nrecipients = ["nobody"]\n')
    with pytest.raises(ValueError, match=r"alerts.toml: \[\[group\]\] 'x': not email addresses"):
        schedule_alert_jobs(BackgroundScheduler(), engine, settings)


def test_the_alerts_commands_list_acknowledge_and_silence(engine, settings, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "k")
    source(engine, "imap")
    evaluate_alerts(engine, settings, NOW)
    alert = only(alerts(engine))
    runner = CliRunner()
    listed = runner.invoke(cli, ["alerts", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith(
        f"{alert.id}\tfiring\tsource_down\twarning\tfired 2026-03-03 10:05\timap"
    )
    acked = runner.invoke(cli, ["alerts", "ack", str(alert.id), "--user", "alice"])
    assert acked.exit_code == 0 and "acknowledged by alice" in acked.output
    again = runner.invoke(cli, ["alerts", "ack", str(alert.id), "--user", "alice"])
    assert again.exit_code == 1 and "is acknowledged" in again.output
    silenced = runner.invoke(
        cli, ["alerts", "silence", "--topic", "1", "--hours", "2", "--user", "bob"]
    )
    assert silenced.exit_code == 0 and silenced.output.startswith("silence 1 until ")
    refused = runner.invoke(cli, ["alerts", "silence", "--hours", "2", "--user", "bob"])
    assert refused.exit_code == 1 and "needs a kind or a topic" in refused.output
    with read_session(engine) as session:
        assert session.scalar(select(func.count(AuditLog.id))) == 2
