"""The background worker: one APScheduler job per configured source, each at its own interval."""

from __future__ import annotations

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine

from core.models import utcnow
from core.settings import Settings
from ingestion.base import Connector
from ingestion.demo import DemoSource
from ingestion.runner import sync_source
from ingestion.sources import load_sources


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
