"""Per-source health for the Sources view, and the source-down condition alerts are built on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_runner import ListSource

from core.queries import down_sources, source_health
from ingestion.runner import sync_source


class Clocked(ListSource):
    interval_seconds = 600


def test_health_moves_from_waiting_to_ok_failing_and_down(db_engine, settings, monkeypatch):
    assert source_health(db_engine, datetime.now(UTC), 3) == []
    sync_source(db_engine, Clocked(["a", "b"]), settings)
    (healthy,) = source_health(db_engine, datetime.now(UTC), 3)
    assert (healthy.name, healthy.kind, healthy.status) == ("list", "sms", "ok")
    assert (healthy.messages_total, healthy.fetched_total, healthy.interval_seconds) == (2, 2, 600)

    broken = Clocked(["a"], fail_with=ConnectionRefusedError("connection refused"))
    sync_source(db_engine, broken, settings, sleep=lambda _: None)
    soon = healthy.last_success_at + timedelta(minutes=5)
    (failing,) = source_health(db_engine, soon, 3)
    assert failing.status == "failing" and "connection refused" in failing.last_error
    assert failing.failures_total == 1 and down_sources(db_engine, soon, 3) == []

    later = healthy.last_success_at + timedelta(minutes=31)  # three 10-minute intervals
    (down,) = down_sources(db_engine, later, 3)
    assert down.name == "list" and down.consecutive_failures == 1

    sync_source(db_engine, Clocked(["a", "c"]), settings)
    (recovered,) = source_health(db_engine, later, 3)
    assert recovered.status == "ok" and recovered.failures_total == 1


def test_a_source_that_never_worked_is_down_after_n_failures(db_engine, settings):
    broken = Clocked([], fail_with=PermissionError("bad password"))
    statuses = []
    for _ in range(3):
        sync_source(db_engine, broken, settings)
        statuses.append(source_health(db_engine, datetime.now(UTC), 3)[0].status)
    assert statuses == ["failing", "failing", "down"]
