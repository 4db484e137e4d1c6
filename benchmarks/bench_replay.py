"""Replay one synthetic district through ``app.py replay``'s pipeline: event recall, false
alerts and replay throughput.

    .venv/bin/python benchmarks/bench_replay.py [--topics 6] [--history-weeks 4]
        [--test-weeks 2] [--events-per-week 4] [--sensitivity balanced] [--refit-hours 168]

The stream comes from ``bench_alerts.generate_stream`` (school-day rhythm, injected bursts,
steps and ramps in the test weeks) and is written as JSONL with demo-corpus texts
(``bench_alerts.write_jsonl``; each text gets a short varying reference, as many exact
duplicates make UMAP's initialisation fall back to an unseeded layout). Unlike
``bench_alerts.py``, which feeds the true counts to the detector, the replay goes through
embedding, refits and assignment, so a spike alert is on a model topic: it is credited to the
synthetic topic most of its messages came from, then scored like ``bench_alerts.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_alerts import Episode, generate_stream, score, write_jsonl

from alerts.replay import replay_file
from core.settings import Settings
from topics.embeddings import load_embedder


def synthetic_topic(message_ids: list[str]) -> int | None:
    """The synthetic topic most of an alert's messages (``synthetic-<topic>-...``) came from."""
    topics = Counter(int(i.split("-")[1]) for i in message_ids if i.startswith("synthetic-"))
    return topics.most_common(1)[0][0] if topics else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topics", type=int, default=6)
    parser.add_argument("--history-weeks", type=int, default=4)
    parser.add_argument("--test-weeks", type=int, default=2)
    parser.add_argument("--events-per-week", type=float, default=4.0)
    parser.add_argument("--sensitivity", default="balanced")
    parser.add_argument("--refit-hours", type=float, default=168.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stream = generate_stream(
        args.seed,
        n_topics=args.topics,
        history_weeks=args.history_weeks,
        test_weeks=args.test_weeks,
        events_per_week=args.events_per_week,
        history_events_per_week=0,
        daily_volume=(20.0, 120.0),
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.jsonl"
        write_jsonl(stream, path, args.seed)
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for i, record in enumerate(lines):
            record["body"] += f" (ref {i % 97})"
        path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
        settings = Settings(
            database_url=f"sqlite:///{Path(folder) / 'unused.db'}",
            author_hash_key="bench",
            alert_sensitivity=args.sensitivity,
            refit_interval_hours=args.refit_hours,
            alert_routes_file=Path(folder) / "none.toml",
            calendar_file=Path(folder) / "none.toml",
        )
        embedder = load_embedder(settings.embedding_model, settings.embedding_threads)
        report = replay_file(path, settings, embedder)
    episodes = [
        Episode(
            topic,
            datetime.fromisoformat(alert["fired_at"]),
            datetime.fromisoformat(alert["resolved_at"]) if alert["resolved_at"] else None,
        )
        for alert in report.alerts
        if alert["kind"] == "spike"
        and datetime.fromisoformat(alert["fired_at"]) >= stream.test_start
        and (topic := synthetic_topic(alert["message_ids"])) is not None
    ]
    result = score(stream, episodes)
    found = [delay for _, delay in result.delays if delay is not None]
    test_weeks = (stream.end - stream.test_start).days / 7
    print(f"messages\t{report.messages}\tweeks\t{report.weeks:.1f}\trefits\t{report.refits}")
    print(f"evaluations\t{report.evaluations}\trisk evaluations\t{report.risk_evaluations}")
    print(f"replay\t{report.seconds:.0f} s\t{report.messages / report.seconds:.0f} messages/s\t"
          f"{report.weeks * 7 / (report.seconds / 60):.2f} simulated days/minute")  # fmt: skip
    print(f"events\t{len(result.delays)}\tdetected\t{len(found)}\t"
          f"recall\t{len(found) / max(len(result.delays), 1):.2f}\t"
          f"median delay\t{median(found) if found else '-'} evaluations")  # fmt: skip
    print(f"spike alerts in test weeks\t{len(episodes)}\tfalse\t{result.false_episodes}\t"
          f"false a week\t{result.false_episodes / test_weeks:.2f}")  # fmt: skip
    kinds = Counter(alert["kind"] for alert in report.alerts)
    print("all alerts\t" + "\t".join(f"{k} {n}" for k, n in sorted(kinds.items())))


if __name__ == "__main__":
    main()
