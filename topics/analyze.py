"""``app.py analyze``: language, sentiment, risk and topic for every message of a JSONL file.

Messages are read in the JSONL message format (DESIGN.md). Topics come from the current model
(the active topics' centroids, with the novelty threshold); when there is none yet, a model is
fitted on the file itself, in a temporary database, exactly as a refit would. Risk is the rules
on subject and body, raised by similarity to the curated examples and lowered for near-duplicates
of messages a reviewer dismissed in this database, as live scoring does.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from sqlalchemy import Engine, select

from core.db import create_db_engine, migrate, read_session, write_connection
from core.messages import NewMessage, upsert_messages
from core.models import Message, Topic
from core.settings import Settings
from ingestion.files import read_jsonl_messages
from ingestion.runner import prepare_messages
from topics.assign import active_centroids, nearest_topics
from topics.embeddings import Embedder, cached_embeddings
from topics.enrich import message_text
from topics.risk_review import reviewed_model


@dataclass
class AnalyzeReport:
    """What an analysis did: lines read, lines written, bad lines, whether a model was fitted."""

    rows: int = 0
    written: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    fitted_on_file: bool = False


def _read(path: Path, settings: Settings, report: AnalyzeReport) -> list[NewMessage]:
    report.rows, raws, report.errors = read_jsonl_messages(path, settings.tz)
    return prepare_messages(raws, "import", settings)


def _current_topics(
    engine: Engine, settings: Settings, embedder: Embedder, messages: list[NewMessage]
) -> tuple[list[int | None], np.ndarray] | None:
    """Each message's topic under the current model, and the embeddings; None if no model."""
    topic_ids, centroids = active_centroids(engine, embedder.dim)
    if not len(topic_ids):
        return None
    vectors = embedder.encode([m.body for m in messages])
    if not len(messages):
        return [], vectors
    best, score = nearest_topics(vectors, topic_ids, centroids)
    threshold = settings.novelty_threshold
    chosen = [int(t) if s >= threshold else None for t, s in zip(best, score, strict=True)]
    return chosen, vectors


def _fitted_topics(
    settings: Settings, embedder: Embedder, messages: list[NewMessage], workdir: Path
) -> tuple[Engine, list[int | None], np.ndarray]:
    """Fit a model on the messages alone, in a temporary database: topics and embeddings."""
    from topics.refit import refit  # BERTopic loads only when a fit is needed

    engine = create_db_engine(f"sqlite:///{workdir / 'analyze.db'}")
    migrate(engine)
    with write_connection(engine) as conn:
        upsert_messages(conn, messages)
    with read_session(engine) as session:
        rows = session.execute(select(Message.id, Message.source_name, Message.external_id)).all()
    stored = {(r.source_name, r.external_id): r.id for r in rows}
    if not messages:
        return engine, [], np.zeros((0, embedder.dim), dtype=np.float32)
    times = [m.received_at for m in messages]
    span = (max(times) - min(times)).days + 2
    fit_settings = settings.model_copy(update={"topic_window_days": span})
    refit(engine, fit_settings, embedder, now=max(times) + timedelta(seconds=1),
          models_dir=workdir / "models")  # fmt: skip
    ids = [stored[(m.source_name, m.external_id)] for m in messages]
    with read_session(engine) as session:
        topic_of = dict(
            session.execute(select(Message.id, Message.topic_id).where(Message.id.in_(ids))).all()
        )
    return engine, [topic_of[i] for i in ids], cached_embeddings(engine, embedder, ids)


def _labels(engine: Engine) -> dict[int, str]:
    with read_session(engine) as session:
        return {t.id: t.display_label for t in session.scalars(select(Topic))}


def analyze_file(
    engine: Engine,
    settings: Settings,
    embedder: Embedder,
    path: Path,
    output: TextIO,
) -> AnalyzeReport:
    """Write one JSON line per good message of ``path``: id, language, sentiment, risk, topic."""
    report = AnalyzeReport()
    messages = _read(path, settings, report)
    with tempfile.TemporaryDirectory(prefix="pulse-analyze-") as workdir:
        current = _current_topics(engine, settings, embedder, messages)
        if current is None:
            report.fitted_on_file = True
            topic_engine, topics, vectors = _fitted_topics(
                settings, embedder, messages, Path(workdir)
            )
        else:
            topic_engine, (topics, vectors) = engine, current
        labels = _labels(topic_engine)
        if topic_engine is not engine:
            topic_engine.dispose()
    texts = [message_text(m.subject, m.body) for m in messages]
    risks = reviewed_model(engine, embedder).assess_many(texts, vectors)
    for message, topic_id, risk in zip(messages, topics, risks, strict=True):
        result: dict[str, Any] = {
            "id": message.external_id,
            "language": message.language,
            "sentiment": None if message.sentiment is None else round(message.sentiment, 4),
            "risk": risk.as_dict(),
            "topic_id": topic_id,
            "topic_label": labels.get(topic_id) if topic_id is not None else None,
        }
        output.write(json.dumps(result, ensure_ascii=False) + "\n")
        report.written += 1
    return report
