"""Risk wired into Pulse: set at ingest, rescored by similarity in the assign step, reviewed
(confirm / dismiss, audited), dismissals downgrading near-duplicates, the CLI and ``analyze``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from app import cli
from core.db import create_db_engine, migrate, read_session, write_session
from core.models import AuditLog, Message, Topic
from core.worker import TopicJobs
from ingestion.base import RawMessage
from ingestion.files import import_file
from ingestion.runner import sync_source
from topics.embeddings import DEFAULT_MODEL, load_embedder, to_bytes
from topics.risk import assess, load_examples
from topics.risk_review import (
    ReviewError,
    confirm,
    dismiss,
    rescore_risk,
    review_queue,
    reviewed_model,
)

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
URGENT = "my son said he took a whole bottle of pills tonight please help"
NEGATED = "I would never kill myself, don't worry mom"
BULLIED = "ugh everyone in my class hates me, they keep calling me names"
HARMLESS = "Is there school on Monday?"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(DEFAULT_MODEL)


class ListSource:
    """A connector over a fixed list of texts (the cursor: how many were delivered)."""

    name = "texts"
    kind = "sms"
    interval_seconds = 60

    def __init__(self, bodies: list[str]) -> None:
        self.bodies = bodies

    def fetch(self, cursor):
        start = cursor["next"] if cursor else 0
        return [
            RawMessage(self.name, f"t{i}", T0 + timedelta(minutes=i), body)
            for i, body in enumerate(self.bodies[start:], start=start)
        ], {"next": len(self.bodies)}


def sync(engine, settings, *bodies: str) -> dict[str, Message]:
    """Deliver ``bodies`` through the sync runner; the stored messages by body."""
    source = ListSource(list(bodies))
    assert sync_source(engine, source, settings).error is None
    return stored(engine)


def stored(engine) -> dict[str, Message]:
    with read_session(engine) as session:
        return {m.body: m for m in session.scalars(select(Message))}


def audit_rows(engine) -> list[AuditLog]:
    with read_session(engine) as session:
        return list(session.scalars(select(AuditLog).order_by(AuditLog.id)))


# --- ingest -------------------------------------------------------------------------------------


def test_a_sync_stores_the_rules_assessment_with_every_message(db_engine, settings):
    messages = sync(db_engine, settings, URGENT, NEGATED, HARMLESS)
    urgent = messages[URGENT]
    assert urgent.risk_level == "urgent" and urgent.risk_categories == ["self_harm"]
    assert urgent.risk_third_party and not urgent.risk_negated
    assert 0.8 <= urgent.risk_score <= 1 and urgent.risk_evidence
    negated = messages[NEGATED]
    assert negated.risk_level == "review" and negated.risk_negated
    assert not negated.risk_third_party and negated.risk_categories == ["self_harm"]
    harmless = messages[HARMLESS]
    assert harmless.risk_level == "none" and harmless.risk_categories is None
    assert harmless.risk_score == 0 and harmless.risk_evidence is None
    assert all(m.risk_rescored_at is None and m.risk_review is None for m in messages.values())


def test_an_import_scores_the_subject_too(db_engine, settings, tmp_path):
    rows = [
        {"id": "a", "received_at": T0.isoformat(), "subject": "voy a traer una pistola",
         "body": "a la escuela el lunes"},
        {"id": "b", "received_at": T0.isoformat(), "body": "Donación de sangre el día 15 🩸"},
    ]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert import_file(db_engine, path, settings).new == 2
    messages = stored(db_engine)
    threat = messages["a la escuela el lunes"]
    assert threat.risk_level == "urgent" and threat.risk_categories == ["violence_threat"]
    assert messages["Donación de sangre el día 15 🩸"].risk_level == "none"


# --- review -------------------------------------------------------------------------------------


def test_queue_lists_waiting_flags_urgent_first_then_by_priority_and_age(db_engine, settings):
    messages = sync(db_engine, settings, BULLIED, NEGATED, URGENT, HARMLESS)
    queue = review_queue(db_engine)
    # urgent first; then by priority: a matched bullying phrase (0.58) before a negated one (0.5)
    assert [item.body for item in queue] == [URGENT, BULLIED, NEGATED]
    assert queue[1].score > queue[2].score
    assert queue[0].age(T0 + timedelta(hours=1)) == timedelta(minutes=58)
    assert review_queue(db_engine, levels=("urgent",))[0].id == messages[URGENT].id
    confirm(db_engine, messages[URGENT].id, "counsellor", "called the parent")
    waiting = review_queue(db_engine)
    assert messages[URGENT].id not in [item.id for item in waiting] and len(waiting) == 2
    everything = review_queue(db_engine, include_reviewed=True)
    assert everything[-1].id == messages[URGENT].id and everything[-1].review == "confirmed"
    with pytest.raises(ReviewError, match="unknown risk level"):
        review_queue(db_engine, levels=("none",))


def test_confirm_and_dismiss_record_who_when_why_in_the_message_and_the_audit_log(
    db_engine, settings
):
    messages = sync(db_engine, settings, URGENT, BULLIED)
    urgent, bullied = messages[URGENT].id, messages[BULLIED].id
    confirmed = confirm(db_engine, urgent, " maria ", "called the family, student safe")
    assert (confirmed.review, confirmed.reviewed_by) == ("confirmed", "maria")
    dismissed = dismiss(db_engine, bullied, "li", "a song lyric")
    assert dismissed.review == "dismissed" and dismissed.review_reason == "a song lyric"
    after = stored(db_engine)
    assert after[URGENT].risk_review == "confirmed" and after[URGENT].risk_reviewed_by == "maria"
    assert after[BULLIED].risk_review == "dismissed" and after[BULLIED].risk_reviewed_at
    assert after[URGENT].risk_level == "urgent"  # the assessment itself is kept
    audit = audit_rows(db_engine)
    assert [(a.username, a.action, a.target_type, a.target_id) for a in audit] == [
        ("maria", "risk_confirm", "message", str(urgent)),
        ("li", "risk_dismiss", "message", str(bullied)),
    ]
    assert audit[0].details == {
        "reason": "called the family, student safe",
        "level": "urgent",
        "categories": ["self_harm"],
        "previous_review": None,
    }
    assert audit[1].at == after[BULLIED].risk_reviewed_at
    # a second opinion is recorded too, with what it replaced
    confirm(db_engine, bullied, "sam", "the student confirmed it is happening")
    assert audit_rows(db_engine)[-1].details["previous_review"] == "dismissed"


def test_review_errors_name_the_problem(db_engine, settings):
    messages = sync(db_engine, settings, HARMLESS, BULLIED)
    flagged = messages[BULLIED].id
    with pytest.raises(ReviewError, match="no message 9999"):
        confirm(db_engine, 9999, "maria", "x")
    with pytest.raises(ReviewError, match="not flagged"):
        dismiss(db_engine, messages[HARMLESS].id, "maria", "x")
    with pytest.raises(ReviewError, match="no reason"):
        dismiss(db_engine, flagged, "maria", "  ")
    with pytest.raises(ReviewError, match="no reviewer"):
        confirm(db_engine, flagged, "", "real")
    assert audit_rows(db_engine) == [] and stored(db_engine)[BULLIED].risk_review is None


# --- rescoring ----------------------------------------------------------------------------------


def test_a_dismissed_message_downgrades_its_near_duplicate_afterwards(
    db_engine, settings, embedder
):
    first = sync(db_engine, settings, BULLIED)[BULLIED]
    assert first.risk_level == "review"
    dismiss(db_engine, first.id, "maria", "song lyrics, not about anyone")
    resent = BULLIED.replace("ugh", "UGH").replace("names", "names!!")
    other = "they keep calling my son names on bus 7"
    messages = sync(db_engine, settings, BULLIED, resent, other)  # t0 is the dismissed one
    assert messages[resent].risk_level == "review"  # the rules at ingest know nothing of it
    result = rescore_risk(db_engine, embedder)
    assert result.checked == 3 and result.lowered == 1
    after = stored(db_engine)
    assert after[resent].risk_level == "none" and after[resent].risk_score == 0
    assert "~dismissed" in after[resent].risk_evidence
    assert after[other].risk_level == "review"  # not a near-duplicate
    assert after[BULLIED].risk_level == "review"  # a reviewed message is never rescored
    assert all(m.risk_rescored_at is not None for m in after.values())
    assert rescore_risk(db_engine, embedder).checked == 0  # each message once


def test_similarity_raises_in_the_worker_assign_job_and_never_lowers_the_rules(
    db_engine, settings, embedder
):
    edited = [e.text.replace(".", " again.") for e in load_examples() if e.level == "urgent"]
    missed = next(text for text in edited if assess(text).level == "none")  # rules alone miss it
    messages = sync(db_engine, settings, missed, URGENT, NEGATED, HARMLESS)
    assert messages[missed].risk_level == "none"
    jobs = TopicJobs(db_engine, settings)
    jobs.embedder = embedder  # the worker's minute job: rescore risk, then assign topics
    jobs.assign()
    after = stored(db_engine)  # no topics yet, but risk was rescored
    assert all(m.risk_rescored_at is not None for m in after.values())
    assert after[missed].risk_level == "review" and after[missed].risk_score >= 0.5
    assert any(e.startswith("~") for e in after[missed].risk_evidence)
    for text in (URGENT, NEGATED, HARMLESS):  # as the rules said
        assert after[text].risk_level == messages[text].risk_level, text
    assert review_queue(db_engine)[-1].id in {after[missed].id, after[NEGATED].id}


def test_reviewed_model_learns_new_dismissals_without_rebuilding(db_engine, settings, embedder):
    messages = sync(db_engine, settings, BULLIED, NEGATED)
    model = reviewed_model(db_engine, embedder)
    assert model.dismissed_texts == []
    dismiss(db_engine, messages[NEGATED].id, "maria", "reassuring her mother")
    again = reviewed_model(db_engine, embedder)
    assert again is model and again.dismissed_texts == [NEGATED]
    confirm(db_engine, messages[NEGATED].id, "sam", "second look: it is worrying")
    rebuilt = reviewed_model(db_engine, embedder)
    assert rebuilt is not model and rebuilt.dismissed_texts == []


# --- command line and analyze -------------------------------------------------------------------


@pytest.fixture
def cli_engine(monkeypatch, settings):
    """The database of ``settings``, which the CLI uses too (through PULSE_* variables)."""
    monkeypatch.setenv("PULSE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "test-key")
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_cli_queue_confirm_dismiss(cli_engine, settings):
    messages = sync(cli_engine, settings, URGENT, BULLIED, HARMLESS)
    listed = run("risk", "queue")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{messages[URGENT].id}\turgent\t")
    assert "self_harm, third party" in lines[0] and "waiting" in lines[0]
    done = run("risk", "dismiss", str(messages[BULLIED].id), "--user", "li", "--reason", "lyrics")
    assert done.exit_code == 0 and "dismissed by li" in done.output
    assert len(run("risk", "queue").output.splitlines()) == 1
    assert "dismissed by li" in run("risk", "queue", "--all").output
    missing = run("risk", "confirm", "9999", "--user", "li", "--reason", "x")
    assert missing.exit_code != 0 and "no message 9999" in missing.output
    no_reason = run("risk", "confirm", str(messages[URGENT].id), "--user", "li")
    assert no_reason.exit_code != 0 and "--reason" in no_reason.output


def test_analyze_output_has_the_risk_fields_and_knows_dismissals(
    cli_engine, settings, embedder, tmp_path
):
    with write_session(cli_engine) as session:
        centroid = embedder.encode(["the school bus is late, the bus route"])[0]
        session.add(Topic(label="bus", centroid=to_bytes(centroid), size=10))
    dismissed = sync(cli_engine, settings, BULLIED)[BULLIED]
    dismiss(cli_engine, dismissed.id, "li", "lyrics")
    bodies = [URGENT, NEGATED, BULLIED + "!!", "mi hija dice que se quiere matar", HARMLESS]
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(
                {"id": f"m{i}", "received_at": T0.isoformat(), "body": b}, ensure_ascii=False
            )
            for i, b in enumerate(bodies)
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = run("analyze", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    risks = [json.loads(line)["risk"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert risks[0] == {
        "level": "urgent", "categories": ["self_harm"], "negated": False, "third_party": True
    }  # fmt: skip
    assert risks[1] == {
        "level": "review", "categories": ["self_harm"], "negated": True, "third_party": False
    }  # fmt: skip
    assert risks[2]["level"] == "none"  # a near-duplicate of the dismissed message
    assert risks[3]["level"] == "urgent" and risks[3]["third_party"] is True
    assert risks[4] == {"level": "none", "categories": [], "negated": False, "third_party": False}
