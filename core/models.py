"""ORM models: the tables of DESIGN.md. Schema changes go through Alembic (core/migrations)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SOURCE_KINDS = ("email", "sms", "social", "webform", "voicemail", "import", "demo")
RISK_LEVELS = ("none", "review", "urgent")
RISK_REVIEWS = ("confirmed", "dismissed")
TOPIC_STATUSES = ("active", "retired", "merged")
ALERT_KINDS = ("spike", "emerging", "risk", "source_down")
ALERT_STATES = ("pending", "firing", "resolved", "acknowledged", "silenced")
NOTIFICATION_STATUSES = ("queued", "sending", "sent", "failed")
ROLES = ("wall", "viewer", "analyst", "admin")

# An integer primary key: INTEGER PRIMARY KEY (autoincrementing) on SQLite, 64-bit elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give Pulse timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Message(Base):
    """One inbound message from any source, normalised."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("source_name", "external_id"),
        Index("ix_messages_received_at", "received_at"),
        Index("ix_messages_topic_id_received_at", "topic_id", "received_at"),
        Index("ix_messages_risk_level", "risk_level"),
        Index("ix_messages_risk_rescored_at_id", "risk_rescored_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author: Mapped[str | None] = mapped_column(Text)
    author_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    body_html_stripped: Mapped[bool] = mapped_column(Boolean, default=False)
    body_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))
    school: Mapped[str | None] = mapped_column(String(120))
    sentiment: Mapped[float | None] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(8), default="none")
    risk_categories: Mapped[list[str] | None] = mapped_column(JSON)
    # The rest of the risk assessment (topics.risk) and its human review (topics.risk_review).
    risk_score: Mapped[float | None] = mapped_column(Float)  # priority: review 0.5+, urgent 0.8+
    risk_negated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    risk_third_party: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    risk_evidence: Mapped[list[str] | None] = mapped_column(JSON)  # the phrases that matched
    risk_rescored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by similarity
    risk_review: Mapped[str | None] = mapped_column(String(16))  # confirmed | dismissed
    risk_reviewed_by: Mapped[str | None] = mapped_column(String(100))
    risk_reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    risk_review_reason: Mapped[str | None] = mapped_column(Text)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    topic_score: Mapped[float | None] = mapped_column(Float)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    near_hash: Mapped[int | None] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Embedding(Base):
    """A message's embedding for one model; computed once, never recomputed."""

    __tablename__ = "embeddings"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    model_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class SourceState(Base):
    """A source's cursor and health."""

    __tablename__ = "source_state"

    source_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    messages_total: Mapped[int] = mapped_column(BigInteger, default=0)
    fetched_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failures_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    interval_seconds: Mapped[int | None] = mapped_column(Integer)


class Topic(Base):
    """A topic with an ID that stays stable across refits."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    custom_label: Mapped[str | None] = mapped_column(Text)
    words: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    centroid: Mapped[bytes | None] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    seed: Mapped[str | None] = mapped_column(String(64))

    @property
    def display_label(self) -> str:
        """The label a person gave, else the automatic one."""
        return self.custom_label or self.label


class TopicCount(Base):
    """Messages per topic, hour, source kind and school: what heatmaps and spike rules read."""

    __tablename__ = "topic_counts"

    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    source_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    school: Mapped[str] = mapped_column(String(120), primary_key=True, default="")
    n: Mapped[int] = mapped_column(Integer, default=0)
    n_negative: Mapped[int] = mapped_column(Integer, default=0)


class ModelRun(Base):
    """One BERTopic fit."""

    __tablename__ = "model_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    n_docs: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outlier_share: Mapped[float | None] = mapped_column(Float)
    topics_created: Mapped[int] = mapped_column(Integer, default=0)
    topics_kept: Mapped[int] = mapped_column(Integer, default=0)
    topics_retired: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Alert(Base):
    """An alert and its lifecycle state; `fingerprint` is the dedup key (e.g. `spike:topic:17`)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_fingerprint_state", "fingerprint", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    message_ids: Mapped[list[int] | None] = mapped_column(JSON)
    observed: Mapped[float | None] = mapped_column(Float)
    expected: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_evaluated: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Notification(Base):
    """The email outbox; `dedup_key` makes every notification unique, so none is sent twice."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    digest_date: Mapped[date | None] = mapped_column(Date)
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Silence(Base):
    """A time-boxed mute of alerts matching a kind and/or topic."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str | None] = mapped_column(String(16))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)


class CalendarEvent(Base):
    """A known event (first day of school, snow day, bond vote) that explains expected volume."""

    __tablename__ = "calendar_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32), default="event")
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    school: Mapped[str | None] = mapped_column(String(120))
    mute_alerts: Mapped[bool] = mapped_column(Boolean, default=False)


class User(Base):
    """A dashboard user; `role` is one of wall < viewer < analyst < admin."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditLog(Base):
    """Who read which raw messages, who reviewed which risk flag."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    username: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
