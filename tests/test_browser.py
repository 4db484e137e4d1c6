"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright for Python.

One seeded database (demo-corpus messages of today, topics and hourly topic counts, a viewer and
an analyst) behind a real ``app.py serve`` process; each test signs in through the form in a
fresh browser context. Screenshots of the overview and the wall go to ``test-artifacts/browser``.
Without /usr/bin/chromium the tests are skipped with the reason, except under CI, where they fail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import free_port
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from sqlalchemy import Engine, update
from test_run_e2e import STARTUP_LIMIT_S, get_json, started, wait_for

from core.db import create_db_engine, migrate, write_connection, write_session
from core.messages import NewMessage, upsert_messages
from core.models import Message, Topic, utcnow
from core.settings import PROJECT_ROOT, Settings
from core.users import add_user
from dashboard.data import MessageQuery, find_messages, word_matches
from dashboard.wall_data import latest_message_at
from ingestion.demo import load_corpus
from topics.assign import rebuild_topic_counts

pytestmark = pytest.mark.timeout(60)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
# corpus file -> messages seeded; the last topic is below the wall's small-count threshold (5)
TOPICS = {"transportation": 24, "food_service": 24, "weather_closures": 24,
          "technology_devices": 24, "health": 24, "bullying": 3}  # fmt: skip
SPREAD = timedelta(hours=5)  # messages arrive over the last five local hours, all of them today
VIEWER, ANALYST, PASSWORD = "vera", "anna", "browser-password-1"
WALL_TOKEN = "wall-token-for-the-browser-test"
XSS_BODY = "<script>window.pwned = true</script> the bus never came <b>today</b>"
WALL_PANELS = ["cloud", "heatmap", "trending", "alerts"]  # in the order the wall rotates them
WAIT_MS = 20_000  # the longest any single page element may take to appear


@dataclass(frozen=True)
class Site:
    """A running dashboard: its base URL, process environment, database and seeded content."""

    base: str
    env: dict[str, str]
    settings: Settings
    engine: Engine
    tmp: Path
    bodies: list[str]
    xss_id: int


def midday_timezone(now: datetime) -> str:
    """A fixed-offset zone in which ``now`` is about noon, so "today" holds the last hours
    whenever the tests run (Etc/GMT-N is UTC+N)."""
    offset = (12 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"


def label(topic: str) -> str:
    """The label a seeded topic gets from its corpus file name."""
    return topic.replace("_", " ").capitalize()


def seed(engine: Engine, now: datetime) -> tuple[list[str], int]:
    """Demo-corpus messages of the last hours, one topic per corpus file, their hourly counts,
    and a message whose body is HTML; returns all bodies and that message's id."""
    corpus = [m for m in load_corpus() if m.topic in TOPICS]
    chosen = [m for topic, n in TOPICS.items() for m in [c for c in corpus if c.topic == topic][:n]]
    step = SPREAD / (len(chosen) + 1)
    messages = [
        NewMessage(m.channel, "browser-demo", m.id, now - step * (i + 2), m.body, m.id,
                   subject=m.subject, school=m.school, language=m.lang,
                   author="parent@example.org")
        for i, m in enumerate(chosen)
    ]  # fmt: skip
    xss = NewMessage("webform", "browser-demo", "xss", now - step, XSS_BODY, "xss")
    with write_connection(engine) as conn:
        upsert_messages(conn, [*messages, xss])
    with write_session(engine) as session:
        for topic_id, topic in enumerate(TOPICS, start=1):
            session.add(Topic(id=topic_id, label=label(topic), first_seen=now - timedelta(days=30)))
        session.flush()
        for topic_id, topic in enumerate(TOPICS, start=1):
            ids = [m.id for m in chosen if m.topic == topic]
            session.execute(
                update(Message).where(Message.external_id.in_(ids)).values(topic_id=topic_id)
            )
        xss_id = session.scalar(
            update(Message)
            .where(Message.external_id == "xss")
            .values(topic_id=1)
            .returning(Message.id)
        )
    rebuild_topic_counts(engine)
    return [m.body for m in messages] + [XSS_BODY], xss_id


def site_env(tmp: Path, timezone: str) -> dict[str, str]:
    """The server's environment: the test's database, cache and wall token, no other PULSE_*."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULSE_")},
        "PULSE_DATABASE_URL": f"sqlite:///{tmp / 'pulse.db'}",
        "PULSE_AUTHOR_HASH_KEY": "browser",
        "PULSE_SECRET_KEY": "browser-session",
        "PULSE_TIMEZONE": timezone,
        "PULSE_DASHBOARD_CACHE_DIR": str(tmp / "cache"),
        "PULSE_DASHBOARD_REFRESH_SECONDS": "2",
        "PULSE_WALL_TOKEN": WALL_TOKEN,
        "PULSE_WALL_ROTATE_SECONDS": "4",
    }


@contextmanager
def serving(
    env: dict[str, str], log: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``app.py serve`` on ``port`` (default: a free one), answering /health; yields its base URL
    and process."""
    port = port or free_port()
    command = [sys.executable, "app.py", "serve", "--port", str(port)]
    with started(command, env, log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get_json(f"{base}/health")["status"] == "ok", STARTUP_LIMIT_S, process)
        yield base, process


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The seeded database and a dashboard serving it, for the whole module."""
    tmp = tmp_path_factory.mktemp("browser")
    now = utcnow()
    env = site_env(tmp, midday_timezone(now))
    settings = Settings(_env_file=None, database_url=env["PULSE_DATABASE_URL"],
                        timezone=env["PULSE_TIMEZONE"])  # fmt: skip
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    bodies, xss_id = seed(engine, now)
    add_user(engine, VIEWER, PASSWORD, "viewer")
    add_user(engine, ANALYST, PASSWORD, "analyst")
    with serving(env, tmp / "serve.log") as (base, _process):
        yield Site(base, env, settings, engine, tmp, bodies, xss_id)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's), for the whole module."""
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} not found: install Debian's 'chromium' package "
            "(`make test` does it) to run the browser tests"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def new_page(browser: Browser, width: int = 1440, height: int = 1000) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies) of the given viewport size."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context, closed after the test."""
    with new_page(browser) as fresh:
        yield fresh


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    """Open the dashboard, get sent to the sign-in form, and fill it in."""
    page.goto(f"{base}/")
    assert urlsplit(page.url).path == "/login"
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def screenshot(page: Page, name: str) -> None:
    """A full-page PNG in the test artifact folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def grid_column(page: Page, column: str) -> list[str]:
    """The rendered cells of one ag-grid column on the page."""
    return page.locator(f".ag-center-cols-container .ag-cell[col-id='{column}']").all_inner_texts()


def shown_count(page: Page) -> int:
    """The number the message list says it holds."""
    text = page.locator("#messages-count").inner_text()
    return int(re.match(r"([\d,]+) messages", text)[1].replace(",", ""))


def test_wrong_password_shows_an_error(site: Site, page: Page):
    sign_in(page, site.base, VIEWER, "not-the-password")
    assert urlsplit(page.url).path == "/login"
    expect(page.locator(".alert-danger")).to_have_text("Wrong username or password.")
    expect(page.locator("#username")).to_have_value(VIEWER)  # kept for a second try


def test_viewer_sees_tiles_word_cloud_and_heatmap(site: Site, page: Page):
    sign_in(page, site.base, VIEWER)
    page.wait_for_url(f"{site.base}/")
    expect(page.locator("#nav-user")).to_contain_text(f"{VIEWER} (viewer)")
    expect(page.locator("#kpi-today")).to_have_text(f"{len(site.bodies):,}")
    expect(page.locator("#kpi-alerts")).to_have_text("0")
    words = page.locator("#overview-wordcloud g.textpoint text")
    expect(words.first).to_be_visible()
    assert words.count() >= 20
    heatmap = page.locator("#overview-heatmap")
    expect(heatmap.locator("g.hm image")).to_have_count(1)
    rows = heatmap.locator("g.ytick text").all_text_contents()
    labels = [label(t) for t in TOPICS]
    assert sorted(r.rsplit(" (#", 1)[0] for r in rows) == sorted(labels)
    expect(page.locator("#overview-trending .list-group-item").first).to_be_visible()
    screenshot(page, "overview")


def test_clicking_a_word_opens_the_messages_containing_it(site: Site, page: Page):
    sign_in(page, site.base, ANALYST)
    words = page.locator("#overview-wordcloud g.textpoint text")
    expect(words.first).to_be_visible()
    biggest = max(words.all(), key=lambda w: w.bounding_box()["height"])
    word = biggest.text_content()
    box = biggest.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/messages\?"))
    assert parse_qs(urlsplit(page.url).query)["word"] == [word]
    expect(page.locator("#messages-title")).to_contain_text(f"containing “{word}”")
    query = MessageQuery.from_query({"word": word}, utcnow(), site.settings)
    expected = find_messages(site.engine, query)
    assert shown_count(page) == len(expected) > 0
    expect(page.locator(".ag-cell[col-id='text']").first).to_be_visible()
    texts = grid_column(page, "text")
    assert texts and all(word_matches(text, word) for text in texts)


def test_clicking_a_heatmap_cell_opens_that_topic_and_hour(site: Site, page: Page):
    sign_in(page, site.base, ANALYST)
    graph = page.locator("#overview-heatmap .js-plotly-plot")
    expect(graph.locator("g.hm image")).to_have_count(1)
    trace = graph.evaluate("gd => gd.data[0]")
    rows, columns = len(trace["y"]), len(trace["x"])
    n, row, column = max((n, r, c) for r, line in enumerate(trace["z"]) for c, n in enumerate(line))
    topic, _, bucket = trace["customdata"][row][column].partition("|")
    plot = graph.locator(".nsewdrag").bounding_box()  # the plot area; y runs top to bottom
    x = plot["x"] + (column + 0.5) * plot["width"] / columns
    y = plot["y"] + (row + 0.5) * plot["height"] / rows
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(r"/messages\?"))
    hour = datetime.fromisoformat(bucket).strftime("%Y-%m-%dT%H:00")
    query = parse_qs(urlsplit(page.url).query)
    assert (query["topic"], query["hour"]) == ([topic], [hour])
    expect(page.locator("#messages-title")).to_contain_text(trace["y"][row].rsplit(" (#", 1)[0])
    assert shown_count(page) == n > 0
    expect(page.locator(".ag-cell[col-id='received']").first).to_be_visible()
    received = grid_column(page, "received")
    assert received and all(r.startswith(hour[:13].replace("T", " ")) for r in received)


def test_a_script_in_a_message_shows_as_text(site: Site, page: Page):
    sign_in(page, site.base, ANALYST)
    page.wait_for_url(f"{site.base}/")
    page.goto(f"{site.base}/message/{site.xss_id}")
    expect(page.locator("#message-body")).to_have_text(XSS_BODY)
    assert page.locator("#message-body b, #message-body script").count() == 0
    assert page.evaluate("window.pwned") is None


def strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def squeeze(text: str) -> str:
    return " ".join(text.split())


def open_wall(page: Page, base: str) -> None:
    """Open the wall with its token and wait for its first data."""
    page.goto(f"{base}/wall?token={WALL_TOKEN}")
    expect(page.locator("#wall-last-updated")).to_have_text(
        re.compile(r"Last updated \d\d:\d\d"), timeout=WAIT_MS
    )


def check_wall_fills_the_screen(page: Page, width: int, height: int) -> None:
    """The cloud is centred and uses most of the width, the heatmap most of the height with
    labels of at least 24 px, all on screen; trending changes and counts do not touch."""
    cloud = page.locator("#wall-cloud").bounding_box()
    assert cloud["width"] >= 0.9 * width and cloud["x"] >= 0
    assert abs(cloud["x"] + cloud["width"] / 2 - width / 2) <= 20  # centred
    assert cloud["y"] + cloud["height"] <= height
    heatmap = page.locator("#wall-heatmap").bounding_box()
    assert heatmap["height"] >= 0.7 * height and heatmap["y"] + heatmap["height"] <= height
    sizes = page.locator("#wall-heatmap g.xtick text, #wall-heatmap g.ytick text").evaluate_all(
        "ticks => ticks.map(t => parseFloat(getComputedStyle(t).fontSize))"
    )
    assert sizes and min(sizes) >= 24
    for row in page.locator(".wall-trend").all():
        change = row.locator(".wall-trend-change").bounding_box()
        count = row.locator(".wall-trend-count").bounding_box()
        assert change["x"] + change["width"] + 16 <= count["x"]  # a clear gap between them


def test_wall_shows_aggregates_and_never_message_text(site: Site, browser: Browser):
    sent: list[str] = []  # every string the server sent the wall: layout and callback replies

    def capture(route: Route) -> None:
        reply = route.fetch()
        if reply.status == 200:  # 204: the callback had nothing new to send
            sent.extend(strings(reply.json()))
        route.fulfill(response=reply)

    with new_page(browser, 1920, 1080) as page:
        page.route(re.compile(r"/_dash-(layout|update-component)"), capture)
        open_wall(page, site.base)
        latest = latest_message_at(site.engine).astimezone(site.settings.tz)
        expect(page.locator("#wall-last-updated")).to_have_text(f"Last updated {latest:%H:%M}")
        expect(page.locator("#wall-stale-banner")).to_be_hidden()
        expect(page.locator("#wall-today")).to_contain_text(f"{len(site.bodies):,} messages today")
        shown_first = page.locator(".wall-section.active").get_attribute("id")
        start = WALL_PANELS.index(shown_first.removeprefix("wall-panel-")) + 1
        for step in range(len(WALL_PANELS)):  # each panel as the rotation brings it in
            panel = WALL_PANELS[(start + step) % len(WALL_PANELS)]
            expect(page.locator(f"#wall-panel-{panel}")).to_have_class(re.compile(r"\bactive\b"))
            page.wait_for_timeout(900)  # its fade-in
            screenshot(page, f"wall-{panel}")
        assert page.locator("#wall-cloud g.textpoint text").count() >= 20
        rows = page.locator("#wall-heatmap g.ytick text").all_text_contents()
        check_wall_fills_the_screen(page, 1920, 1080)
        shown = squeeze(page.evaluate("document.body.textContent"))
        page.unroute_all(behavior="ignoreErrors")
    kept = [label(t) for t, n in TOPICS.items() if n >= 5]  # no small topic: "Bullying" is not
    assert sorted(r.rsplit(" (#", 1)[0] for r in rows) == sorted(kept)
    everything = squeeze(" ".join([shown, *sent]))
    long_bodies = [squeeze(b) for b in site.bodies if len(b.split()) >= 3]
    assert [b for b in long_bodies if b in everything] == []
    assert "<script>" not in everything
    assert not re.search(r"\b\d{3}[-. ]\d{4}\b|@[\w-]+\.\w+", everything)  # phones, emails


def test_wall_says_when_the_server_is_gone_and_reloads_when_it_is_back(site: Site, browser):
    port = free_port()
    with (
        ExitStack() as servers,
        new_page(browser, 1920, 1080) as page,
    ):
        base, process = servers.enter_context(serving(site.env, site.tmp / "wall-1.log", port))
        open_wall(page, base)
        updated = page.locator("#wall-last-updated").inner_text()
        banner = page.locator("#wall-stale-banner")
        expect(banner).to_be_hidden()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Server unreachable since")
        expect(banner).to_contain_text(f"(updated {updated.removeprefix('Last updated ')})")
        expect(page.locator("#wall-last-updated")).to_have_text(updated)  # the last good data
        screenshot(page, "wall-server-gone")
        assert page.locator("#wall-cloud g.textpoint text").count() >= 20
        with page.expect_event("load"):  # the wall reloads itself once the server is back
            servers.enter_context(serving(site.env, site.tmp / "wall-2.log", port))
        expect(banner).to_be_hidden()
        expect(page.locator("#wall-last-updated")).to_have_text(updated)
