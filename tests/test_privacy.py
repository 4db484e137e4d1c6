"""Privacy: the retention purge, per-author erasure, the audit-log export and PII kept out of logs.

Messages go through the real ingestion (sync runner: normalise, hash the author, enrich, upsert)
and the real live assignment, on SQLite and PostgreSQL. The embedder is a fixed vector (its
model is not what these tests are about): every message joins the one topic.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from click.testing import CliRunner
from sqlalchemy import func, select

from alerts.engine import evaluate_alerts, evaluate_risk
from app import cli
from core.db import create_db_engine, migrate, read_session, write_session
from core.models import AuditLog, Embedding, Message, Topic, TopicCount
from core.retention import erase_author, purge_raw
from core.settings import Settings
from core.worker import schedule_retention_job
from ingestion.base import RawMessage
from ingestion.normalize import author_hash
from ingestion.runner import sync_source
from topics.assign import assign_new_messages, rebuild_topic_counts
from topics.embeddings import to_bytes

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PARENT = "Parent.One@Example.org"
OTHER = "+15550001111"


class FixedEmbedder:
    """Every text is the same unit vector, so every message joins the topic made of it."""

    key = "fixed-test"
    dim = 8

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        vectors[:, 0] = 1.0
        return vectors


class ListSource:
    """A connector delivering a fixed list of messages once."""

    kind = "email"
    interval_seconds = 60

    def __init__(self, name: str, raws: list[RawMessage]) -> None:
        self.name = name
        self.raws = raws

    def fetch(self, cursor):
        return ([], cursor) if cursor else (self.raws, {"done": True})


def raw(n: int, at: datetime, author: str, body: str, **extra) -> RawMessage:
    return RawMessage(
        source_name="inbox",
        external_id=f"m{n}",
        received_at=at,
        body=body,
        author=author,
        subject=f"Subject {n} about the bus",
        metadata={"message_id": f"<{n}@example.org>"},
        **extra,
    )


HISTORY = [
    raw(1, NOW - 400 * DAY, PARENT, "<p>The bus was late again, I am furious.</p>"),
    raw(2, NOW - 400 * DAY + timedelta(hours=2), PARENT, "Bus 12 skipped our stop today."),
    raw(3, NOW - 380 * DAY, OTHER, "Thanks for the lovely concert last night."),
    raw(4, NOW - 2 * DAY, PARENT, "Still no bus this morning, this is terrible."),
    raw(5, NOW - DAY, OTHER, "When is the bus schedule posted?", school="Lincoln"),
]


def ingest_and_assign(engine, settings: Settings, raws: list[RawMessage] = HISTORY) -> None:
    """The real pipeline: sync (normalise, enrich, upsert), then live assignment to one topic."""
    with write_session(engine) as session:
        session.add(Topic(id=1, label="bus", centroid=to_bytes(FixedEmbedder().encode(["x"])[0])))
    result = sync_source(engine, ListSource("inbox", raws), settings)
    assert result.error is None and result.new == len(raws)
    assigned = assign_new_messages(engine, settings, FixedEmbedder())
    assert assigned.assigned == len(raws)


def messages(engine) -> dict[str, Message]:
    with read_session(engine) as session:
        return {m.external_id: m for m in session.scalars(select(Message))}


def counts(engine) -> set[tuple]:
    with read_session(engine) as session:
        rows = session.execute(
            select(
                TopicCount.topic_id,
                TopicCount.bucket_start,
                TopicCount.source_kind,
                TopicCount.school,
                TopicCount.n,
                TopicCount.n_negative,
            )
        )
        return set(map(tuple, rows))


def embedded_ids(engine) -> set[int]:
    with read_session(engine) as session:
        return set(session.scalars(select(Embedding.message_id)))


@pytest.fixture
def engine(db_engine, settings):
    ingest_and_assign(db_engine, settings)
    return db_engine


def test_purge_blanks_old_personal_text_keeps_aggregates_and_is_idempotent(engine, settings):
    before = messages(engine)
    counts_before = counts(engine)
    assert sum(c[4] for c in counts_before) == 5 and any(c[5] for c in counts_before)
    assert before["m1"].raw is not None  # HTML original kept at ingest: it must go too

    result = purge_raw(engine, settings, NOW, batch_size=2)  # two batches and a bit

    assert (result.messages, result.embeddings) == (3, 3)
    assert result.cutoff == NOW - 365 * DAY
    after = messages(engine)
    for key in ("m1", "m2", "m3"):
        old, new = before[key], after[key]
        assert new.body == ""
        assert (new.subject, new.author, new.raw, new.meta, new.risk_evidence) == (None,) * 5
        kept = ("topic_id", "received_at", "source_kind", "school", "language", "sentiment")
        kept += ("risk_level", "author_hash", "content_hash")
        assert [getattr(new, f) for f in kept] == [getattr(old, f) for f in kept]
    for key in ("m4", "m5"):  # recent: untouched
        assert after[key].body == before[key].body and after[key].author == before[key].author
    assert embedded_ids(engine) == {after["m4"].id, after["m5"].id}
    assert counts(engine) == counts_before
    # Purged messages still count: rebuilding the counts from messages gives the same numbers.
    rebuild_topic_counts(engine)
    assert counts(engine) == counts_before

    again = purge_raw(engine, settings, NOW)
    assert (again.messages, again.embeddings) == (0, 0)
    assert messages(engine)["m4"].body == before["m4"].body


def test_a_dry_run_counts_and_changes_nothing(engine, settings):
    before = messages(engine)
    result = purge_raw(engine, settings, NOW, dry_run=True)
    assert (result.messages, result.embeddings, result.dry_run) == (3, 3, True)
    assert {k: m.body for k, m in messages(engine).items()} == {
        k: m.body for k, m in before.items()
    }
    assert len(embedded_ids(engine)) == 5


def test_retention_zero_keeps_everything(engine, settings):
    result = purge_raw(engine, settings.model_copy(update={"retention_days": 0}), NOW)
    assert (result.cutoff, result.messages) == (None, 0)
    assert all(m.body for m in messages(engine).values())


def test_a_retention_inside_the_topic_window_is_refused_with_the_setting_names():
    with pytest.raises(ValueError, match="PULSE_RETENTION_DAYS above PULSE_TOPIC_WINDOW_DAYS"):
        Settings(_env_file=None, retention_days=30, topic_window_days=90)
    assert Settings(_env_file=None, retention_days=0).retention_days == 0


def test_erasing_an_author_deletes_their_messages_fixes_counts_and_audits_only_the_hash(
    engine, settings
):
    purge_raw(engine, settings, NOW)  # the author's old messages are purged: found by hash still
    ids = {k: m.id for k, m in messages(engine).items()}

    result = erase_author(engine, settings, f"  {PARENT.upper()} ", "privacy-officer")

    assert result.author_hash == author_hash(PARENT, settings.author_key)
    assert (result.messages, result.embeddings) == (3, 1)  # two of them lost theirs to the purge
    assert set(messages(engine)) == {"m3", "m5"}
    assert embedded_ids(engine) == {ids["m5"]}
    left = counts(engine)
    assert sum(c[4] for c in left) == 2 and all(c[4] > 0 for c in left)
    rebuild_topic_counts(engine)  # the decremented counts are what the messages say
    assert counts(engine) == left
    with read_session(engine) as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "erase_author")).one()
    assert (audit.username, audit.target_type, audit.target_id) == (
        "privacy-officer",
        "author",
        result.author_hash,
    )
    assert audit.details == {"messages": 3, "embeddings": 1}
    assert (
        PARENT.lower() not in json.dumps([audit.username, audit.target_id, audit.details]).lower()
    )


def test_erasing_is_refused_without_an_address_or_a_user(engine, settings):
    with pytest.raises(ValueError, match="address is empty"):
        erase_author(engine, settings, "  ", "officer")
    with pytest.raises(ValueError, match="--user"):
        erase_author(engine, settings, PARENT, " ")
    assert len(messages(engine)) == 5


def test_the_worker_purges_daily_and_not_at_all_when_retention_is_off(engine, settings):
    scheduler = BackgroundScheduler(timezone=settings.tz)
    schedule_retention_job(scheduler, engine, settings.model_copy(update={"retention_days": 0}))
    assert scheduler.get_jobs() == []
    schedule_retention_job(scheduler, engine, settings)
    job = scheduler.get_job("privacy:retention")
    assert isinstance(job.trigger, CronTrigger) and str(job.trigger.fields[5]) == "3"
    job.func()  # what the worker runs: purges up to the present
    assert {k for k, m in messages(engine).items() if m.body == ""} == {"m1", "m2", "m3"}


@pytest.fixture
def cli_env(monkeypatch, settings):
    monkeypatch.setenv("PULSE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "test-key")
    monkeypatch.setenv("PULSE_SOURCES_FILE", str(settings.sources_file))
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    ingest_and_assign(engine, settings)
    yield engine
    engine.dispose()


def test_the_privacy_commands_purge_erase_and_export_the_audit_log(cli_env, tmp_path):
    runner = CliRunner()
    dry = runner.invoke(cli, ["privacy", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would purge 3 messages")
    assert all(m.body for m in messages(cli_env).values())
    done = runner.invoke(cli, ["privacy", "purge"])
    assert done.exit_code == 0 and done.output.startswith("purged 3 messages"), done.output

    erased = runner.invoke(cli, ["privacy", "erase-author", PARENT, "--user", "officer"])
    assert erased.exit_code == 0, erased.output
    assert "erased 3 messages" in erased.output and PARENT not in erased.output
    refused = runner.invoke(cli, ["privacy", "erase-author", PARENT])
    assert refused.exit_code == 2 and "--user" in refused.output

    out_csv, out_jsonl = tmp_path / "audit.csv", tmp_path / "audit.jsonl"
    for out in (out_csv, out_jsonl):
        exported = runner.invoke(cli, ["privacy", "audit-export", "--since", "2020-01-01",
                                       "-o", str(out)])  # fmt: skip
        assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(out_csv.read_text(encoding="utf-8").splitlines()))
    lines = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["action"] for r in rows] == [r["action"] for r in lines] == ["erase_author"]
    assert json.loads(rows[0]["details"]) == {"messages": 3, "embeddings": 1}
    assert lines[0]["username"] == "officer"

    future = runner.invoke(cli, ["privacy", "audit-export", "--since", "2999-01-01",
                                 "-o", str(out_jsonl)])  # fmt: skip
    assert future.exit_code == 0 and out_jsonl.read_text() == ""
    bad = runner.invoke(cli, ["privacy", "audit-export", "-o", str(tmp_path / "audit.xlsx")])
    assert bad.exit_code == 2 and "name the file .csv or .jsonl" in bad.output


PII = {
    "address": "maria.gonzalez@example.org",
    "phone": "(555) 867-5309",
    "name": "Maria Gonzalez",
    "child": "Tomasito",
}


def test_no_message_text_or_author_reaches_the_logs(db_engine, settings, caplog):
    settings = settings.model_copy(update={"alert_recipients": "safety@district.example"})
    now = datetime.now(UTC)
    body = (
        f"My son {PII['child']} said he wants to kill himself and has a plan. Please call me, "
        f"{PII['name']}, at {PII['phone']} or {PII['address']}."
    )
    raws = [
        RawMessage(
            source_name="inbox",
            external_id="pii-1",
            received_at=now - timedelta(minutes=5),
            body=body,
            author=f"{PII['name']} <{PII['address']}>",
            subject=f"{PII['name']}: urgent about {PII['child']}",
        )
    ]
    caplog.set_level(logging.DEBUG)

    ingest_and_assign(db_engine, settings, raws)
    assert messages(db_engine)["pii-1"].risk_level == "urgent"  # the risk path really ran
    risk = evaluate_risk(db_engine, settings, now)
    assert risk.fired  # ... and alerted, with the message in the email
    evaluate_alerts(db_engine, settings, now)

    assert caplog.records, "the pipeline logged nothing: the test would prove nothing"
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    ).lower()
    for kind, value in PII.items():
        assert value.lower() not in logged, f"the {kind} reached the log"
    with read_session(db_engine) as session:
        assert session.scalar(select(func.count(Message.id))) == 1
