"""The sync runner: cursor committed with the messages, health recorded, failures contained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from core.db import read_session
from core.models import Message, SourceState
from ingestion.base import RawMessage
from ingestion.errors import FatalError, RetryableError
from ingestion.runner import backoff_delay, sync_source

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class ListSource:
    """A connector over a fixed list: the cursor is the index of the next message."""

    name = "list"
    kind = "sms"
    interval_seconds = 60

    def __init__(self, bodies: list[str], fail_with: Exception | None = None):
        self.bodies = bodies
        self.fail_with = fail_with
        self.seen_cursors: list[object] = []

    def fetch(self, cursor):
        self.seen_cursors.append(cursor)
        if self.fail_with:
            raise self.fail_with
        start = cursor["next"] if cursor else 0
        messages = [
            RawMessage("list", f"id{i}", T0 + timedelta(minutes=i), body, author="+15550100")
            for i, body in enumerate(self.bodies[start:], start=start)
        ]
        return messages, {"next": len(self.bodies)}


def state(engine) -> SourceState:
    with read_session(engine) as session:
        return session.get_one(SourceState, "list")


def stored(engine) -> int:
    with read_session(engine) as session:
        return session.scalar(select(func.count(Message.id)))


def test_sync_stores_messages_and_advances_the_cursor(db_engine, settings):
    source = ListSource(["one", "two"])
    result = sync_source(db_engine, source, settings)
    assert (result.fetched, result.new, result.error) == (2, 2, None)
    source.bodies.append("three")
    assert sync_source(db_engine, source, settings).new == 1
    assert source.seen_cursors == [None, {"next": 2}]
    st = state(db_engine)
    assert st.cursor == {"next": 3} and st.messages_total == 3 and st.consecutive_failures == 0
    assert st.last_success_at and st.last_attempt_at and st.source_kind == "sms"


def test_a_lost_cursor_refetches_without_duplicates(db_engine, settings):
    sync_source(db_engine, ListSource(["a", "b", "c"]), settings)
    again = sync_source(db_engine, ListSource(["a", "b", "c"]), settings)  # same IDs again
    assert again.new == 0 and stored(db_engine) == 3


def test_a_failing_source_keeps_its_cursor_and_records_the_error(db_engine, settings):
    sync_source(db_engine, ListSource(["a"]), settings)
    broken = ListSource(["a", "b"], fail_with=TimeoutError("server did not answer"))
    for _ in range(2):
        result = sync_source(db_engine, broken, settings)
        assert result.error == "TimeoutError: server did not answer"
    st = state(db_engine)
    assert st.cursor == {"next": 1} and st.consecutive_failures == 2
    assert st.last_error == "TimeoutError: server did not answer"
    recovered = sync_source(db_engine, ListSource(["a", "b"]), settings)
    assert recovered.new == 1 and state(db_engine).consecutive_failures == 0
    assert state(db_engine).last_error is None


def test_a_batch_that_fails_midway_stores_nothing_and_keeps_the_cursor(db_engine, settings):
    class HalfBad(ListSource):
        def fetch(self, cursor):
            messages, new_cursor = super().fetch(cursor)
            naive = RawMessage("list", "bad", datetime(2026, 1, 1), "no zone")
            return [*messages, naive], new_cursor

    result = sync_source(db_engine, HalfBad(["a", "b"]), settings)
    assert result.error and "naive" in result.error
    assert stored(db_engine) == 0 and state(db_engine).cursor is None


class FlakySource(ListSource):
    """Fails with the given errors first, then serves its list."""

    def __init__(self, bodies, errors):
        super().__init__(bodies)
        self.errors = list(errors)

    def fetch(self, cursor):
        if self.errors:
            self.seen_cursors.append(cursor)
            raise self.errors.pop(0)
        return super().fetch(cursor)


def test_passing_errors_are_retried_with_growing_jittered_backoff(db_engine, settings):
    waits = []
    source = FlakySource(["a", "b"], [TimeoutError("slow"), RetryableError("HTTP 503")])
    result = sync_source(db_engine, source, settings, sleep=waits.append, rand=lambda: 1.0)
    assert result.error is None and result.new == 2
    assert len(source.seen_cursors) == 3
    base = settings.sync_backoff_seconds
    assert waits == [base, 2 * base]  # full jitter at its top: base, then doubling
    st = state(db_engine)
    assert st.consecutive_failures == 0 and st.failures_total == 0 and st.fetched_total == 2


def test_retry_after_is_honoured_and_jitter_stays_under_the_ceiling(db_engine, settings):
    waits = []
    source = FlakySource(["a"], [RetryableError("HTTP 429", retry_after=7.0), TimeoutError()])
    sync_source(db_engine, source, settings, sleep=waits.append, rand=lambda: 0.25)
    assert waits[0] == 7.0  # the server's Retry-After beats a shorter backoff
    assert waits[1] == 0.25 * 2 * settings.sync_backoff_seconds


def test_fatal_errors_are_not_retried(db_engine, settings):
    waits = []
    source = FlakySource(["a"], [FatalError("HTTP 401: check the credentials"), TimeoutError()])
    result = sync_source(db_engine, source, settings, sleep=waits.append)
    assert result.error == "FatalError: HTTP 401: check the credentials"
    assert waits == [] and len(source.seen_cursors) == 1
    st = state(db_engine)
    assert st.consecutive_failures == 1 and st.failures_total == 1 and st.cursor is None


def test_retries_stop_after_the_configured_attempts(db_engine, settings):
    settings.sync_max_attempts = 3
    waits = []
    source = FlakySource(["a"], [TimeoutError(f"try {i}") for i in range(5)])
    result = sync_source(db_engine, source, settings, sleep=waits.append)
    assert result.error == "TimeoutError: try 2" and len(waits) == 2
    assert stored(db_engine) == 0


def test_a_retry_after_longer_than_the_cap_gives_up_this_run(db_engine, settings):
    waits = []
    long_pause = RetryableError("HTTP 429", retry_after=settings.sync_backoff_max_seconds + 1)
    result = sync_source(db_engine, FlakySource(["a"], [long_pause]), settings, sleep=waits.append)
    assert result.error and "429" in result.error and waits == []


def test_backoff_is_capped(settings):
    settings.sync_backoff_max_seconds = 5.0
    assert backoff_delay(10, settings, None, lambda: 1.0) == 5.0
    assert backoff_delay(1, settings, 9.0, lambda: 0.5) == 9.0
