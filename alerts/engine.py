"""The alert engine: signals → an Alertmanager-style lifecycle → alerts and queued emails.

:func:`evaluate_alerts` gathers every signal at ``now`` — spikes (:mod:`alerts.spikes` over
``topic_counts``), emerging topics and groups of unassigned messages (:mod:`alerts.emerging`),
sources that are down (:func:`core.queries.down_sources`) and urgent risk messages — and runs
the lifecycle; :func:`evaluate_risk` does the same for risk messages only, cheaply, so the
worker can run it every few seconds. Both take ``now`` explicitly (replay drives them with a
simulated clock) and never send mail: they write alerts and outbox rows in one transaction,
and :func:`alerts.mailer.send_pending` sends them.

One ``alerts`` row per episode, keyed by fingerprint (``spike:topic:17``,
``emerging:topic:9``, ``emerging:cluster:<message id>``, ``source_down:<name>``,
``risk:message:<id>``):

- **pending → firing**: a signal fires after it persisted ``alert_pending_evaluations`` more
  evaluations, or at once when it is ``immediate`` (a very strong spike, a CUSUM alarm, a
  source down, an urgent message). A pending signal that goes away leaves no row.
- **repeat**: a firing alert nobody acknowledged is emailed again every ``alert_repeat_hours``.
- **resolved**: after ``alert_resolve_evaluations`` evaluations without its signal (a source
  down or a risk message: at once, when the source recovers or the message was reviewed),
  with a "has subsided" email when ``alert_resolved_email`` is on.
- **acknowledged** (:func:`acknowledge`, audited): no more repeats; it still resolves.
- **silenced**: a silence (:func:`add_silence`) matching its kind and/or topic, or a known
  calendar event with ``mute_alerts`` on the day of a spike or emerging alert, keeps it
  recorded but emails nobody; when the silence ends and the signal is still there it fires.
  Spikes and emerging alerts on a day with a known event carry the events' names in
  ``details["expected_events"]``.
- **grouping and routing**: recipients come from the routing groups (:mod:`alerts.routing`);
  the alerts notified in one evaluation go out as one email per person (a person in two
  groups gets one email with both groups' alerts); risk alerts carry message text only for
  people in a group ``authorised`` to read it, a link for the others.

Evaluations are counted per alert: a spike's evaluation counts once per complete hour of data
(the detector only sees complete hours), so evaluating every few minutes keeps the hourly
pending and resolve periods the detector was calibrated with in ``benchmarks/bench_alerts.py``
(which runs :class:`PendingRule`); other kinds count every evaluation. Each email's dedup key
names its alerts and their notification numbers, so running the same evaluation again (a
crash after the commit, a second worker) queues nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from alerts.calendar import KnownEvent, SchoolCalendar, load_calendar
from alerts.emerging import cluster_signals, new_topic_signals
from alerts.outbox import enqueue
from alerts.render import AlertSummary, render_alert_email, sample_text
from alerts.routing import Routes, load_routes
from alerts.spikes import HOURS_PER_WEEK, SpikeConfig, SpikeSignal, evaluate, load_counts
from core.db import read_session, write_session
from core.models import (
    ALERT_KINDS,
    Alert,
    AuditLog,
    CalendarEvent,
    Embedding,
    Message,
    Silence,
    Topic,
    TopicCount,
)
from core.queries import down_sources
from core.settings import PROJECT_ROOT, Settings
from topics.assign import active_centroids
from topics.embeddings import from_bytes

log = logging.getLogger(__name__)

OPEN_STATES = ("pending", "firing", "acknowledged", "silenced")
SEVERITY = {"spike": "warning", "emerging": "info", "source_down": "warning", "risk": "critical"}
RISK_LOOKBACK = timedelta(days=2)  # older urgent messages (an imported history) never alert
EMERGING_WINDOW = timedelta(hours=24)
MAX_MESSAGE_IDS = 50  # messages an alert lists
SAMPLES = 3
SERIES_HOURS = 72  # the email's sparkline
TOP_WORDS = 8
LABEL_CHARS = 60
ALERTS_LOCK_ID = 7_240_118  # PostgreSQL advisory lock: one evaluation at a time
_nobody_logged = False


class AlertError(ValueError):
    """A request about alerts, silences or calendar events that cannot be done as asked."""


@dataclass(frozen=True)
class RuleState:
    """Where one fingerprint is in :class:`PendingRule`'s lifecycle."""

    firing: bool = False
    streak: int = 0  # consecutive counted evaluations with the signal, while not firing
    absent: int = 0  # consecutive counted evaluations without it, while firing


@dataclass(frozen=True)
class PendingRule:
    """Alertmanager-style: an alert fires when its signal is present at ``for_evaluations`` + 1
    consecutive evaluations, or at once for a signal marked ``immediate`` when ``immediate`` is
    on; it resolves after ``resolve_after`` evaluations without its signal."""

    for_evaluations: int = 1
    immediate: bool = True
    resolve_after: int = 3

    def advance(
        self, state: RuleState, present: bool, immediate: bool = False
    ) -> tuple[RuleState, str | None]:
        """One evaluation: the new state and what happened (``"fire"``, ``"resolve"``, None)."""
        if state.firing:
            absent = 0 if present else state.absent + 1
            if absent >= self.resolve_after:
                return RuleState(), "resolve"
            return RuleState(firing=True, absent=absent), None
        streak = state.streak + 1 if present else 0
        if present and ((self.immediate and immediate) or streak > self.for_evaluations):
            return RuleState(firing=True), "fire"
        return RuleState(streak=streak), None


AT_ONCE = PendingRule(for_evaluations=0, immediate=True, resolve_after=1)


def rules(settings: Settings) -> dict[str, PendingRule]:
    """The lifecycle rule of each alert kind."""
    counted = PendingRule(
        for_evaluations=settings.alert_pending_evaluations,
        resolve_after=settings.alert_resolve_evaluations,
    )
    return {"spike": counted, "emerging": counted, "source_down": AT_ONCE, "risk": AT_ONCE}


@dataclass(frozen=True)
class Signal:
    """Evidence for one fingerprint at one evaluation."""

    kind: str
    fingerprint: str
    tick: datetime  # the data time this evaluation counts as (see the module docstring)
    window_start: datetime
    window_end: datetime
    immediate: bool = False
    topic_id: int | None = None
    observed: float | None = None
    expected: float | None = None
    p_value: float | None = None
    message_ids: tuple[int, ...] = ()
    label: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpikeSnapshot:
    """The spike signals of one hour of data (``tick``), reusable by later evaluations in that
    hour: spike tests see complete hours only."""

    tick: datetime
    signals: tuple[Signal, ...]


@dataclass
class EvaluationResult:
    """What one evaluation did (alert ids)."""

    signals: int = 0
    fired: list[int] = field(default_factory=list)  # started firing (or silenced at firing)
    silenced: list[int] = field(default_factory=list)  # of those, muted: no email
    resolved: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    pending: int = 0  # alerts still pending afterwards
    emails: int = 0  # notifications queued
    spikes: SpikeSnapshot | None = None  # the spike signals it used (evaluate_alerts)


@dataclass(frozen=True)
class _Notice:
    alert: Alert
    event: str  # fire | repeat | resolved
    number: int  # the alert's n-th notification


def tick_for(kind: str, now: datetime) -> datetime:
    """The data time an evaluation at ``now`` counts as: a spike's last complete hour, else now."""
    return pd.Timestamp(now).floor("h").to_pydatetime() if kind == "spike" else now


# Evaluation


def evaluate_alerts(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    calendar: SchoolCalendar | None = None,
    routes: Routes | None = None,
    spikes: SpikeSnapshot | None = None,
) -> EvaluationResult:
    """Evaluate every alert kind at ``now``; alerts and emails are written in one transaction.

    ``calendar`` defaults to :func:`school_calendar`, ``routes`` to
    :func:`alerts.routing.load_routes`. ``spikes``: an earlier evaluation's spike signals
    (``EvaluationResult.spikes``), reused when they are of the same hour of data; pass them
    only when no complete hour's counts changed since (replay does, between refits). Sends
    nothing: the outbox does.
    """
    calendar = calendar or school_calendar(engine, settings)
    routes = routes or load_routes(settings)
    config = SpikeConfig()
    span = timedelta(hours=config.history_weeks * HOURS_PER_WEEK + config.guard_hours + 1)
    counts = load_counts(engine, now - span, now)
    tick = tick_for("spike", now)
    if spikes is None or spikes.tick != tick:
        spikes = SpikeSnapshot(tick, tuple(spike_signals(counts, now, calendar, settings, config)))
    signals = list(spikes.signals)
    signals += emerging_signals(engine, settings, counts, now)
    signals += source_down_signals(engine, settings, now)
    signals += risk_signals(engine, now)
    result = _apply(engine, settings, now, signals, ALERT_KINDS, calendar, routes)
    result.spikes = spikes
    return result


def evaluate_risk(
    engine: Engine, settings: Settings, now: datetime, *, routes: Routes | None = None
) -> EvaluationResult:
    """Only risk alerts: new urgent messages fire at once, reviewed ones resolve. Cheap."""
    signals = risk_signals(engine, now)
    routes = routes or load_routes(settings)
    return _apply(engine, settings, now, signals, ("risk",), SchoolCalendar(), routes)


def next_change(engine: Engine, settings: Settings, now: datetime) -> datetime:
    """When, after an evaluation at ``now``, another evaluation could next change anything if
    no data change in between (messages, assignments, refits, reviews, acknowledgements, source
    syncs are the caller's to notice): ``now`` itself — the very next evaluation — while an
    emerging or source-down alert is open (each of their evaluations counts), else the earliest
    of the next complete hour (spikes), a firing alert's next repeat, a silence's start or end
    and, while a spike alert is firing or silenced, the next local midnight (calendar events
    mute by day)."""
    with read_session(engine) as session:
        rows = session.execute(
            select(Alert.kind, Alert.state, Alert.details).where(Alert.state.in_(OPEN_STATES))
        ).all()
        boundaries = [
            session.scalar(select(func.min(column)).where(column > now))
            for column in (Silence.starts_at, Silence.ends_at)
        ]
    if any(row.kind in ("emerging", "source_down") for row in rows):
        return now
    moments = [tick_for("spike", now) + timedelta(hours=1)]
    moments += [moment for moment in boundaries if moment is not None]
    repeat = timedelta(hours=settings.alert_repeat_hours)
    for row in rows:
        notified = (row.details or {}).get("notified_at")
        if row.state == "firing" and notified is not None:
            moments.append(datetime.fromisoformat(notified) + repeat)
    if any(row.kind == "spike" and row.state in ("firing", "silenced") for row in rows):
        tomorrow = now.astimezone(settings.tz).date() + timedelta(days=1)
        moments.append(datetime.combine(tomorrow, datetime.min.time(), settings.tz))
    return min(moments)


def spike_signals(
    counts: pd.DataFrame,
    now: datetime,
    calendar: SchoolCalendar,
    settings: Settings,
    config: SpikeConfig | None = None,
) -> list[Signal]:
    """One signal per spiking topic: its strongest test (lowest p-value) at ``now``."""
    found = evaluate(counts, now, calendar, settings.alert_sensitivity, settings.tz, config)
    end = tick_for("spike", now)
    best: dict[int, SpikeSignal] = {}
    immediate: dict[int, bool] = {}
    for signal in found:
        if signal.topic_id not in best or signal.p_value < best[signal.topic_id].p_value:
            best[signal.topic_id] = signal
        immediate[signal.topic_id] = immediate.get(signal.topic_id, False) or signal.immediate
    return [
        Signal(
            kind="spike",
            fingerprint=f"spike:topic:{topic}",
            tick=end,
            window_start=end - timedelta(hours=s.window),
            window_end=end,
            immediate=immediate[topic],
            topic_id=topic,
            observed=s.observed,
            expected=round(s.expected, 2),
            p_value=s.p_value,
            details={
                "window_hours": s.window,
                "detector": s.kind,
                "ratio": round(s.ratio, 2),
                "share_based": s.share_based,
            },
        )
        for topic, s in sorted(best.items())
    ]


def emerging_signals(
    engine: Engine, settings: Settings, counts: pd.DataFrame, now: datetime
) -> list[Signal]:
    """New topics whose first messages arrived in the last 24 h and reached
    ``emerging_min_messages``, and dense groups of that many unassigned messages."""
    start = now - EMERGING_WINDOW
    found = []
    seen = counts[counts["n"] > 0]
    if not seen.empty:
        # A topic is new when its first message is recent, not when a refit made it: the first
        # refit of an install creates every topic at once.
        first = seen.groupby("topic_id")["bucket_start"].min()
        first_seen = {int(t): moment.to_pydatetime() for t, moment in first.items()}
        for s in new_topic_signals(first_seen, counts, now, settings.emerging_min_messages):
            found.append(
                Signal(
                    kind="emerging",
                    fingerprint=s.fingerprint,
                    tick=now,
                    window_start=start,
                    window_end=now,
                    topic_id=s.topic_id,
                    observed=float(s.count),
                    details={"source": "new_topic"},
                )
            )
    ids, vectors, received = _unassigned_embeddings(engine, start, now)
    if len(ids) >= settings.emerging_min_messages:
        topic_ids, centroids = active_centroids(engine, vectors.shape[1])
        reference = centroids.mean(axis=0) if len(topic_ids) else None
        clusters = cluster_signals(
            ids,
            vectors,
            received,
            now,
            reference,
            settings.emerging_min_messages,
            settings.emerging_similarity,
            EMERGING_WINDOW,
        )
        with read_session(engine) as session:
            bodies = _bodies(session, [c.message_ids[0] for c in clusters])
        for c in clusters:
            label = sample_text(bodies.get(c.message_ids[0], ""))
            if len(label) > LABEL_CHARS:
                label = label[: LABEL_CHARS - 1].rstrip() + "…"
            found.append(
                Signal(
                    kind="emerging",
                    fingerprint=c.fingerprint,
                    tick=now,
                    window_start=start,
                    window_end=now,
                    observed=float(c.count),
                    message_ids=c.message_ids[:MAX_MESSAGE_IDS],
                    label=f"“{label}” and similar",
                    details={"source": "cluster"},
                )
            )
    return found


def source_down_signals(engine: Engine, settings: Settings, now: datetime) -> list[Signal]:
    """A signal per source that is down (no success for ``source_down_intervals`` intervals)."""
    return [
        Signal(
            kind="source_down",
            fingerprint=f"source_down:{health.name}",
            tick=now,
            window_start=health.last_success_at or health.last_attempt_at or now,
            window_end=now,
            immediate=True,
            label=health.name,
            details={
                "last_error": health.last_error,
                "consecutive_failures": health.consecutive_failures,
            },
        )
        for health in down_sources(engine, now, settings.source_down_intervals)
    ]


def risk_signals(engine: Engine, now: datetime) -> list[Signal]:
    """A signal per urgent message nobody has reviewed: received in the last two days and not
    alerted yet, or the subject of an open risk alert. A message alerts once, ever."""
    with read_session(engine) as session:
        open_ids = _risk_message_ids(
            session.scalars(
                select(Alert.fingerprint).where(Alert.kind == "risk", Alert.state.in_(OPEN_STATES))
            )
        )
        urgent = (Message.risk_level == "urgent", Message.risk_review.is_(None))
        recent = Message.received_at > now - RISK_LOOKBACK, Message.received_at <= now
        rows = session.execute(
            select(Message.id, Message.received_at, Message.risk_categories)
            .where(*urgent)
            .where((Message.id.in_(open_ids)) | (recent[0] & recent[1]))
            .order_by(Message.id)
        ).all()
        candidates = [f"risk:message:{row.id}" for row in rows if row.id not in open_ids]
        closed = _risk_message_ids(
            session.scalars(
                select(Alert.fingerprint).where(
                    Alert.fingerprint.in_(candidates), Alert.state.not_in(OPEN_STATES)
                )
            )
        )
    return [
        Signal(
            kind="risk",
            fingerprint=f"risk:message:{row.id}",
            tick=now,
            window_start=row.received_at,
            window_end=max(now, row.received_at),
            immediate=True,
            observed=1.0,
            message_ids=(row.id,),
            label=_risk_label(row.risk_categories),
            details={"categories": list(row.risk_categories or [])},
        )
        for row in rows
        if row.id not in closed
    ]


# The lifecycle


def _apply(
    engine: Engine,
    settings: Settings,
    now: datetime,
    signals: Sequence[Signal],
    kinds: Sequence[str],
    calendar: SchoolCalendar,
    routes: Routes,
) -> EvaluationResult:
    """Run the lifecycle of ``kinds`` on ``signals`` and queue the emails, in one transaction."""
    result = EvaluationResult(signals=len(signals))
    kind_rules = rules(settings)
    with write_session(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ALERTS_LOCK_ID})
        rows = session.scalars(
            select(Alert)
            .where(Alert.kind.in_(kinds), Alert.state.in_(OPEN_STATES))
            .order_by(Alert.id)
        ).all()
        open_alerts = {row.fingerprint: row for row in rows}
        present = {s.fingerprint: s for s in _follow_clusters(signals, rows)}
        silences = session.scalars(
            select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now)
        ).all()
        events = calendar.events_on(now.astimezone(settings.tz).date())
        notices: list[_Notice] = []
        for fingerprint in sorted(set(open_alerts) | set(present)):
            signal = present.get(fingerprint)
            row = open_alerts.get(fingerprint)
            if row is None:
                assert signal is not None
                row = _new_alert(session, signal, now)
            event = _step(session, row, signal, kind_rules[row.kind], now)
            if event == "deleted":
                continue
            if event == "fire":
                result.fired.append(row.id)
                _describe(session, row, signal, events)
            elif event == "resolve":
                result.resolved.append(row.id)
                if settings.alert_resolved_email and row.details.get("notified_at"):
                    notices.append(_notice(row, "resolved", now))
            notice = _mute_and_repeat(row, event == "fire", silences, events, settings, now)
            if notice == "silenced":
                result.silenced.append(row.id)
            elif notice is not None:
                notices.append(_notice(row, notice, now))
                if notice == "repeat":
                    result.repeated.append(row.id)
            if row.state == "pending":
                result.pending += 1
        session.flush()
        result.emails = _queue_emails(session, notices, routes, settings, now)
    return result


def _new_alert(session: Session, signal: Signal, now: datetime) -> Alert:
    row = Alert(
        kind=signal.kind,
        fingerprint=signal.fingerprint,
        state="pending",
        severity=SEVERITY[signal.kind],
        topic_id=signal.topic_id,
        first_seen=now,
        details={},
    )
    session.add(row)
    session.flush()
    return row


def _step(
    session: Session, row: Alert, signal: Signal | None, rule: PendingRule, now: datetime
) -> str | None:
    """Advance ``row`` by one counted evaluation (if this one counts); the rule's event, or
    ``"deleted"`` for a pending alert whose signal went away."""
    tick = signal.tick if signal is not None else tick_for(row.kind, now)
    if row.last_evaluated is not None and tick <= row.last_evaluated:
        return None  # the same data again (another run of this evaluation)
    details = dict(row.details or {})
    state = RuleState(row.state != "pending", details.get("streak", 0), details.get("absent", 0))
    immediate = signal is not None and signal.immediate
    new, event = rule.advance(state, signal is not None, immediate)
    if row.state == "pending" and not new.firing and new.streak == 0:
        session.delete(row)
        return "deleted"
    row.last_evaluated = tick
    if signal is not None and row.state == "pending":  # the values it fires with
        row.observed, row.expected, row.p_value = signal.observed, signal.expected, signal.p_value
        row.message_ids = list(signal.message_ids) or None
        details |= signal.details | {
            "window_start": signal.window_start.isoformat(),
            "window_end": signal.window_end.isoformat(),
        }
        if signal.label is not None:
            details["label"] = signal.label
    details |= {"streak": new.streak, "absent": new.absent}
    if event == "fire":
        row.state, row.fired_at = "firing", now
    elif event == "resolve":
        row.state, row.resolved_at = "resolved", now
    row.details = details
    return event


def _describe(
    session: Session, row: Alert, signal: Signal | None, events: Sequence[KnownEvent]
) -> None:
    """At firing: the topic's label and words, the messages behind it, the known events."""
    details = dict(row.details or {})
    if row.topic_id is not None:
        topic = session.get(Topic, row.topic_id)
        if topic is not None:
            details["label"] = topic.display_label
            details["top_words"] = [word for word, _ in (topic.words or [])[:TOP_WORDS]]
            details["seed"] = topic.seed
        if not row.message_ids and signal is not None:
            row.message_ids = list(
                session.scalars(
                    select(Message.id)
                    .where(
                        Message.topic_id == row.topic_id,
                        Message.received_at >= signal.window_start,
                        Message.received_at < signal.window_end,
                    )
                    .order_by(Message.received_at.desc(), Message.id.desc())
                    .limit(MAX_MESSAGE_IDS)
                )
            )
    if row.kind in ("spike", "emerging") and events:
        details["expected_events"] = [event.name for event in events]
    details.setdefault("label", row.fingerprint)
    row.details = details


def _mute_and_repeat(
    row: Alert,
    fired: bool,
    silences: Sequence[Silence],
    events: Sequence[KnownEvent],
    settings: Settings,
    now: datetime,
) -> str | None:
    """Silence or unsilence a firing alert; the notification due now (``fire`` or
    ``repeat``), or ``"silenced"`` when it was muted as it fired."""
    if row.state not in ("firing", "silenced"):
        return None
    reason = _muted_by(row, silences, events)
    details = dict(row.details or {})
    if reason is not None:
        if row.state == "firing":
            row.state = "silenced"
            row.details = details | {"silenced_by": reason}
            return "silenced" if fired else None
        return None
    if row.state == "silenced":
        row.state = "firing"
        row.details = {k: v for k, v in details.items() if k != "silenced_by"}
        return "fire"
    if fired:
        return "fire"
    notified = details.get("notified_at")
    repeat = timedelta(hours=settings.alert_repeat_hours)
    if notified is not None and now - datetime.fromisoformat(notified) >= repeat:
        return "repeat"
    return None


def _muted_by(row: Alert, silences: Sequence[Silence], events: Sequence[KnownEvent]) -> str | None:
    for silence in silences:
        if silence.kind in (None, row.kind) and silence.topic_id in (None, row.topic_id):
            return f"silence {silence.id}" + (f": {silence.comment}" if silence.comment else "")
    if row.kind in ("spike", "emerging"):
        for event in events:
            if event.mute_alerts:
                return f"calendar event {event.name!r}"
    return None


def _notice(row: Alert, event: str, now: datetime) -> _Notice:
    details = dict(row.details or {})
    number = details.get("notifications", 0) + 1
    row.details = details | {"notifications": number, "notified_at": now.isoformat()}
    return _Notice(row, event, number)


def _follow_clusters(signals: Sequence[Signal], rows: Iterable[Alert]) -> list[Signal]:
    """A group of unassigned messages keeps its open alert while it changes: a cluster signal
    sharing messages with an open cluster alert takes that alert's fingerprint."""
    clusters = [
        row for row in rows if row.fingerprint.startswith("emerging:cluster:") and row.message_ids
    ]
    taken = {s.fingerprint for s in signals}
    followed = []
    for signal in signals:
        if signal.fingerprint.startswith("emerging:cluster:"):
            for row in clusters:
                if row.fingerprint not in taken and set(row.message_ids) & set(signal.message_ids):
                    signal = dataclasses.replace(signal, fingerprint=row.fingerprint)
                    taken.add(row.fingerprint)
                    break
        followed.append(signal)
    return followed


# Emails


def _queue_emails(
    session: Session,
    notices: Sequence[_Notice],
    routes: Routes,
    settings: Settings,
    now: datetime,
) -> int:
    """One email per person for the notices of this evaluation (people who get the same
    alerts share one rendering); how many were queued. A person in several groups that take an
    alert reads its message text when any of those groups is authorised."""
    per_person: dict[str, dict[int, tuple[_Notice, bool]]] = {}
    spelling: dict[str, str] = {}
    for notice in notices:
        row = notice.alert
        details = row.details or {}
        groups = routes.route(row.kind, row.topic_id, details.get("seed"), details.get("label"))
        if not groups:
            _log_nobody(row)
        for group in groups:
            for recipient in group.recipients:
                person = spelling.setdefault(recipient.lower(), recipient)
                taken = per_person.setdefault(person, {})
                authorised = group.authorised or taken.get(row.id, (notice, False))[1]
                taken[row.id] = (notice, authorised)
    bundles: dict[tuple[tuple[int, bool], ...], list[str]] = {}
    for person, taken in per_person.items():
        key = tuple(sorted((alert_id, authorised) for alert_id, (_, authorised) in taken.items()))
        bundles.setdefault(key, []).append(person)
    by_id = {notice.alert.id: notice for notice in notices}
    order = {"critical": 0, "warning": 1, "info": 2}
    queued = 0
    for bundle, people in bundles.items():
        items = sorted(bundle, key=lambda item: (order.get(by_id[item[0]].alert.severity, 3), item))
        summaries = [
            _summary(session, by_id[alert_id], authorised) for alert_id, authorised in items
        ]
        email = render_alert_email(summaries, settings)
        key = "alerts:" + ",".join(f"{i}.{by_id[i].number}" for i, _ in items)
        queued += enqueue(
            session,
            key,
            people,
            email.subject,
            email.text,
            email.html,
            alert_id=items[0][0],
            now=now,
        )
    return queued


def _summary(session: Session, notice: _Notice, authorised: bool) -> AlertSummary:
    """What the email says about one alert; risk alerts carry text only for ``authorised``."""
    row = notice.alert
    link_only = row.kind == "risk" and not authorised
    details = row.details or {}
    label = details.get("label", row.fingerprint)
    start = datetime.fromisoformat(details.get("window_start", row.first_seen.isoformat()))
    end = datetime.fromisoformat(details.get("window_end", row.first_seen.isoformat()))
    summary = AlertSummary(
        kind=row.kind,
        label=label,
        window_start=start,
        window_end=end,
        topic_id=row.topic_id,
        top_words=list(details.get("top_words", [])),
        observed=row.observed,
        expected=row.expected,
        p_value=row.p_value,
        link_only=link_only,
    )
    if row.kind == "risk" and row.message_ids:
        summary.path = f"/risk?message={row.message_ids[0]}"
    if notice.event == "resolved":
        summary.label = f"{label} has subsided"
        summary.observed = summary.expected = summary.p_value = None
        return summary
    if notice.event == "repeat":
        summary.label = f"{label} (still active)"
    if not link_only:
        bodies = _bodies(session, (row.message_ids or [])[: SAMPLES * 3])
        distinct = dict.fromkeys(" ".join(body.split()) for body in bodies.values() if body)
        summary.samples = list(distinct)[:SAMPLES]
    if row.topic_id is not None:
        summary.series = _series(session, row.topic_id, end)
    return summary


def _series(session: Session, topic_id: int, end: datetime) -> list[float]:
    """The topic's hourly counts over the ``SERIES_HOURS`` before ``end``, oldest first."""
    hour = pd.Timestamp(end).floor("h")
    start = hour - pd.Timedelta(hours=SERIES_HOURS)
    rows = session.execute(
        select(TopicCount.bucket_start, func.sum(TopicCount.n))
        .where(
            TopicCount.topic_id == topic_id,
            TopicCount.bucket_start >= start.to_pydatetime(),
            TopicCount.bucket_start < hour.to_pydatetime(),
        )
        .group_by(TopicCount.bucket_start)
    ).all()
    series = np.zeros(SERIES_HOURS)
    for bucket, n in rows:
        series[int((pd.Timestamp(bucket) - start) // pd.Timedelta(hours=1))] = n
    return series.tolist()


def _log_nobody(row: Alert) -> None:
    global _nobody_logged
    if not _nobody_logged:
        _nobody_logged = True
        log.warning(
            "alert %s (%s) has no recipients: alerts are recorded but not emailed; set "
            "PULSE_ALERT_RECIPIENTS or write a routes file (see alerts.example.toml)",
            row.id,
            row.fingerprint,
        )


# Acknowledgements, silences, calendar events


def acknowledge(engine: Engine, alert_id: int, username: str, now: datetime) -> Alert:
    """Acknowledge a firing (or silenced) alert: no more repeats; audited."""
    if not username.strip():
        raise AlertError("acknowledging needs the name of the person who does it")
    with write_session(engine) as session:
        row = session.get(Alert, alert_id)
        if row is None:
            raise AlertError(f"no alert {alert_id}: see `app.py alerts list`")
        if row.state not in ("firing", "silenced"):
            raise AlertError(
                f"alert {alert_id} is {row.state}: only firing or silenced alerts can be "
                "acknowledged"
            )
        row.state = "acknowledged"
        row.acknowledged_by, row.acknowledged_at = username.strip(), now
        session.add(
            AuditLog(
                at=now,
                username=username.strip(),
                action="alert_acknowledge",
                target_type="alert",
                target_id=str(alert_id),
                details={"fingerprint": row.fingerprint},
            )
        )
        return row


def add_silence(
    engine: Engine,
    kind: str | None,
    topic_id: int | None,
    starts: datetime,
    ends: datetime,
    by: str,
    comment: str | None = None,
) -> int:
    """Mute alerts of ``kind`` and/or about ``topic_id`` from ``starts`` to ``ends``; audited.
    Returns the silence's id."""
    if kind is None and topic_id is None:
        raise AlertError("a silence needs a kind or a topic (or both): it never mutes everything")
    if kind is not None and kind not in ALERT_KINDS:
        raise AlertError(f"unknown alert kind {kind!r}: use one of {', '.join(ALERT_KINDS)}")
    if ends <= starts:
        raise AlertError(f"a silence must end after it starts ({starts} → {ends})")
    if not by.strip():
        raise AlertError("a silence needs the name of the person who sets it")
    with write_session(engine) as session:
        if topic_id is not None and session.get(Topic, topic_id) is None:
            raise AlertError(f"no topic {topic_id}: see `app.py topics --all`")
        silence = Silence(
            kind=kind,
            topic_id=topic_id,
            starts_at=starts,
            ends_at=ends,
            created_by=by.strip(),
            comment=comment or None,
        )
        session.add(silence)
        session.flush()
        session.add(
            AuditLog(
                at=starts,
                username=by.strip(),
                action="silence_add",
                target_type="silence",
                target_id=str(silence.id),
                details={"kind": kind, "topic_id": topic_id, "ends_at": ends.isoformat()},
            )
        )
        return silence.id


def expire_silence(engine: Engine, silence_id: int, now: datetime, by: str) -> None:
    """End a silence now (alerts it muted fire at the next evaluation if still there)."""
    with write_session(engine) as session:
        silence = session.get(Silence, silence_id)
        if silence is None:
            raise AlertError(f"no silence {silence_id}")
        silence.ends_at = min(silence.ends_at, now)
        session.add(
            AuditLog(
                at=now,
                username=by,
                action="silence_expire",
                target_type="silence",
                target_id=str(silence_id),
            )
        )


def add_calendar_event(
    engine: Engine,
    name: str,
    kind: str,
    starts_on: date,
    ends_on: date | None = None,
    school: str | None = None,
    mute_alerts: bool = False,
) -> int:
    """Record a known event (as the calendar file does); returns its id."""
    if not name.strip():
        raise AlertError("a calendar event needs a name")
    ends_on = ends_on or starts_on
    if ends_on < starts_on:
        raise AlertError(f"calendar event {name!r}: ends {ends_on}, before it starts {starts_on}")
    with write_session(engine) as session:
        event = CalendarEvent(
            name=name.strip(),
            kind=kind or "event",
            starts_on=starts_on,
            ends_on=ends_on,
            school=school,
            mute_alerts=mute_alerts,
        )
        session.add(event)
        session.flush()
        return event.id


def school_calendar(engine: Engine, settings: Settings) -> SchoolCalendar:
    """The calendar file (``settings.calendar_file``, relative to the project folder) with the
    events of the ``calendar_events`` table added."""
    path = settings.calendar_file
    base = load_calendar(path if path.is_absolute() else PROJECT_ROOT / path)
    with read_session(engine) as session:
        rows = session.scalars(select(CalendarEvent).order_by(CalendarEvent.starts_on)).all()
    stored = tuple(
        KnownEvent(row.name, row.kind, row.starts_on, row.ends_on, row.school, row.mute_alerts)
        for row in rows
    )
    return dataclasses.replace(base, events=base.events + stored)


def list_alerts(engine: Engine, include_closed: bool = False, limit: int = 200) -> list[Alert]:
    """Alerts, newest first: the open ones (pending, firing, acknowledged, silenced), or all."""
    query = select(Alert).order_by(Alert.first_seen.desc(), Alert.id.desc()).limit(limit)
    if not include_closed:
        query = query.where(Alert.state.in_(OPEN_STATES))
    with read_session(engine) as session:
        return list(session.scalars(query))


# Helpers


def _unassigned_embeddings(
    engine: Engine, start: datetime, now: datetime
) -> tuple[list[int], np.ndarray, list[datetime]]:
    """Messages received in (start, now] that the assignment left without a topic, with their
    embeddings of the model most of them were embedded with (the current one)."""
    with read_session(engine) as session:
        rows = session.execute(
            select(Message.id, Message.received_at, Embedding.model_key, Embedding.vector)
            .join(Embedding, Embedding.message_id == Message.id)
            .where(
                Message.topic_id.is_(None),
                Message.topic_score.is_not(None),
                Message.received_at > start,
                Message.received_at <= now,
            )
            .order_by(Message.received_at, Message.id)
        ).all()
    if not rows:
        return [], np.zeros((0, 0)), []
    keys = pd.Series([row.model_key for row in rows])
    key = keys.value_counts().index[0]
    rows = [row for row in rows if row.model_key == key]
    vectors = np.vstack([from_bytes(row.vector) for row in rows])
    return [row.id for row in rows], vectors, [row.received_at for row in rows]


def _bodies(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """Message bodies by id, in the order of ``ids``."""
    if not ids:
        return {}
    rows = session.execute(select(Message.id, Message.body).where(Message.id.in_(list(ids))))
    found = {message_id: body for message_id, body in rows}
    return {i: found[i] for i in ids if i in found}


def _risk_message_ids(fingerprints: Iterable[str]) -> set[int]:
    return {int(f.rsplit(":", 1)[1]) for f in fingerprints}


def _risk_label(categories: Sequence[str] | None) -> str:
    names = [c.replace("_", " ") for c in categories or []]
    return ", ".join(names) if names else "urgent message"
