"""The worker schedules one job per source at its own interval; a slow sync never overlaps."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select
from test_runner import ListSource

from core.db import create_db_engine, migrate, read_session, write_session
from core.models import Message, Topic, utcnow
from core.worker import schedule_jobs, schedule_topic_jobs


class SlowSource(ListSource):
    """Blocks in fetch until released, counting how many fetches run at once."""

    def __init__(self, name: str, interval: int):
        super().__init__(["one"])
        self.name, self.interval_seconds = name, interval
        self.running = self.most_at_once = self.calls = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def fetch(self, cursor):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.release.wait(10)
        with self.lock:
            self.running -= 1
        messages, _ = super().fetch(None)
        return [m.__class__(**{**vars(m), "source_name": self.name}) for m in messages], cursor


def test_one_job_per_source_with_its_interval_and_no_overlap(settings):
    db_engine = create_db_engine(settings.resolved_database_url)  # scheduling is not SQL: SQLite
    migrate(db_engine)
    fast, slow = SlowSource("fast", 1), SlowSource("slow", 2)
    fast.release.set()
    scheduler = BackgroundScheduler()
    schedule_jobs(scheduler, db_engine, settings, [fast, slow])
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"sync:fast", "sync:slow"}
    for job, seconds in ((jobs["sync:fast"], 1), (jobs["sync:slow"], 2)):
        assert isinstance(job.trigger, IntervalTrigger)
        assert job.trigger.interval.total_seconds() == seconds
        assert job.max_instances == 1 and job.coalesce is True
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while fast.calls < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fast.calls >= 5  # the fast source ran again and again (4 s or more)...
        # ...while the slow one, due every 2 s, stayed in its first sync: never two at once
        assert slow.calls == 1 and slow.most_at_once == 1
    finally:
        slow.release.set()
        scheduler.shutdown(wait=True)
    with read_session(db_engine) as session:
        names = set(session.scalars(select(Message.source_name).group_by(Message.source_name)))
        assert names == {"fast", "slow"}
        assert session.scalar(select(func.count(Message.id))) == 2


def test_topic_jobs_assign_every_interval_and_refit_soon_on_a_fresh_install(settings):
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    scheduler = BackgroundScheduler()
    schedule_topic_jobs(scheduler, engine, settings)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assign, refit = jobs["topics:assign"], jobs["topics:refit"]
    assert assign.trigger.interval.total_seconds() == settings.assign_interval_seconds
    assert refit.trigger.interval.total_seconds() == settings.refit_interval_hours * 3600
    assert all(job.max_instances == 1 and job.coalesce for job in (assign, refit))
    assert refit.next_run_time - assign.next_run_time < timedelta(minutes=1)  # no topics yet

    with write_session(engine) as session:
        session.add(Topic(label="bus · late", size=3))
    later = BackgroundScheduler()
    schedule_topic_jobs(later, engine, settings)
    refit = later.get_job("topics:refit")
    assert refit.next_run_time - utcnow() > timedelta(hours=settings.refit_interval_hours - 0.1)
