"""The one sync runner: fetch from the cursor, normalise, upsert, commit, advance the cursor.

The new messages and the new cursor are committed in one transaction, so a crash at any point
leaves either both or neither: a re-run fetches again and the upsert ignores what is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from core.db import write_session
from core.messages import upsert_messages
from core.models import SourceState, utcnow
from core.settings import Settings
from ingestion.base import Connector
from ingestion.normalize import normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    """What one sync of one source did."""

    source_name: str
    fetched: int
    new: int
    error: str | None = None


def _record_attempt(engine: Engine, connector: Connector) -> SourceState:
    with write_session(engine) as session:
        state = session.get(SourceState, connector.name)
        if state is None:
            state = SourceState(
                source_name=connector.name,
                source_kind=connector.kind,
                consecutive_failures=0,
                messages_total=0,
            )
            session.add(state)
        state.last_attempt_at = utcnow()
        return state


def _record_failure(engine: Engine, connector: Connector, error: str) -> None:
    with write_session(engine) as session:
        state = session.get_one(SourceState, connector.name)
        state.last_error = error
        state.consecutive_failures += 1


def sync_source(engine: Engine, connector: Connector, settings: Settings) -> SyncResult:
    """Pull what is new from ``connector`` into messages; record the source's health."""
    state = _record_attempt(engine, connector)
    try:
        raws, new_cursor = connector.fetch(state.cursor)
        messages = [
            normalize(raw, connector.kind, settings.author_key, settings.max_body_chars)
            for raw in raws
        ]
        with write_session(engine) as session:
            new = upsert_messages(session.connection(), messages)
            stored = session.get_one(SourceState, connector.name)
            stored.cursor = new_cursor
            stored.last_success_at = utcnow()
            stored.last_error = None
            stored.consecutive_failures = 0
            stored.messages_total += new
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("sync of source %r failed: %s", connector.name, error)
        _record_failure(engine, connector, error)
        return SyncResult(connector.name, fetched=0, new=0, error=error)
    if new:
        log.info("source %r: %d new of %d fetched", connector.name, new, len(messages))
    return SyncResult(connector.name, fetched=len(messages), new=new)
