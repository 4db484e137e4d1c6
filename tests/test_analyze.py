"""``app.py analyze``: one JSON line per message with language, sentiment, risk and topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import cli
from core.db import create_db_engine, migrate, read_session, write_session
from core.models import Topic
from ingestion.demo import load_corpus
from topics.embeddings import DEFAULT_MODEL, load_embedder, to_bytes

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(DEFAULT_MODEL)


def write_jsonl(path, bodies, bad_line=False):
    lines = [
        json.dumps({"id": f"m{i}", "received_at": (T0 + timedelta(minutes=i)).isoformat(),
                    "body": body}, ensure_ascii=False)
        for i, body in enumerate(bodies)
    ]  # fmt: skip
    if bad_line:
        lines.insert(1, '{"id": "no-body", "received_at": "2026-03-02T12:00:00Z"}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'pulse.db'}"
    monkeypatch.setenv("PULSE_DATABASE_URL", url)
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "k")
    engine = create_db_engine(url)
    migrate(engine)
    return engine


def analyze(path, out):
    result = CliRunner().invoke(cli, ["analyze", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return result, lines


def test_with_the_current_model(cli_env, embedder, tmp_path):
    centroids = embedder.encode(["the school bus is late, the bus route", "cafeteria lunch food"])
    with write_session(cli_env) as session:
        for label, centroid in zip(("bus · late", "lunch · food"), centroids, strict=True):
            session.add(Topic(label=label, centroid=to_bytes(centroid), size=10))
    with read_session(cli_env) as session:
        bus, lunch = session.scalars(select(Topic.id).order_by(Topic.id)).all()
    bodies = [
        "Bus 14 was late again this morning and the kids waited in the cold",
        "El autobús escolar no pasó hoy, los niños esperaron una hora",
        "Can the cafeteria post next week's lunch menu? The food was great today",
        "my son said he took a whole bottle of pills tonight please help",
        "Who won the chess tournament?",
    ]
    result, lines = analyze(write_jsonl(tmp_path / "in.jsonl", bodies, bad_line=True),
                            tmp_path / "out.jsonl")  # fmt: skip
    assert "in.jsonl:2: skipped: missing required field 'body'" in result.stderr
    assert "analysed 5 of 6 lines with the current model" in result.stderr
    assert [line["id"] for line in lines] == ["m0", "m1", "m2", "m3", "m4"]
    assert set(lines[0]) == {"id", "language", "sentiment", "risk", "topic_id", "topic_label"}
    assert [line["topic_id"] for line in lines[:3]] == [bus, bus, lunch]
    assert lines[0]["topic_label"] == "bus · late" and lines[2]["topic_label"] == "lunch · food"
    assert lines[4]["topic_id"] is None and lines[4]["topic_label"] is None  # novel
    assert [line["language"] for line in lines[:3]] == ["en", "es", "en"]
    assert lines[0]["sentiment"] < 0
    assert lines[3]["risk"]["level"] == "urgent" and lines[3]["risk"]["third_party"] is True
    assert "self_harm" in lines[3]["risk"]["categories"]
    assert lines[2]["risk"] == {"level": "none", "categories": [], "negated": False,
                                "third_party": False}  # fmt: skip


def test_without_a_model_one_is_fitted_on_the_file(cli_env, tmp_path):
    corpus = [m for m in load_corpus() if m.topic in ("weather_closures", "food_service")][:60]
    result, lines = analyze(write_jsonl(tmp_path / "in.jsonl", [m.body for m in corpus]),
                            tmp_path / "out.jsonl")  # fmt: skip
    assert "with a model fitted on the file" in result.stderr
    assert len(lines) == len(corpus)
    labelled = [(m.topic, line["topic_id"]) for m, line in zip(corpus, lines, strict=True)
                if line["topic_id"] is not None]  # fmt: skip
    assert len(labelled) >= len(corpus) // 2 and all(line["topic_label"] for line in lines
                                                     if line["topic_id"] is not None)  # fmt: skip
    with read_session(cli_env) as session:  # the fit happened elsewhere: no topics stored here
        assert session.scalars(select(Topic)).all() == []
