"""``app.py replay``: a message history through the live pipeline and alert engine, in simulated
time, so a district can see which alerts its own past would have raised.

The history (the JSONL message format of DESIGN.md; bad lines are reported with their line
number and skipped) goes into a fresh temporary SQLite database through the same code as live:

- ingest (:func:`ingestion.runner.prepare_messages`: normalisation, language, sentiment and risk
  rules) and the insert-or-ignore upsert, each message when the simulated clock passes its
  ``received_at``;
- the worker's topic jobs (:class:`core.worker.TopicJobs`): risk rescoring by similarity and
  topic assignment whenever messages came in, and refits at simulated times: the first once
  ``warm_up`` of history is in, then every ``settings.refit_interval_hours``;
- the alert engine at simulated ``now``: :func:`alerts.engine.evaluate_alerts` every
  ``settings.alert_interval_seconds`` and :func:`alerts.engine.evaluate_risk` on the
  ``settings.risk_interval_seconds`` grid right after each urgent message, as the worker's jobs
  would run. Alerts and their outbox rows are written in the temporary database; nothing is
  ever sent and nothing sleeps.

Evaluations that could change nothing are skipped, so their outcome is the same as live's: an
evaluation runs when messages came in or topics were refitted since the last one, or when
:func:`alerts.engine.next_change` says time alone can change something (a new complete hour for
spikes, an open emerging alert, a repeat email due). Within an hour the spike signals are reused
until a refit rewrites the counts (``SpikeSnapshot``): spike tests see complete hours only.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pandas as pd
from sqlalchemy import Engine, func, select

from alerts.engine import (
    SpikeSnapshot,
    evaluate_alerts,
    evaluate_risk,
    next_change,
    school_calendar,
)
from alerts.routing import load_routes
from core.db import create_db_engine, migrate, read_session, write_connection
from core.messages import NewMessage, upsert_messages
from core.models import Alert, Message, Notification
from core.settings import Settings
from core.worker import TopicJobs
from ingestion.files import DEFAULT_SOURCE, read_jsonl_messages
from ingestion.runner import prepare_messages
from topics.embeddings import Embedder

WARM_UP = timedelta(days=7)  # history in before the first refit: a week has the weekly rhythm
WEEK = timedelta(weeks=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReplayError(ValueError):
    """A history that cannot be replayed; the message says why and what to do."""


@dataclass
class ReplayReport:
    """What a replay did: lines read, bad lines, simulated span, work done, alerts fired."""

    rows: int = 0
    messages: int = 0  # distinct messages replayed (a repeated source and id counts once)
    errors: list[tuple[int, str]] = field(default_factory=list)
    start: datetime | None = None  # simulated span
    end: datetime | None = None
    evaluations: int = 0  # evaluate_alerts runs (skipped ones not counted)
    risk_evaluations: int = 0
    refits: int = 0
    emails: int = 0  # outbox rows queued, never sent
    seconds: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def weeks(self) -> float:
        """The simulated span in weeks."""
        if self.start is None or self.end is None:
            return 0.0
        return (self.end - self.start) / WEEK

    def per_week(self, kind: str) -> float:
        """Alerts of ``kind`` fired per simulated week."""
        fired = sum(alert["kind"] == kind for alert in self.alerts)
        return fired / self.weeks if self.weeks else 0.0


def replay_file(
    path: Path,
    settings: Settings,
    embedder: Embedder,
    *,
    warm_up: timedelta = WARM_UP,
    on_progress: Callable[[int, datetime], None] | None = None,
) -> ReplayReport:
    """Replay the JSONL message history at ``path`` (see the module docstring).

    ``settings`` are the district's (sensitivity, calendar and routes files, intervals); their
    database is never touched. ``on_progress`` is called with the messages replayed so far and
    the simulated time. Raises :class:`ReplayError` when the file holds no message to replay,
    ``ValueError`` naming the file when the calendar or routes file is malformed.
    """
    started = time.perf_counter()
    report = ReplayReport()
    load_routes(settings)  # a malformed routes file stops the replay before any work
    history = read_history(path, settings, report)
    if not history:
        raise ReplayError(
            f"{path}: no message to replay ({len(report.errors)} bad lines): each line must be a "
            "JSON object with id, received_at and body (see the README's message files)"
        )
    with tempfile.TemporaryDirectory(prefix="pulse-replay-") as folder:
        database = f"sqlite:///{Path(folder) / 'replay.db'}"
        engine = create_db_engine(database)
        try:
            migrate(engine)
            simulation = _Simulation(
                engine,
                settings.model_copy(update={"database_url": database}),
                TopicJobs(engine, settings, models_dir=Path(folder) / "models"),
                embedder,
                report,
            )
            simulation.run(history, warm_up, on_progress)
            report.alerts = alert_records(engine)
            with read_session(engine) as session:
                report.messages = session.scalar(select(func.count(Message.id))) or 0
                report.emails = session.scalar(select(func.count(Notification.id))) or 0
        finally:
            engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


def read_history(path: Path, settings: Settings, report: ReplayReport) -> list[NewMessage]:
    """The file's messages, prepared as at ingest, in order of arrival (ties in file order);
    bad lines go to ``report.errors`` with their line number."""
    report.rows, raws, report.errors = read_jsonl_messages(path, settings.tz)
    messages = prepare_messages(raws, DEFAULT_SOURCE, settings)
    return sorted(messages, key=lambda message: message.received_at)


def alert_records(engine: Engine) -> list[dict[str, Any]]:
    """Every alert that fired, in order of firing, as DESIGN.md's replay output (message ids
    are the file's ``id``s; ``state`` is where the alert was at the end of the replay)."""
    with read_session(engine) as session:
        rows = session.scalars(
            select(Alert).where(Alert.fired_at.is_not(None)).order_by(Alert.fired_at, Alert.id)
        ).all()
        wanted = {i for row in rows for i in row.message_ids or []}
        external = dict(
            session.execute(
                select(Message.id, Message.external_id).where(Message.id.in_(wanted))
            ).all()
        )
    records = []
    for row in rows:
        details = row.details or {}
        records.append(
            {
                "kind": row.kind,
                "fingerprint": row.fingerprint,
                "fired_at": _iso(row.fired_at),
                "resolved_at": _iso(row.resolved_at),
                "severity": row.severity,
                "topic_id": row.topic_id,
                "topic_label": details.get("label") if row.kind in ("spike", "emerging") else None,
                "top_words": list(details.get("top_words", [])),
                "observed": row.observed,
                "expected": row.expected,
                "message_ids": [external[i] for i in row.message_ids or [] if i in external],
                "categories": list(details.get("categories", [])),
                "state": row.state,
            }
        )
    return records


def write_alerts(alerts: Sequence[dict[str, Any]], out: IO[str]) -> None:
    """The alerts as JSON lines."""
    for alert in alerts:
        out.write(json.dumps(alert, ensure_ascii=False) + "\n")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _ceil(moment: datetime, step: timedelta) -> datetime:
    """The first multiple of ``step`` (since the Unix epoch) at or after ``moment``."""
    steps = -((EPOCH - moment) // step)
    return EPOCH + steps * step


class _Simulation:
    """The worker's scheduler on a simulated clock (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        jobs: TopicJobs,
        embedder: Embedder,
        report: ReplayReport,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.jobs = jobs
        self.jobs.embedder = embedder
        self.report = report
        self.calendar = school_calendar(engine, settings)
        self.routes = load_routes(settings)
        self.interval = timedelta(seconds=settings.alert_interval_seconds)
        self.risk_interval = timedelta(seconds=settings.risk_interval_seconds)
        self.spikes: SpikeSnapshot | None = None
        self.changed = False  # data changed since the last evaluation
        self.due: datetime | None = None  # next_change after the last evaluation

    def run(
        self,
        history: Sequence[NewMessage],
        warm_up: timedelta,
        on_progress: Callable[[int, datetime], None] | None,
    ) -> None:
        """Replay ``history`` (in order of arrival) from its first message to the end of the
        hour of its last."""
        times = [message.received_at for message in history]
        start = times[0]
        last_hour = pd.Timestamp(times[-1]).floor("h").to_pydatetime()
        end = _ceil(last_hour + timedelta(hours=1), self.interval)
        self.report.start, self.report.end = start, end
        refit_at = start + warm_up
        done = 0
        for now, is_tick in self._stops(history, start, end):
            arrived = bisect.bisect_right(times, now, lo=done)
            fresh = arrived > done
            if fresh:
                stamped = [dataclasses.replace(m, ingested_at=now) for m in history[done:arrived]]
                with write_connection(self.engine) as conn:
                    upsert_messages(conn, stamped)
                done = arrived
            if is_tick and now >= refit_at:
                self.jobs.refit(now)
                self.report.refits += 1
                refit_at = now + timedelta(hours=self.settings.refit_interval_hours)
                self.spikes = None  # the refit rebuilt the counts
                fresh = True
            if fresh:
                self.jobs.assign()
                self.changed = True
            if not is_tick:
                evaluate_risk(self.engine, self.settings, now, routes=self.routes)
                self.report.risk_evaluations += 1
            elif self.changed or self.due is None or now >= self.due:
                self._evaluate(now)
            if on_progress is not None and is_tick:
                on_progress(done, now)

    def _evaluate(self, now: datetime) -> None:
        result = evaluate_alerts(
            self.engine,
            self.settings,
            now,
            calendar=self.calendar,
            routes=self.routes,
            spikes=self.spikes,
        )
        self.spikes = result.spikes
        self.changed = False
        self.due = next_change(self.engine, self.settings, now)
        self.report.evaluations += 1

    def _stops(
        self, history: Sequence[NewMessage], start: datetime, end: datetime
    ) -> Iterator[tuple[datetime, bool]]:
        """(time, is an alert tick) in order: the alert interval's ticks from ``start`` to
        ``end``, and a risk tick right after each urgent message (by the ingest rules)."""
        urgent = sorted(
            {_ceil(m.received_at, self.risk_interval) for m in history if m.risk_level == "urgent"}
        )
        tick = _ceil(start, self.interval)
        index = 0
        while tick <= end:
            while index < len(urgent) and urgent[index] < tick:
                yield urgent[index], False
                index += 1
            yield tick, True
            tick += self.interval
