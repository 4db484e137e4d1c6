"""Risk after ingest: the review queue, reviewers' decisions, and rescoring by similarity.

- :func:`review_queue` lists flagged messages for the counsellors: unreviewed first, then urgent
  before review, higher priority (``risk_score``) first, the longest waiting first.
- :func:`confirm` and :func:`dismiss` record a reviewer's decision, who made it, when and why, on
  the message (``risk_review*`` columns, queryable by the dashboard) and in ``audit_log``, in one
  transaction.
- Dismissed messages are the district's own list of reviewed negatives: :func:`reviewed_model`
  loads them into the :class:`~topics.risk.RiskModel`, which downgrades their near-duplicates.
- :func:`rescore_risk` runs in the assign step, once per message, on the embeddings that step
  computes anyway: similarity to the curated examples and the learned scorer
  (``topics.risk_scorer``) may raise the level the rules gave at ingest; only a dismissed
  near-duplicate lowers it. A reviewed message is never rescored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, case, select, update

from core.db import read_session, write_connection, write_session
from core.models import AuditLog, Message, utcnow
from topics.embeddings import Embedder, cached_embeddings
from topics.enrich import message_text
from topics.risk import RANK, RiskAssessment, RiskModel, load_risk_model

log = logging.getLogger(__name__)

FLAGGED = ("urgent", "review")
AUDIT_ACTIONS = {"confirmed": "risk_confirm", "dismissed": "risk_dismiss"}  # audit_log.action
DISMISSED_MARK = "~dismissed"  # RiskModel's evidence entry for a dismissed near-duplicate


class ReviewError(ValueError):
    """A review action cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class QueueItem:
    """A flagged message as the review queue shows it."""

    id: int
    received_at: datetime
    source_kind: str
    source_name: str
    school: str | None
    subject: str | None
    body: str
    level: str
    categories: list[str]
    score: float
    negated: bool
    third_party: bool
    evidence: list[str]
    review: str | None  # None (waiting), "confirmed" or "dismissed"
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None

    def age(self, now: datetime) -> timedelta:
        """How long the message has been waiting since it was received."""
        return now - self.received_at


def _item(message: Message) -> QueueItem:
    return QueueItem(
        id=message.id,
        received_at=message.received_at,
        source_kind=message.source_kind,
        source_name=message.source_name,
        school=message.school,
        subject=message.subject,
        body=message.body,
        level=message.risk_level,
        categories=list(message.risk_categories or []),
        score=message.risk_score or 0.0,
        negated=message.risk_negated,
        third_party=message.risk_third_party,
        evidence=list(message.risk_evidence or []),
        review=message.risk_review,
        reviewed_by=message.risk_reviewed_by,
        reviewed_at=message.risk_reviewed_at,
        review_reason=message.risk_review_reason,
    )


def review_queue(
    engine: Engine,
    levels: tuple[str, ...] = FLAGGED,
    include_reviewed: bool = False,
    limit: int = 200,
) -> list[QueueItem]:
    """Flagged messages of ``levels``: unreviewed first, urgent first, by priority, oldest first.

    Reviewed messages are listed (after the waiting ones) only with ``include_reviewed``.
    """
    unknown = [level for level in levels if level not in FLAGGED]
    if unknown or not levels:
        raise ReviewError(f"unknown risk level(s) {unknown or levels!r}: use 'urgent', 'review'")
    if limit < 1:
        raise ReviewError(f"limit {limit} is not positive: give 1 or more")
    query = select(Message).where(Message.risk_level.in_(levels))
    if not include_reviewed:
        query = query.where(Message.risk_review.is_(None))
    query = query.order_by(
        case((Message.risk_review.is_(None), 0), else_=1),
        case((Message.risk_level == "urgent", 0), else_=1),
        Message.risk_score.desc().nulls_last(),
        Message.received_at,
        Message.id,
    ).limit(limit)
    with read_session(engine) as session:
        return [_item(message) for message in session.scalars(query)]


def confirm(engine: Engine, message_id: int, username: str, reason: str) -> QueueItem:
    """Record that ``username`` confirmed message ``message_id``'s risk flag, and why."""
    return _review(engine, message_id, username, reason, "confirmed")


def dismiss(engine: Engine, message_id: int, username: str, reason: str) -> QueueItem:
    """Record that ``username`` dismissed message ``message_id``'s risk flag, and why.

    The message joins the reviewed negatives: its near-duplicates are downgraded from now on.
    """
    return _review(engine, message_id, username, reason, "dismissed")


def _review(
    engine: Engine, message_id: int, username: str, reason: str, decision: str
) -> QueueItem:
    username, reason = username.strip(), reason.strip()
    if not username:
        raise ReviewError("no reviewer given: pass the username of the person deciding")
    if not reason:
        raise ReviewError(f"no reason given for the {decision} flag: say why (it is audited)")
    with write_session(engine) as session:
        message = session.get(Message, message_id)
        if message is None:
            raise ReviewError(f"no message {message_id}: see `app.py risk queue` for flagged ids")
        if message.risk_level == "none" and message.risk_review is None:
            raise ReviewError(
                f"message {message_id} is not flagged (risk level none): nothing to review"
            )
        now = utcnow()
        details: dict[str, Any] = {
            "reason": reason,
            "level": message.risk_level,
            "categories": list(message.risk_categories or []),
            "previous_review": message.risk_review,
        }
        message.risk_review = decision
        message.risk_reviewed_by = username
        message.risk_reviewed_at = now
        message.risk_review_reason = reason
        session.add(
            AuditLog(
                at=now,
                username=username,
                action=AUDIT_ACTIONS[decision],
                target_type="message",
                target_id=str(message_id),
                details=details,
            )
        )
        session.flush()
        return _item(message)


# --- rescoring by similarity ------------------------------------------------------------------


def dismissed_messages(engine: Engine) -> dict[int, str]:
    """The text (subject and body) of every dismissed message, by id."""
    with read_session(engine) as session:
        rows = session.execute(
            select(Message.id, Message.subject, Message.body).where(
                Message.risk_review == "dismissed"
            )
        ).all()
    return {row.id: message_text(row.subject, row.body) for row in rows}


_MODELS: dict[tuple[str, str], tuple[RiskModel, frozenset[int]]] = {}


def reviewed_model(engine: Engine, embedder: Embedder | None) -> RiskModel:
    """The shipped rules and examples plus this database's dismissed messages.

    Built once per database and embedder in a process (embedding the examples takes a moment);
    later calls only add messages dismissed since, or rebuild when a dismissal was undone.
    """
    dismissed = dismissed_messages(engine)
    key = (str(engine.url), embedder.key if embedder is not None else "")
    cached = _MODELS.get(key)
    if cached is not None and cached[0].embedder is embedder and cached[1] <= dismissed.keys():
        model, known = cached
        model.add_dismissed([text for i, text in dismissed.items() if i not in known])
    else:
        model = load_risk_model(embedder, dismissed=list(dismissed.values()))
    _MODELS[key] = (model, frozenset(dismissed))
    return model


def combine(stored: str, assessed: RiskAssessment) -> RiskAssessment | None:
    """What rescoring writes over a message the rules rated ``stored``: ``assessed`` when it is
    higher, or lower because of a dismissed near-duplicate; None to keep what is stored."""
    if DISMISSED_MARK in assessed.matched and RANK[assessed.level] < RANK[stored]:
        return assessed
    return assessed if RANK[assessed.level] > RANK[stored] else None


@dataclass(frozen=True)
class RescoreResult:
    """What one rescoring run did."""

    checked: int = 0
    raised: int = 0
    lowered: int = 0


def _unrescored(engine: Engine, after_id: int, limit: int) -> list[Any]:
    with read_session(engine) as session:
        return list(
            session.execute(
                select(
                    Message.id,
                    Message.subject,
                    Message.body,
                    Message.risk_level,
                    Message.risk_review,
                )
                .where(Message.risk_rescored_at.is_(None), Message.id > after_id)
                .order_by(Message.id)
                .limit(limit)
            ).all()
        )


def rescore_risk(engine: Engine, embedder: Embedder, batch_size: int = 512) -> RescoreResult:
    """Compare every message not yet rescored with the curated and dismissed examples.

    Each message is rescored once (``risk_rescored_at`` is set even when nothing changes); its
    embedding goes through the embedding cache, so topic assignment reuses it.
    """
    model = reviewed_model(engine, embedder)
    checked = raised = lowered = 0
    last_id = 0
    while batch := _unrescored(engine, last_id, batch_size):
        last_id = batch[-1].id
        vectors = cached_embeddings(engine, embedder, [row.id for row in batch])
        assessed = model.assess_many([message_text(r.subject, r.body) for r in batch], vectors)
        now = utcnow()
        unchanged: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for row, found in zip(batch, assessed, strict=True):
            new = None if row.risk_review is not None else combine(row.risk_level, found)
            if new is None:
                unchanged.append({"message_id": row.id, "risk_rescored_at": now})
                continue
            changed.append({"message_id": row.id, "risk_rescored_at": now, **new.as_columns()})
            raised += RANK[new.level] > RANK[row.risk_level]
            lowered += RANK[new.level] < RANK[row.risk_level]
        with write_connection(engine) as conn:
            for rows in (unchanged, changed):
                if rows:  # only rows still not rescored: a concurrent run changes nothing twice
                    columns = [k for k in rows[0] if k != "message_id"]
                    conn.execute(
                        update(Message)
                        .where(Message.id == bindparam("message_id"))
                        .where(Message.risk_rescored_at.is_(None))
                        .values({k: bindparam(f"new_{k}") for k in columns}),
                        [
                            {f"new_{k}" if k in columns else k: v for k, v in r.items()}
                            for r in rows
                        ],
                    )
        checked += len(batch)
    if raised or lowered:
        log.info("risk rescoring: %d raised, %d lowered of %d messages", raised, lowered, checked)
    return RescoreResult(checked, raised, lowered)
