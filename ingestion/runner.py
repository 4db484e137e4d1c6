"""The one sync runner: fetch from the cursor, normalise, upsert, commit, advance the cursor.

The new messages and the new cursor are committed in one transaction, so a crash at any point
leaves either both or neither: a re-run fetches again and the upsert ignores what is stored.
Passing failures (timeouts, rate limits, server errors) are retried with exponential backoff and
full jitter, honouring a server's ``Retry-After``; fatal ones (bad credentials) are not.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.db import write_session
from core.messages import NewMessage, upsert_messages
from core.models import SourceState, utcnow
from core.settings import Settings
from ingestion.base import Connector, Cursor, RawMessage
from ingestion.errors import RetryableError, is_retryable
from ingestion.normalize import normalize
from topics.enrich import enrich_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    """What one sync of one source did."""

    source_name: str
    fetched: int
    new: int
    error: str | None = None


def _state(session: Session, name: str, kind: str) -> SourceState:
    state = session.get(SourceState, name)
    if state is None:
        state = SourceState(
            source_name=name,
            source_kind=kind,
            consecutive_failures=0,
            messages_total=0,
            fetched_total=0,
            failures_total=0,
        )
        session.add(state)
    return state


def _record_attempt(engine: Engine, connector: Connector) -> Cursor:
    with write_session(engine) as session:
        state = _state(session, connector.name, connector.kind)
        state.last_attempt_at = utcnow()
        state.interval_seconds = connector.interval_seconds
        return state.cursor


def _record_failure(engine: Engine, connector: Connector, error: str) -> None:
    with write_session(engine) as session:
        state = _state(session, connector.name, connector.kind)
        state.last_error = error
        state.consecutive_failures += 1
        state.failures_total += 1


def prepare_messages(raws: Iterable[RawMessage], kind: str, settings: Settings) -> list[NewMessage]:
    """``raws`` normalised and enriched (language, sentiment, risk), ready to upsert."""
    return enrich_messages(
        normalize(raw, kind, settings.author_key, settings.max_body_chars) for raw in raws
    )


def store_messages(
    session: Session, settings: Settings, name: str, kind: str, raws: Iterable[RawMessage]
) -> tuple[int, int]:
    """Prepare and upsert ``raws`` from source ``name`` in ``session``; mark the source healthy.

    Returns (messages received, messages new). Used by the sync runner and by webhooks.
    """
    messages = prepare_messages(raws, kind, settings)
    new = upsert_messages(session.connection(), messages)
    state = _state(session, name, kind)
    now = utcnow()
    state.last_attempt_at = state.last_attempt_at or now
    state.last_success_at = now
    state.last_error = None
    state.consecutive_failures = 0
    state.messages_total += new
    state.fetched_total += len(messages)
    return len(messages), new


def backoff_delay(
    attempt: int, settings: Settings, retry_after: float | None, rand: Callable[[], float]
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): full jitter, capped."""
    doubled = settings.sync_backoff_seconds * 2 ** (attempt - 1)
    ceiling = min(settings.sync_backoff_max_seconds, doubled)
    delay = ceiling * rand()
    return max(delay, retry_after) if retry_after is not None else delay


def _fetch_with_retries(
    connector: Connector,
    cursor: Cursor,
    settings: Settings,
    sleep: Callable[[float], None],
    rand: Callable[[], float],
) -> tuple[list[RawMessage], Cursor]:
    attempt = 1
    while True:
        try:
            raws, new_cursor = connector.fetch(cursor)
            return list(raws), new_cursor
        except Exception as exc:
            if not is_retryable(exc) or attempt >= settings.sync_max_attempts:
                raise
            retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
            if retry_after is not None and retry_after > settings.sync_backoff_max_seconds:
                raise  # the server asks for a longer pause than a sync should hold its slot
            delay = backoff_delay(attempt, settings, retry_after, rand)
            log.info("source %r: %s; retry %d in %.1fs", connector.name, exc, attempt, delay)
            sleep(delay)
            attempt += 1


def sync_source(
    engine: Engine,
    connector: Connector,
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> SyncResult:
    """Pull what is new from ``connector`` into messages; record the source's health."""
    cursor = _record_attempt(engine, connector)
    try:
        raws, new_cursor = _fetch_with_retries(connector, cursor, settings, sleep, rand)
        with write_session(engine) as session:
            fetched, new = store_messages(session, settings, connector.name, connector.kind, raws)
            _state(session, connector.name, connector.kind).cursor = new_cursor
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("sync of source %r failed: %s", connector.name, error)
        _record_failure(engine, connector, error)
        return SyncResult(connector.name, fetched=0, new=0, error=error)
    if new:
        log.info("source %r: %d new of %d fetched", connector.name, new, fetched)
    return SyncResult(connector.name, fetched=fetched, new=new)
