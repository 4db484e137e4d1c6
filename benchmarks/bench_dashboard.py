"""Measure dashboard callback latency and first page load on a large database.

    .venv/bin/python benchmarks/bench_dashboard.py [--messages 200000] [--repeats 20]
        [--loads 5] [--database-url URL]

Seeds N demo-corpus messages over the last 30 days with a school-day rhythm (busier mornings
and afternoons on weekdays, quiet weekends and nights), one topic per corpus file (words from
the corpus), hourly topic counts (:func:`topics.assign.rebuild_topic_counts`), sentiment,
language, school and risk columns. Without --database-url it uses a fresh SQLite file in a
temporary folder; a PostgreSQL URL must name an empty database that may be written to.

Callbacks go through the real Flask app (``create_app``) over ``/_dash-update-component``,
signed in as an analyst (a wall-token session for the wall). "cold" clears the shared result
cache before each call (as a new data version does), "warm" repeats the call on a filled cache.
Page routes (topic, messages) are the Dash pages router callback, which builds the layout.
The first page load is timed in headless Chromium (Playwright): from ``goto('/')`` after
sign-in until the word cloud's and the heatmap's SVG are drawn.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from flask.testing import FlaskClient
from sqlalchemy import Engine, insert
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import create_db_engine, migrate, write_connection
from core.models import Message, Topic, utcnow
from core.settings import Settings
from core.users import add_user
from dashboard.app import create_app
from dashboard.cache import EXTENSION_KEY
from dashboard.data import get_topic
from ingestion.demo import load_corpus
from tests.dash_client import PASSWORD, call_callback, login, response_of
from topics.assign import rebuild_topic_counts
from topics.words import weigh_words

DAYS = 30
CHUNK = 20_000
WALL_TOKEN = "bench-wall-token"
ANALYST = "anna"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
# share of a school day's messages per local hour 0..23: peaks at drop-off and pick-up
HOURLY = np.array([1, 1, 1, 1, 1, 2, 6, 14, 12, 8, 6, 6, 7, 7, 10, 14, 10, 7, 6, 5, 4, 3, 2, 1.0])
WEEKEND = 0.25  # a weekend day's volume relative to a school day
TOPIC_SKEW = 1.2  # Zipf-like exponent: a few busy topics, a long tail
UNASSIGNED = 0.1  # share of messages without a topic (novel or below the threshold)
OVERVIEW_OUTPUTS = [
    ("kpi-today", "children"), ("kpi-today-usual", "children"), ("kpi-alerts", "children"),
    ("kpi-alerts-note", "children"), ("kpi-urgent", "children"), ("kpi-urgent-note", "children"),
    ("kpi-negative", "children"), ("kpi-negative-note", "children"),
    ("overview-heatmap", "figure"), ("overview-trending", "children"),
    ("overview-channels", "figure"), ("volume-graph", "figure"),
    ("overview-cloud-topic", "options"),
]  # fmt: skip
WALL_OUTPUTS = [
    ("wall-cloud", "figure"), ("wall-heatmap", "figure"), ("wall-trending", "children"),
    ("wall-alerts", "children"), ("wall-today", "children"), ("wall-last-updated", "children"),
    ("wall-status", "data"),
]  # fmt: skip
PAGE_OUTPUTS = [("_pages_content", "children"), ("_pages_store", "data")]


def arrival_times(n: int, now: datetime, settings: Settings, rng: np.random.Generator) -> list:
    """``n`` arrival times (UTC) over the last ``DAYS`` days up to ``now``, drawn from the
    school-day rhythm in the district's time zone, oldest first."""
    local_now = now.astimezone(settings.tz)
    first = (local_now - timedelta(days=DAYS - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    hours = []
    while (start := first + timedelta(hours=len(hours))) <= local_now:
        day_weight = WEEKEND if start.weekday() >= 5 else 1.0
        hours.append((start, day_weight * HOURLY[start.hour]))
    weights = np.array([w for _, w in hours])
    picked = rng.choice(len(hours), size=n, p=weights / weights.sum())
    seconds = rng.uniform(0, 3600, size=n)
    times = [
        hours[h][0] + timedelta(seconds=float(s)) for h, s in zip(picked, seconds, strict=True)
    ]
    return sorted(min(t, local_now).astimezone(now.tzinfo) for t in times)


def seed(engine: Engine, settings: Settings, n: int, now: datetime) -> int:
    """Topics (one per corpus file, words weighed over the corpus) and ``n`` messages; the
    hourly topic counts rebuilt. Returns the number of topics."""
    rng = np.random.default_rng(7)
    corpus = load_corpus()
    names = sorted({m.topic for m in corpus})
    topic_of = {name: i + 1 for i, name in enumerate(names)}
    classes = [topic_of[m.topic] for m in corpus]
    bodies = [m.body for m in corpus]
    start = now - timedelta(days=DAYS)
    words = {
        t: [list(w) for w in weigh_words(settings, bodies, classes, t, 30)] for t in set(classes)
    }
    with write_connection(engine) as conn:
        conn.execute(
            insert(Topic),
            [
                {"id": topic_of[name], "label": name.replace("_", " ").capitalize(),
                 "words": words[topic_of[name]],
                 "size": classes.count(topic_of[name]), "first_seen": start, "last_seen": now}
                for name in names
            ],
        )  # fmt: skip
    by_topic = {name: [m for m in corpus if m.topic == name] for name in names}
    popularity = 1 / np.arange(1, len(names) + 1) ** TOPIC_SKEW
    topic_picks = rng.choice(len(names), size=n, p=popularity / popularity.sum())
    message_picks = rng.random(n)
    unassigned = rng.random(n) < UNASSIGNED
    sentiment = np.clip(rng.normal(-0.05, 0.45, n), -1, 1)
    risk_draw = rng.random(n)
    times = arrival_times(n, now, settings, rng)
    rows = []
    for i in range(n):
        name = names[topic_picks[i]]
        pool = by_topic[name]
        m = pool[int(message_picks[i] * len(pool))]
        level = "urgent" if risk_draw[i] < 0.002 else "review" if risk_draw[i] < 0.01 else "none"
        rows.append({
            "source_kind": m.channel, "source_name": f"bench-{m.channel}", "external_id": str(i),
            "received_at": times[i], "ingested_at": times[i], "body": m.body,
            "subject": m.subject, "language": m.lang, "school": m.school,
            "sentiment": float(sentiment[i]), "risk_level": level,
            "risk_categories": ["violence"] if level != "none" else None,
            "risk_score": 0.9 if level == "urgent" else 0.6 if level == "review" else None,
            "topic_id": None if unassigned[i] else topic_of[name],
            "topic_score": float(rng.uniform(0.3, 0.9)),
            "content_hash": hashlib.sha256(f"{i}:{m.body}".encode()).hexdigest(),
        })  # fmt: skip
    with write_connection(engine) as conn:
        for chunk in range(0, n, CHUNK):
            conn.execute(insert(Message), rows[chunk : chunk + CHUNK])
    rebuild_topic_counts(engine)
    return len(names)


def timed(
    call: Callable[[], TestResponse], repeats: int, before: Callable[[], None], marker: str
) -> list:
    """Milliseconds of ``repeats`` calls, each after ``before()``; a reply that fails or lacks
    ``marker`` (an id the right answer holds) stops the benchmark."""
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        reply = call()
        times.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200 and marker in reply.text, (
            reply.status_code,
            reply.text[:300],
        )
    return times


def page_call(client: FlaskClient, path: str, search: str = "") -> Callable[[], TestResponse]:
    """The Dash pages router callback rendering ``path`` (the layout a navigation builds)."""
    inputs = [("_pages_location", "pathname", path), ("_pages_location", "search", search)]
    return lambda: call_callback(client, PAGE_OUTPUTS, inputs)


def callback_latency(
    app: Any, settings: Settings, repeats: int, busiest_topic: int, word: str
) -> list:
    """Rows (name, cold ms list or None, warm ms list) for each measured callback."""
    cache = app.server.extensions[EXTENSION_KEY]
    analyst = app.server.test_client()
    assert login(analyst, ANALYST).status_code == 302, "analyst sign-in failed"
    wall = app.server.test_client()
    assert wall.get(f"/wall?token={WALL_TOKEN}").status_code == 200, "wall token refused"

    poll = call_callback(
        analyst, [("overview-version", "data")], [("overview-tick", "n_intervals", 1)],
        [("overview-version", "data", None)],
    )  # fmt: skip
    version = response_of(poll, "overview-version", "data")
    wall_poll = call_callback(
        wall, [("wall-version", "data")], [("wall-tick", "n_intervals", 1)],
        [("wall-version", "data", None)],
    )  # fmt: skip
    wall_version = response_of(wall_poll, "wall-version", "data")
    overview_inputs = [("overview-version", "data", version), ("overview-window", "value", "today"),
                       ("overview-kind", "value", ""), ("overview-school", "value", ""),
                       ("overview-language", "value", "")]  # fmt: skip

    def cloud(window: str, topic: str) -> Callable[[], TestResponse]:
        inputs = [("overview-version", "data", version), ("overview-window", "value", window),
                  ("overview-cloud-topic", "value", topic)]  # fmt: skip
        return lambda: call_callback(analyst, [("overview-wordcloud", "figure")], inputs)

    today = utcnow().astimezone(settings.tz)
    hour = today.replace(hour=max(today.hour - 1, 0)).strftime("%Y-%m-%dT%H:00")
    calls: list[tuple[str, Callable[[], TestResponse], bool, str]] = [
        ("overview: version poll", lambda: call_callback(
            analyst, [("overview-version", "data")], [("overview-tick", "n_intervals", 2)],
            [("overview-version", "data", None)]), False, "overview-version"),
        ("overview: panels, today", lambda: call_callback(
            analyst, OVERVIEW_OUTPUTS, overview_inputs), True, "overview-heatmap"),
        ("overview: panels, 30 days", lambda: call_callback(
            analyst, OVERVIEW_OUTPUTS, [overview_inputs[0], ("overview-window", "value", "30d"),
                                        *overview_inputs[2:]]), True, "overview-heatmap"),
        ("overview: word cloud, today", cloud("today", "all"), True, "customdata"),
        ("overview: word cloud, 30 days", cloud("30d", "all"), True, "customdata"),
        ("overview: word cloud, one topic", cloud("today", str(busiest_topic)), True,
         "customdata"),
        ("topic page", page_call(analyst, f"/topics/{busiest_topic}"), False, "topic-messages"),
        ("messages: word, today", page_call(analyst, "/messages", f"?word={word}"), False,
         "messages-grid"),
        ("messages: word, 30 days", page_call(analyst, "/messages", f"?word={word}&window=30d"),
         False, "messages-grid"),
        ("messages: heatmap cell", page_call(
            analyst, "/messages", f"?topic={busiest_topic}&hour={hour}"), False, "messages-grid"),
        ("wall: version poll", lambda: call_callback(
            wall, [("wall-version", "data")], [("wall-tick", "n_intervals", 2)],
            [("wall-version", "data", None)]), False, "wall-version"),
        ("wall: panels", lambda: call_callback(
            wall, WALL_OUTPUTS, [("wall-version", "data", wall_version)]), True, "wall-cloud"),
    ]  # fmt: skip
    rows = []
    for name, call, cacheable, marker in calls:
        cold = timed(call, repeats, cache.clear, marker) if cacheable else None
        warm = timed(call, repeats, lambda: None, marker)
        rows.append((name, cold, warm))
    return rows


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app on a free local port in a background thread (threaded werkzeug); its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def page_loads(app: Any, loads: int) -> tuple[list, list] | str:
    """Milliseconds from ``goto('/')`` (signed in) to the word cloud and heatmap drawn, with a
    cold cache and a warm one, ``loads`` times each; or why this was skipped."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (install Debian's chromium)"
    from playwright.sync_api import sync_playwright

    cache = app.server.extensions[EXTENSION_KEY]
    cold, warm = [], []
    with serving(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.goto(f"{base}/login")
        page.fill("#username", ANALYST)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        for i in range(loads * 2):
            first = i % 2 == 0
            if first:
                cache.clear()
            started = time.perf_counter()
            page.goto(f"{base}/")
            page.locator("#overview-wordcloud g.textpoint text").first.wait_for()
            page.locator("#overview-heatmap g.hm image").wait_for()
            (cold if first else warm).append((time.perf_counter() - started) * 1000)
        browser.close()
    return cold, warm


def stats(times: list | None) -> str:
    """``p50 | p95 | max`` in ms, or dashes."""
    if not times:
        return f"{'-':>8} | {'-':>6} | {'-':>6}"
    p95 = float(np.percentile(times, 95))
    return f"{statistics.median(times):8.0f} | {p95:6.0f} | {max(times):6.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--repeats", type=int, default=20, help="calls per callback and cache state"
    )
    parser.add_argument("--loads", type=int, default=5, help="browser page loads per cache state")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.messages < 1000:
        parser.error(f"--messages {args.messages}: give at least 1000")

    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(
        _env_file=None, database_url=url, author_hash_key="bench", secret_key="bench-secret",
        wall_token=WALL_TOKEN, dashboard_cache_dir=workdir / "cache",
        sources_file=workdir / "sources.toml",
    )  # fmt: skip
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    add_user(engine, ANALYST, PASSWORD, "analyst")
    now = utcnow()
    started = time.perf_counter()
    n_topics = seed(engine, settings, args.messages, now)
    seeding = time.perf_counter() - started
    app = create_app(settings, engine)
    with engine.connect() as conn:
        busiest = conn.exec_driver_sql(
            "SELECT topic_id FROM messages WHERE topic_id IS NOT NULL "
            "GROUP BY topic_id ORDER BY count(*) DESC LIMIT 1"
        ).scalar_one()
    topic = get_topic(engine, busiest)
    assert topic is not None and topic.words, "the busiest topic has no words"
    rows = callback_latency(app, settings, args.repeats, busiest, str(topic.words[0][0]))
    loads = page_loads(app, args.loads)

    print(f"\nDashboard benchmark on {engine.dialect.name}: {args.messages:,} messages over "
          f"{DAYS} days, {n_topics} topics; seeded in {seeding:.1f} s")  # fmt: skip
    print(f"{args.repeats} calls per row and cache state; milliseconds\n")
    print(f"| {'callback':<32} | {'cold p50':>8} | {'p95':>6} | {'max':>6} "
          f"| {'warm p50':>8} | {'p95':>6} | {'max':>6} |")  # fmt: skip
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 8}|{'-' * 8}|{'-' * 10}|{'-' * 8}|{'-' * 8}|")
    for name, cold, warm in rows:
        print(f"| {name:<32} | {stats(cold)} | {stats(warm)} |")
    if isinstance(loads, str):
        print(f"\nBrowser first page load skipped: {loads}")
    else:
        label = f"browser: first load ({args.loads}x)"
        print(f"| {label:<32} | {stats(loads[0])} | {stats(loads[1])} |")
    engine.dispose()


if __name__ == "__main__":
    main()
