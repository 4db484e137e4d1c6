"""The daily digest: its numbers on a seeded database, the email, the CLI and the schedule.

The seeded district (America/New_York) has history from Sunday 1 March 2026; the digest is for
Tuesday 10 March, two days after the switch to summer time. Its comparable days are the school
days 2-9 March except Wednesday 4 March, a known event with a flood of messages: 5 days of
10 messages each (6 texts about buses, 4 emails about lunch).
"""

from __future__ import annotations

import base64
import io
import itertools
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from click.testing import CliRunner
from conftest import free_port
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import insert, select

from alerts.calendar import KnownEvent, SchoolCalendar
from alerts.digest import (
    DigestData,
    digest_data,
    queue_digest,
    queue_yesterdays_digest,
    render_digest,
    word_cloud_png,
    yesterday,
)
from app import cli
from core.db import create_db_engine, migrate, read_session, write_connection, write_session
from core.models import Alert, Message, Notification, Topic
from core.settings import Settings
from core.worker import schedule_digest_job
from ingestion.normalize import content_hash, near_hash
from tests.smtp_server import SmtpServer

TZ = ZoneInfo("America/New_York")
DAY = date(2026, 3, 10)
CALENDAR = SchoolCalendar(
    events=(KnownEvent("Bond vote", "vote", date(2026, 3, 4), date(2026, 3, 4)),)
)
CAMPAIGN = "Please add a second bus to route 12, the children are packed three to a seat."
PII = "Bus 12 driver was rude to my son, call me at (555) 123-4567 or jane.doe@example.com"
SCRIPT = "<script>alert('x')</script> the bus tracking app shows nothing at all"
OTHER_BUS = [
    "Terrible: the bus left my kid behind in the cold this morning",
    "What time does the afternoon bus reach Oak Street now?",
    "Thanks to our driver for waiting during the storm",
    "Is there a new stop near the library this semester?",
]
WATER = [
    "Is it true a water main broke at Lincoln Elementary?",
    "The Lincoln gym is flooded, are classes cancelled tomorrow?",
    "Water everywhere in the Lincoln hallway, what happened?",
    "Should Lincoln students bring bottled water this week?",
    "Pipe burst at Lincoln school, is the building safe for kids?",
]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ) + timedelta(minutes=minute)


class Seeder:
    """Writes messages, topics and alerts as the pipeline would have stored them."""

    def __init__(self, engine):
        self.engine = engine
        self.ids = itertools.count(1)

    def messages(self, rows: list[dict]) -> None:
        values = []
        for row in rows:
            body = row["body"]
            values.append(
                {
                    "source_kind": row.get("kind", "sms"),
                    "source_name": row.get("kind", "sms"),
                    "external_id": str(next(self.ids)),
                    "received_at": row["at"],
                    "body": body,
                    "content_hash": content_hash(body),
                    "near_hash": near_hash(body),
                    "topic_id": row.get("topic"),
                    "sentiment": row.get("sentiment", 0.1),
                    "risk_level": row.get("risk", "none"),
                }
            )
        with write_connection(self.engine) as conn:
            conn.execute(insert(Message), values)

    def add(self, objects: list) -> None:
        with write_session(self.engine) as session:
            session.add_all(objects)


def seed(engine) -> None:
    """The district described in the module docstring."""
    s = Seeder(engine)
    old = datetime(2026, 2, 1, tzinfo=UTC)
    s.add(
        [
            Topic(id=1, label="bus · route", custom_label="Bus routes", first_seen=old),
            Topic(id=2, label="Lunch menu", first_seen=old),
            Topic(id=3, label="water · main", custom_label="Water main break",
                  words=[["water", 1.0], ["lincoln", 0.8], ["flood", 0.5]],
                  first_seen=local(DAY, 9)),  # the new topic, born on the digest's day
            Topic(id=4, label="Field trips", first_seen=local(date(2026, 3, 9), 9)),
        ]
    )  # fmt: skip
    rows = [{"at": local(date(2026, 3, 1), 12), "body": "first message ever", "topic": 2}]
    for offset in range(1, 9):  # 2-9 March
        day = date(2026, 3, 1) + timedelta(days=offset)
        if day.weekday() >= 5:
            rows += [{"at": local(day, 10 + k), "body": f"weekend {day} {k}"} for k in range(3)]
            continue
        rows += [{"at": local(day, 8 + k), "body": f"bus {day} {k}", "topic": 1} for k in range(5)]
        rows.append({"at": local(day, 23, 30), "body": f"late bus {day}", "topic": 1})
        rows += [
            {"at": local(day, 12, k), "body": f"lunch {day} {k}", "kind": "email", "topic": 2}
            for k in range(4)
        ]
        if day == date(2026, 3, 4):  # the bond vote: a flood the usual must not learn from
            rows += [{"at": local(day, 14), "body": f"vote {k}", "topic": 1} for k in range(90)]
    bus = [CAMPAIGN] * 12 + [PII, SCRIPT] + OTHER_BUS
    sentiments = [0.1] * 12 + [-0.9, -0.8, -0.5, 0.2, 0.4, 0.2]
    rows += [
        {"at": local(DAY, 7, 5 * k), "body": body, "topic": 1, "sentiment": sentiment}
        for k, (body, sentiment) in enumerate(zip(bus, sentiments, strict=True))
    ]
    rows += [
        {"at": local(DAY, 11), "body": "SECRETRISK I want to end it all", "kind": "email",
         "topic": 2, "sentiment": -0.95, "risk": "urgent"},
        {"at": local(DAY, 11, 30), "body": "SECRETREVIEW my son heard a scary rumour",
         "kind": "email", "topic": 2, "sentiment": -0.7, "risk": "review"},
        {"at": local(DAY, 13), "body": "When is the next board meeting?", "kind": "email"},
        {"at": local(DAY + timedelta(days=1), 0, 10), "body": "next day already", "topic": 1},
    ]  # fmt: skip
    rows += [
        {"at": local(DAY, 9, 10 * k), "body": body, "kind": "webform", "topic": 3}
        for k, body in enumerate(WATER)
    ]
    s.messages(rows)
    s.add(
        [
            Alert(kind="spike", fingerprint="spike:topic:1", state="firing", topic_id=1,
                  observed=9.0, expected=2.5, fired_at=local(DAY, 10, 15)),
            Alert(kind="risk", fingerprint="risk:message:999", state="firing",
                  severity="critical", details={"categories": ["self_harm"]},
                  fired_at=local(DAY, 11, 1)),
            Alert(kind="spike", fingerprint="spike:topic:2", state="resolved", topic_id=2,
                  observed=30.0, expected=4.0, fired_at=local(DAY - timedelta(days=1), 12)),
            Alert(kind="spike", fingerprint="spike:topic:4", state="pending", topic_id=4),
        ]
    )  # fmt: skip


@pytest.fixture
def engine(settings):
    """A migrated SQLite engine on the settings' database, seeded."""
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    seed(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[DigestData, object]:
    """The seeded digest and its email, made once for the rendering tests."""
    folder = tmp_path_factory.mktemp("rendered")
    settings = Settings(_env_file=None, database_url=f"sqlite:///{folder / 'pulse.db'}",
                        author_hash_key="k", public_url="https://pulse.mvsd.example/")  # fmt: skip
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    seed(engine)
    data = digest_data(engine, settings, DAY, CALENDAR)
    engine.dispose()
    return data, render_digest(data, settings)


def test_the_numbers_of_the_day_against_usual(db_engine, settings):
    seed(db_engine)
    data = digest_data(db_engine, settings, DAY, CALENDAR)
    assert (data.day_type, data.comparison_days) == ("school_day", 5)
    # 26 on the day: the 23:30 message of 9 March (03:30 UTC on the 10th) and the one just
    # after midnight on the 11th belong to their own local days
    assert (data.volume.n, data.volume.usual) == (26, 10.0)
    assert data.volume.change == pytest.approx(1.6)
    channels = [(c.name, c.n, c.usual) for c in data.channels]
    assert channels == [("sms", 18, 6.0), ("webform", 5, 0.0), ("email", 3, 4.0)]
    topics = [(c.name, c.n, c.usual, c.topic_id) for c in data.top_topics]
    assert topics == [
        ("Bus routes", 18, 6.0, 1),
        ("Water main break", 5, 0.0, 3),
        ("Lunch menu", 2, 4.0, 2),
    ]
    assert data.top_topics[0].change == pytest.approx(2.0)
    assert data.top_topics[1].change is None  # nothing usual to compare with: new
    [new] = data.new_topics
    assert (new.topic_id, new.label, new.n, new.words) == (
        3, "Water main break", 5, ["water", "lincoln", "flood"]
    )  # fmt: skip
    assert [(a.kind, a.label, a.observed, a.expected) for a in data.alerts] == [
        ("spike", "Bus routes", 9.0, 2.5),
        ("risk", "self_harm", None, None),
    ]
    assert data.risk_flags == {"review": 1, "urgent": 1}
    assert [m.sentiment for m in data.negative] == [-0.9, -0.8, -0.5]  # risk-flagged left out
    assert "[phone]" in data.negative[0].text and "[email]" in data.negative[0].text
    assert "555" not in data.negative[0].text and "jane.doe" not in data.negative[0].text
    with read_session(db_engine) as session:  # each notable message names its row
        ids = [m.message_id for m in data.negative]
        rows = session.execute(select(Message.id, Message.body).where(Message.id.in_(ids)))
        bodies = {message_id: body for message_id, body in rows}
    assert [bodies[m.message_id] for m in data.negative] == [PII, SCRIPT, OTHER_BUS[0]]
    assert (data.campaign.size, data.campaign.identical) == (12, 12)
    assert data.campaign.sample == CAMPAIGN and data.campaign.topic == "Bus routes"
    words = {word for word, _ in data.words}
    assert {"bus", "lincoln"} <= words and not words & {"jane", "doe", "example", "555"}


def test_without_the_calendar_event_the_flood_day_counts_as_usual(engine, settings):
    data = digest_data(engine, settings, DAY, SchoolCalendar())
    assert data.comparison_days == 6
    assert data.volume.usual == pytest.approx((5 * 10 + 100) / 6)


def test_the_email_says_it_plainly_and_masks_personal_data(rendered):
    _, email = rendered
    assert email.subject == "[Pulse] Daily digest, Tue 10 Mar 2026: 26 messages (usually 10)"
    text = email.text
    for expected in (
        "26 messages, usually about 10 (+160%).",
        "  - sms: 18 / 6 / +200%",
        "  - webform: 5 / 0 / new",
        "  - Bus routes: 18 / 6 / +200%",
        "  - Lunch menu: 2 / 4 / -50%",
        "  - Water main break: 5 messages (water, lincoln, flood)",
        "Spike: Bus routes: fired 10:15, warning, 9 messages (usually 2.5)",
        "Risk: self_harm: fired 11:01, critical",
        "2 messages flagged for risk (1 urgent, 1 to review)",
        "Largest campaign: 12 near-identical messages (12 word for word), topic Bus routes",
        "average of 5 such days in the 4 weeks before",
        "https://pulse.mvsd.example/review?date=2026-03-10",
    ):
        assert expected in text, expected
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", email.html)  # random letters
    for body in (text, html):
        assert "[phone]" in body and "[email]" in body
        for secret in ("555", "123-4567", "jane.doe", "SECRETRISK", "SECRETREVIEW"):
            assert secret not in body, secret


def test_the_html_escapes_message_text(rendered):
    _, email = rendered
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in email.html
    assert "<script" not in email.html.lower()
    assert "<script>alert('x')</script>" in email.text  # plain text stays as written


def test_the_word_cloud_is_a_real_png_inline(rendered):
    data, email = rendered
    [encoded] = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', email.html)
    png = base64.b64decode(encoded)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert (image.format, image.size) == ("PNG", (640, 320))
    assert word_cloud_png(data.words) == png  # the same words give the same image
    with pytest.raises(ValueError, match="at least one word"):
        word_cloud_png([])


def test_an_empty_database_gives_a_digest_that_says_so(db_engine, settings):
    data = digest_data(db_engine, settings, DAY)
    assert data.empty and data.volume.usual is None and data.comparison_days == 0
    assert (data.channels, data.top_topics, data.words, data.campaign) == ([], [], [], None)
    email = render_digest(data, settings)
    assert email.subject == "[Pulse] Daily digest, Tue 10 Mar 2026: 0 messages"
    assert "No messages arrived on this day." in email.text
    assert "no comparable earlier day yet" in email.text
    assert "No messages arrived on this day." in email.html and "<img" not in email.html


def test_a_quiet_day_after_busy_ones_names_the_usual(engine, settings):
    data = digest_data(engine, settings, date(2026, 3, 12), CALENDAR)
    email = render_digest(data, settings)
    assert data.empty and data.volume.usual == pytest.approx((5 * 10 + 26 + 1) / 7)
    assert "No messages arrived on this day. Usually about 11." in email.text


def test_queue_digest_queues_each_recipient_once(engine, settings):
    assert queue_digest(engine, settings, DAY, CALENDAR) == 0  # no recipients configured
    two = settings.model_copy(update={"digest_recipients": "comms@mvsd.example, Cab@mvsd.example"})
    assert queue_digest(engine, two, DAY, CALENDAR) == 2
    assert queue_digest(engine, two, DAY, CALENDAR) == 0
    three = two.model_copy(update={"digest_recipients": "cab@mvsd.example,new@mvsd.example,"})
    assert queue_digest(engine, three, DAY, CALENDAR) == 1  # only the one who had none
    with read_session(engine) as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
    assert [(n.recipient, n.digest_date, n.status) for n in rows] == [
        ("comms@mvsd.example", DAY, "queued"),
        ("Cab@mvsd.example", DAY, "queued"),
        ("new@mvsd.example", DAY, "queued"),
    ]
    assert rows[0].subject.startswith("[Pulse] Daily digest, Tue 10 Mar 2026")
    assert "data:image/png;base64," in rows[0].body_html


@pytest.fixture
def cli_env(settings, engine, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "k")
    monkeypatch.setenv("PULSE_SOURCES_FILE", str(settings.sources_file))
    monkeypatch.setenv("PULSE_CALENDAR_FILE", str(settings.sources_file.parent / "none.toml"))
    return engine


def test_cli_prints_the_text_and_writes_the_html(cli_env, tmp_path):
    runner = CliRunner()
    printed = runner.invoke(cli, ["digest", "--date", "2026-03-10"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("Daily digest, Tue 10 Mar 2026\n")
    assert "  - Bus routes: 18 /" in printed.output
    out = tmp_path / "digest.html"
    written = runner.invoke(cli, ["digest", "--date", "2026-03-10", "--html", str(out)])
    assert written.exit_code == 0, written.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64,iVBORw0KGgo" in html


def test_cli_rejects_bad_input(cli_env, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["digest", "--date", "10/03/2026"])
    assert bad.exit_code == 2 and "'10/03/2026' does not match the format '%Y-%m-%d'" in bad.output
    both = runner.invoke(cli, ["digest", "--send", "--html", str(tmp_path / "x.html")])
    assert both.exit_code == 2 and "use --send or --html, not both" in both.output
    nobody = runner.invoke(cli, ["digest", "--send"])
    assert nobody.exit_code == 1 and "PULSE_DIGEST_RECIPIENTS is empty" in nobody.output


def test_cli_send_delivers_once_over_smtp(cli_env, monkeypatch):
    port = free_port()
    monkeypatch.setenv("PULSE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PULSE_SMTP_PORT", str(port))
    monkeypatch.setenv("PULSE_SMTP_SECURITY", "none")
    monkeypatch.setenv("PULSE_MAIL_FROM", "Pulse <pulse@mvsd.example>")
    monkeypatch.setenv("PULSE_DIGEST_RECIPIENTS", "comms@mvsd.example")
    runner = CliRunner()
    with SmtpServer(port) as server:
        first = runner.invoke(cli, ["digest", "--date", "2026-03-10", "--send"])
        assert first.exit_code == 0, first.output
        assert "digest 2026-03-10: 1 queued; outbox: 1 sent" in first.output
        second = runner.invoke(cli, ["digest", "--date", "2026-03-10", "--send"])
        assert second.exit_code == 0, second.output
        assert "digest 2026-03-10: 0 queued; outbox: 0 sent" in second.output
    [mail] = server.received
    assert mail.rcpt_tos == ["comms@mvsd.example"]
    message = mail.message
    assert message["Subject"].startswith("[Pulse] Daily digest, Tue 10 Mar 2026: 26 messages")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "  - Bus routes: 18 /" in text and "[phone]" in text and "555" not in text
    [image] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image.get_content().startswith(b"\x89PNG")
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html and "data:image" not in html


def test_the_worker_queues_yesterdays_digest_at_seven_local(settings):
    scheduler = BackgroundScheduler()
    schedule_digest_job(scheduler, "engine", settings)
    job = scheduler.get_job("digest")
    assert job.func is queue_yesterdays_digest and job.args == ("engine", settings)
    assert job.max_instances == 1 and job.coalesce
    # 7:00 in New York: 12:00 UTC in winter, 11:00 UTC after the switch to summer time
    fire = job.trigger.get_next_fire_time(None, datetime(2026, 3, 6, 13, 0, tzinfo=UTC))
    assert fire == datetime(2026, 3, 7, 7, 0, tzinfo=TZ)
    assert fire.astimezone(UTC) == datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    fire = job.trigger.get_next_fire_time(None, datetime(2026, 3, 8, 10, 59, tzinfo=UTC))
    assert fire.astimezone(UTC) == datetime(2026, 3, 8, 11, 0, tzinfo=UTC)
    other = BackgroundScheduler()
    schedule_digest_job(other, "engine", settings.model_copy(update={"digest_time": "18:30"}))
    fire = other.get_job("digest").trigger.get_next_fire_time(None, fire)
    assert fire == datetime(2026, 3, 8, 18, 30, tzinfo=TZ)


def test_yesterday_is_the_local_date_before(settings):
    late_evening = datetime(2026, 3, 11, 3, 30, tzinfo=UTC)  # 23:30 on 10 March in New York
    assert yesterday(settings, late_evening) == date(2026, 3, 9)


@pytest.mark.parametrize("bad", ["7:00", "24:00", "07:60", "7am", ""])
def test_digest_time_must_be_hh_mm(bad):
    with pytest.raises(ValidationError, match=r"digest_time .*use a 24-hour HH:MM time"):
        Settings(_env_file=None, digest_time=bad)
