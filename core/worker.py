"""The background worker: a sync job per configured source, each at its own interval, and the
topic jobs (assign new messages every minute, refit every few hours), and the alert jobs
(evaluate alerts, alert on urgent risk messages, send queued emails), and the daily retention
purge."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, func, select

from core.db import read_session
from core.models import Topic, utcnow
from core.retention import purge_raw
from core.settings import Settings
from ingestion.base import Connector
from ingestion.demo import DemoSource
from ingestion.runner import sync_source
from ingestion.sources import load_sources
from topics import model_store
from topics.assign import AssignResult, assign_new_messages
from topics.embeddings import Embedder, load_embedder
from topics.risk_review import rescore_risk

if TYPE_CHECKING:
    from topics.refit import RefitResult

log = logging.getLogger(__name__)
FIRST_REFIT_DELAY = timedelta(seconds=20)  # lets a fresh install's first syncs land first


def configured_sources(settings: Settings, demo: bool) -> list[Connector]:
    """The connectors this worker pulls: those in the sources file, and the demo source if on."""
    sources = list(load_sources(settings).sources)
    if demo:
        sources.append(DemoSource(settings))
    return sources


def schedule_jobs(
    scheduler: BaseScheduler, engine: Engine, settings: Settings, sources: list[Connector]
) -> None:
    """Add a sync job per source; a slow sync is never run twice at once, missed runs coalesce."""
    for connector in sources:
        scheduler.add_job(
            sync_source,
            "interval",
            seconds=connector.interval_seconds,
            args=[engine, connector, settings],
            id=f"sync:{connector.name}",
            name=f"sync {connector.name}",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )


class TopicJobs:
    """The worker's topic work, sharing one embedder (loaded on first use); fitted models are
    saved under ``models_dir``."""

    def __init__(
        self, engine: Engine, settings: Settings, models_dir: Path = model_store.MODELS_DIR
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.models_dir = models_dir

    @cached_property
    def embedder(self) -> Embedder:
        """The configured embedding model."""
        return load_embedder(self.settings.embedding_model, self.settings.embedding_threads)

    def assign(self) -> AssignResult:
        """Embed new messages, rescore their risk by similarity, and assign them to the nearest
        topic (or leave them emerging); both share the cached embeddings."""
        rescore_risk(self.engine, self.embedder)
        result = assign_new_messages(self.engine, self.settings, self.embedder)
        if result.scored:
            log.info("assigned %d of %d new messages to topics", result.assigned, result.scored)
        return result

    def refit(self, now: datetime | None = None) -> RefitResult:
        """Refit the topic model on the window ending ``now`` (default: the present); topic IDs
        stay stable."""
        from topics.refit import refit  # BERTopic is imported only by the worker, when needed

        result = refit(self.engine, self.settings, self.embedder, now, self.models_dir)
        log.info("refit: %s", result)
        return result


def schedule_topic_jobs(scheduler: BaseScheduler, engine: Engine, settings: Settings) -> TopicJobs:
    """Add the assign and refit jobs; the first refit runs soon when there are no topics yet."""
    jobs = TopicJobs(engine, settings)
    with read_session(engine) as session:
        has_topics = bool(session.scalar(select(func.count(Topic.id))))
    now = utcnow()
    common = {"max_instances": 1, "coalesce": True}
    scheduler.add_job(jobs.assign, "interval", seconds=settings.assign_interval_seconds,
                      id="topics:assign", name="assign new messages to topics",
                      next_run_time=now, **common)  # fmt: skip
    refit_every = timedelta(hours=settings.refit_interval_hours)
    first_refit = now + (refit_every if has_topics else FIRST_REFIT_DELAY)
    scheduler.add_job(jobs.refit, "interval", seconds=refit_every.total_seconds(),
                      id="topics:refit", name="refit topics", next_run_time=first_refit,
                      **common)  # fmt: skip
    return jobs


def schedule_digest_job(scheduler: BaseScheduler, engine: Engine, settings: Settings) -> None:
    """Queue yesterday's daily digest every day at ``settings.digest_time`` local time.

    The mail job sends it from the outbox. A run held up by busy job threads still runs within
    the hour; a worker that was down at that time does not catch up (``app.py digest --send``
    does it by hand, and a date is never queued twice).
    """
    from alerts.digest import queue_yesterdays_digest  # keeps other commands quick to start

    hour, minute = map(int, settings.digest_time.split(":"))
    scheduler.add_job(
        queue_yesterdays_digest,
        CronTrigger(hour=hour, minute=minute, timezone=settings.tz),
        args=[engine, settings],
        id="digest",
        name="queue the daily digest",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )


def schedule_retention_job(scheduler: BaseScheduler, engine: Engine, settings: Settings) -> None:
    """Purge message text older than ``settings.retention_days`` once a day (03:30 local time,
    and once soon after start); nothing is scheduled when retention is off (0)."""
    if settings.retention_days == 0:
        return

    def purge() -> None:
        result = purge_raw(engine, settings, utcnow())
        if result.messages:
            log.info("retention: purged %d messages received before %s", result.messages,
                     result.cutoff)  # fmt: skip

    scheduler.add_job(purge, CronTrigger(hour=3, minute=30, timezone=settings.tz),
                      id="privacy:retention", name="purge old message text", max_instances=1,
                      coalesce=True, misfire_grace_time=3600,
                      next_run_time=utcnow())  # fmt: skip


def schedule_alert_jobs(scheduler: BaseScheduler, engine: Engine, settings: Settings) -> None:
    """Evaluate alerts every ``alert_interval_seconds``, look for urgent risk messages every
    ``risk_interval_seconds`` and send queued emails every ``mail_interval_seconds``.

    The routes and calendar files are checked now, so a mistake in them stops the worker at
    start with its message (``ValueError``) instead of failing every evaluation.
    """
    from alerts.engine import evaluate_alerts, evaluate_risk, school_calendar
    from alerts.mailer import send_pending
    from alerts.routing import load_routes

    load_routes(settings)
    school_calendar(engine, settings)

    def evaluate() -> None:
        result = evaluate_alerts(engine, settings, utcnow())
        if result.fired or result.resolved or result.emails:
            log.info("alerts: %s", result)

    def risk() -> None:
        result = evaluate_risk(engine, settings, utcnow())
        if result.fired:
            log.warning("risk: %d urgent message(s) alerted", len(result.fired))

    def mail() -> None:
        report = send_pending(engine, settings, utcnow())
        if report.sent or report.failed or report.deferred:
            log.info("outbox: %s", report)

    now = utcnow()
    common = {"max_instances": 1, "coalesce": True, "next_run_time": now}
    scheduler.add_job(evaluate, "interval", seconds=settings.alert_interval_seconds,
                      id="alerts:evaluate", name="evaluate alerts", **common)  # fmt: skip
    scheduler.add_job(risk, "interval", seconds=settings.risk_interval_seconds,
                      id="alerts:risk", name="alert on urgent risk messages", **common)  # fmt: skip
    scheduler.add_job(mail, "interval", seconds=settings.mail_interval_seconds,
                      id="alerts:mail", name="send queued emails", **common)  # fmt: skip
