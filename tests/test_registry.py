"""The stable topic registry: Hungarian matching, births, retirements, merges, revivals and
labels a person gave; and, on the demo corpus, that refits keep topic IDs."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update
from test_refit import (
    CORPUS,
    NOW,
    assignments,
    corpus_vectors,
    fitted,  # noqa: F401 (a fixture)
    make_settings,
    store,
)

from core.db import create_db_engine, migrate, read_session, write_session
from core.models import Message, Topic
from topics.embeddings import to_bytes
from topics.refit import refit
from topics.registry import (
    MIN_MATCH_SCORE,
    TopicSnapshot,
    apply_refit,
    match_scores,
    match_topics,
    rename_topic,
)

DIM = 16
T0 = NOW - timedelta(days=1)


def unit(*weights: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


def axis(i: int, tilt: float = 0.0) -> np.ndarray:
    """Unit vector along axis ``i``, tilted towards the last axis by ``tilt``."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[i], vector[-1] = 1.0, tilt
    return vector / np.linalg.norm(vector)


def topic(i: int, words: str, size: int = 10, tilt: float = 0.0) -> TopicSnapshot:
    weights = [(w, 1.0 - k / 40) for k, w in enumerate(words.split())]
    return TopicSnapshot(centroid=axis(i, tilt), words=weights, size=size)


BUS = "bus route stop driver late autobús ruta parada"
LUNCH = "lunch cafeteria menu breakfast comida almuerzo"
SNOW = "snow delay closed ice nieve cierre"
LEVY = "levy budget bond taxes presupuesto impuestos"


def test_matching_is_one_to_one_and_maximises_the_total():
    words = [(w, 1.0) for w in BUS.split()]
    old = [TopicSnapshot(unit(1, 0, 0.3), words), TopicSnapshot(unit(1, 0, -0.9), words)]
    new = [TopicSnapshot(unit(1), words), TopicSnapshot(unit(1, 0, 1), words)]
    scores = match_scores(old, new)
    # Greedy would pair old 0 with new 0 (the best score) and leave old 1 with nothing it
    # resembles; the optimal assignment crosses over and keeps both.
    assert scores[0, 0] == scores.max() and scores[1, 1] < MIN_MATCH_SCORE
    matches = match_topics(old, new)
    assert {(m.old, m.new) for m in matches} == {(0, 1), (1, 0)}
    assert all(m.score == pytest.approx(scores[m.old, m.new]) for m in matches)


def test_a_weak_pair_is_no_match():
    old, new = [topic(0, BUS)], [topic(1, BUS)]  # same words, unrelated centroids
    assert match_scores(old, new)[0, 0] < MIN_MATCH_SCORE
    assert match_topics(old, new) == []
    assert match_topics([], new) == [] and match_topics(old, []) == []


def stored(engine) -> dict[int, Topic]:
    with read_session(engine) as session:
        return {t.id: t for t in session.scalars(select(Topic).order_by(Topic.id))}


def test_matched_topics_keep_id_label_and_first_seen(db_engine):
    with write_session(db_engine) as session:
        first = apply_refit(session, [topic(0, BUS), topic(1, LUNCH), topic(2, SNOW)], T0)
    assert (first.created, first.kept, first.retired) == (3, 0, 0)
    bus, lunch, snow = first.ids
    rename_topic(db_engine, bus, "  Buses  ")
    new = [topic(3, LEVY, size=4), topic(0, "route bus stop late driver ruta", 12, 0.1),
           topic(2, SNOW, 7)]  # fmt: skip
    with write_session(db_engine) as session:
        second = apply_refit(session, new, NOW)
    assert (second.created, second.kept, second.retired) == (1, 2, 1)
    assert second.ids[1:] == [bus, snow] and second.ids[0] not in first.ids
    topics = stored(db_engine)
    assert topics[bus].custom_label == "Buses" and topics[bus].display_label == "Buses"
    assert topics[bus].label == "route · bus · stop"  # the automatic label follows the words
    assert topics[bus].first_seen == T0 and topics[bus].last_seen == NOW
    assert topics[bus].size == 12 and topics[bus].words[0] == ["route", 1.0]
    assert topics[bus].seed == "transportation"
    assert topics[lunch].status == "retired" and topics[lunch].last_seen == T0
    born = topics[second.ids[0]]
    assert born.status == "active" and born.first_seen == NOW and born.seed == "budget_bond_levy"
    assert born.label == "levy · budget · bond" and born.custom_label is None


def test_a_topic_that_comes_back_is_revived_under_its_old_id(db_engine):
    with write_session(db_engine) as session:
        bus, lunch = apply_refit(session, [topic(0, BUS), topic(1, LUNCH)], T0).ids
    rename_topic(db_engine, lunch, "Cafeteria")
    with write_session(db_engine) as session:
        apply_refit(session, [topic(0, BUS)], T0 + timedelta(hours=6))
    assert stored(db_engine)[lunch].status == "retired"
    with write_session(db_engine) as session:
        back = apply_refit(session, [topic(0, BUS), topic(1, LUNCH, tilt=0.1)], NOW)
    assert back.ids == [bus, lunch] and (back.kept, back.revived, back.created) == (1, 1, 0)
    revived = stored(db_engine)[lunch]
    assert revived.status == "active" and revived.custom_label == "Cafeteria"
    assert revived.first_seen == T0 and revived.last_seen == NOW


SPANISH_BUS = TopicSnapshot(unit(1, 0.4), [(w, 1.0) for w in ["autobús", "ruta", "parada"]])
ENGLISH_BUS = TopicSnapshot(unit(1, -0.1), [(w, 1.0) for w in ["bus", "route", "stop"]])
BOTH_BUS = TopicSnapshot(unit(1, 0), [(w, 1.0) for w in ["bus", "autobús", "route", "ruta"]], 20)


def test_two_topics_that_became_one_leave_a_merged_pointer(db_engine):
    with write_session(db_engine) as session:
        es, en = apply_refit(session, [SPANISH_BUS, ENGLISH_BUS], T0).ids
    rename_topic(db_engine, es, "Autobuses")
    rename_topic(db_engine, en, "Buses")
    with write_session(db_engine) as session:
        after = apply_refit(session, [BOTH_BUS], NOW)
    assert after.ids == [en] and (after.kept, after.retired) == (1, 1)  # the closer one stays
    topics = stored(db_engine)
    assert topics[es].status == "merged" and topics[es].merged_into == en
    assert topics[en].custom_label == "Buses"  # its own label wins


def test_the_topic_a_labelled_one_merged_into_inherits_its_label(db_engine):
    with write_session(db_engine) as session:
        es, en = apply_refit(session, [SPANISH_BUS, ENGLISH_BUS], T0).ids
    rename_topic(db_engine, es, "Autobuses")
    with write_session(db_engine) as session:
        apply_refit(session, [BOTH_BUS], NOW)
    assert stored(db_engine)[en].custom_label == "Autobuses"


def test_topics_of_another_embedding_model_retire(db_engine):
    with write_session(db_engine) as session:
        session.add(Topic(label="old", centroid=to_bytes(np.ones(8) / 8**0.5), words=[], size=3))
    with write_session(db_engine) as session:
        result = apply_refit(session, [topic(0, BUS)], NOW)
    assert (result.created, result.kept, result.retired) == (1, 0, 1)
    assert [t.status for t in stored(db_engine).values()] == ["retired", "active"]


def test_rename_topic(db_engine):
    with write_session(db_engine) as session:
        (bus,) = apply_refit(session, [topic(0, BUS)], T0).ids
    rename_topic(db_engine, bus, "Bus delays")
    assert stored(db_engine)[bus].display_label == "Bus delays"
    rename_topic(db_engine, bus, "")
    assert stored(db_engine)[bus].custom_label is None
    assert stored(db_engine)[bus].display_label == "bus · route · stop"
    with pytest.raises(KeyError):
        rename_topic(db_engine, bus + 100, "nothing")


def kept_shares(before: dict[int, Topic], engine, result) -> tuple[float, float]:
    """Of the topics active before a refit, the share still active under the same ID; and of
    the topics after it, the share that kept an old ID."""
    after = stored(engine)
    old = [i for i, t in before.items() if t.status == "active"]
    kept = [i for i in old if after[i].status == "active"]
    assert len(kept) == result.topics_kept
    assert result.topics_retired == len(old) - len(kept)
    assert result.topics_created + result.topics_kept == result.n_topics
    assert sum(t.status == "active" for t in after.values()) == result.n_topics
    return len(kept) / len(old), len(kept) / result.n_topics


def test_refit_in_another_order_keeps_topic_ids(fitted, tmp_path):  # noqa: F811
    engine, settings = fitted.clone(tmp_path)
    before = stored(engine)
    times = sorted(t for (t,) in _times(engine))
    shuffled = np.random.default_rng(11).permutation(len(times))
    with write_session(engine) as session:  # the same messages, arriving in another order
        ids = session.scalars(select(Message.id).order_by(Message.id)).all()
        session.execute(
            update(Message),
            [{"id": i, "received_at": times[k]} for i, k in zip(ids, shuffled, strict=True)],
        )
    result = refit(engine, settings, corpus_vectors()[0], now=NOW, models_dir=tmp_path / "m")
    of_old, of_new = kept_shares(before, engine, result)  # measured: 1.00 and 0.90
    assert of_old >= 0.9 and of_new >= 0.8
    engine.dispose()


def _times(engine):
    with read_session(engine) as session:
        return session.execute(select(Message.received_at)).all()


def test_refit_with_ten_percent_more_data_keeps_ids_and_labels(tmp_path):
    settings = make_settings(tmp_path)
    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    order = np.random.default_rng(5).permutation(len(CORPUS))
    held_out, first = order[: len(CORPUS) // 10], order[len(CORPUS) // 10 :]
    store(engine, first.tolist())
    embedder = corpus_vectors()[0]
    refit(engine, settings, embedder, now=NOW - timedelta(hours=6), models_dir=tmp_path / "m")
    before = stored(engine)
    named = max(before.values(), key=lambda t: t.size)
    rename_topic(engine, named.id, "Our biggest topic")
    store(
        engine, held_out.tolist(), times=[NOW - timedelta(minutes=m) for m in range(len(held_out))]
    )
    result = refit(engine, settings, embedder, now=NOW, models_dir=tmp_path / "m")
    of_old, of_new = kept_shares(before, engine, result)  # measured: 1.00 and 0.83
    assert of_old >= 0.9 and of_new >= 0.75
    after = stored(engine)
    assert after[named.id].status == "active"
    assert after[named.id].custom_label == "Our biggest topic"
    assert after[named.id].first_seen == NOW - timedelta(hours=6)
    assigned = assignments(engine)
    late = [assigned[CORPUS[i].id] for i in held_out]
    assert sum(t is not None for t in late) >= 0.8 * len(late)  # new messages were fitted too
    engine.dispose()
