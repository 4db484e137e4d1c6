"""Word weights for word clouds: per topic and per time window, from the messages themselves.

A topic's cloud is its row of a class-based TF-IDF (c-TF-IDF, as BERTopic computes it with
``reduce_frequent_words=True``) over the window's messages, one class per topic plus one for
unassigned messages, so a word is big when it is frequent in the topic and rare elsewhere in the
same window. The "all messages" cloud takes, for each word, its largest weight in any topic
scaled by that topic's share of the window's messages: the union of the topic clouds, with busy
topics louder. Words everybody uses whatever the topic ("hijo", "school", "kids", the school
names) stay small, which plain frequency or tf-idf over the window put on top. Unassigned
messages count in the word statistics but are not a cloud class of their own: they are a
grab-bag whose words would read as noise; before any topic exists the cloud falls back to
tf-idf over the window's messages. Words are counted by :func:`topics.vocabulary.make_vectorizer`
(no stopwords, merged word forms, no emails, phone numbers, links or names).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import scipy.sparse as sp
from sqlalchemy import Engine, select

from core.db import read_session
from core.models import Message, Topic
from core.settings import Settings
from topics.vocabulary import make_vectorizer

MAX_MESSAGES = 10_000  # larger windows are sampled (deterministically) to keep a cloud fast
MIN_DF_FROM = 20  # from this many messages on, a word must occur in 2 of them to count
UNASSIGNED = -1


def class_tfidf(counts: sp.spmatrix | np.ndarray) -> np.ndarray:
    """c-TF-IDF of a (classes x words) count matrix, like BERTopic's ClassTfidfTransformer
    with ``reduce_frequent_words=True``: sqrt(l1-normalised counts) * log(1 + A / f), where A is
    the mean number of words per class and f a word's count over all classes."""
    dense = np.asarray(counts.toarray() if sp.issparse(counts) else counts, dtype=np.float64)
    if dense.size == 0:
        return dense
    totals = dense.sum(axis=1, keepdims=True)
    tf = np.sqrt(dense / np.where(totals == 0, 1, totals))
    average = int(dense.sum(axis=1).mean())
    frequency = dense.sum(axis=0)
    idf = np.log(average / np.where(frequency == 0, 1, frequency) + 1)
    return tf * idf


def weigh_words(
    settings: Settings,
    documents: Sequence[str],
    classes: Sequence[int],
    topic_id: int | None,
    top_n: int = 100,
    *,
    schools: Sequence[str] = (),
    known_words: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """Word weights (max 1) of ``topic_id``'s class among ``documents``, or of all of them.

    ``classes`` gives each document's topic id (``UNASSIGNED`` for none).
    """
    labels = np.asarray(classes, dtype=np.int64)
    if not documents or (topic_id is not None and not (labels == topic_id).any()):
        return []
    min_df = 2 if len(documents) >= MIN_DF_FROM else 1
    vectorizer = make_vectorizer(settings, min_df, schools=schools, known_words=known_words)
    try:
        matrix = vectorizer.fit_transform(documents).tocsr()
    except ValueError:  # nothing left to count: only stopwords, names, numbers
        return []
    words = vectorizer.get_feature_names_out()
    ids, rows = np.unique(labels, return_inverse=True)
    membership = sp.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))))
    weights = class_tfidf(membership @ matrix)
    if topic_id is not None:
        scores = weights[int(np.searchsorted(ids, topic_id))]
    elif (ids != UNASSIGNED).any():
        share = np.bincount(rows) / len(rows)
        assigned = ids != UNASSIGNED
        scores = (weights[assigned] * share[assigned, None]).max(axis=0)
    else:
        scores = _tfidf(matrix)
    return _top(words, scores, top_n)


def _tfidf(matrix: sp.csr_matrix) -> np.ndarray:
    """The window as one document: sqrt of its word shares times log(1 + N / df)."""
    totals = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    document_frequency = np.asarray((matrix > 0).sum(axis=0)).ravel()
    idf = np.log(matrix.shape[0] / np.maximum(document_frequency, 1) + 1)
    return np.sqrt(totals / max(totals.sum(), 1)) * idf


def _top(words: np.ndarray, scores: np.ndarray, top_n: int) -> list[tuple[str, float]]:
    order = sorted((i for i in np.flatnonzero(scores > 0)), key=lambda i: (-scores[i], words[i]))
    chosen = order[:top_n]
    if not chosen:
        return []
    peak = float(scores[chosen[0]])
    return [(str(words[i]), float(scores[i]) / peak) for i in chosen]


def topic_words(
    engine: Engine,
    settings: Settings,
    topic_id: int | None,
    since: datetime,
    until: datetime,
    top_n: int = 100,
    *,
    max_messages: int = MAX_MESSAGES,
) -> list[tuple[str, float]]:
    """Word-cloud weights (largest = 1) of a topic, or of all messages (``topic_id`` None),
    received in [since, until); empty when the window holds nothing to show."""
    window = (Message.received_at >= since, Message.received_at < until)
    with read_session(engine) as session:
        rows = session.execute(
            select(Message.id, Message.topic_id, Message.school).where(*window).order_by(Message.id)
        ).all()
        if topic_id is not None and not any(row.topic_id == topic_id for row in rows):
            return []
        rows = _sample(rows, topic_id, max_messages)
        bodies: dict[int, str] = {}
        ids = [row.id for row in rows]
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            query = select(Message.id, Message.body).where(Message.id.in_(chunk))
            bodies.update((i, body) for i, body in session.execute(query))
        topic_vocab = [
            str(pair[0])
            for words in session.scalars(select(Topic.words).where(Topic.words.is_not(None)))
            for pair in words or []
            if pair
        ]
    schools = sorted({row.school for row in rows if row.school})
    return weigh_words(
        settings,
        [bodies[row.id] for row in rows],
        [UNASSIGNED if row.topic_id is None else row.topic_id for row in rows],
        topic_id,
        top_n,
        schools=schools,
        known_words=topic_vocab,
    )


def _sample(rows: Sequence, topic_id: int | None, limit: int) -> list:
    """At most ``limit`` rows: a topic's own messages first (newest), then an even spread."""
    if len(rows) <= limit:
        return list(rows)
    own = [r for r in rows if topic_id is not None and r.topic_id == topic_id][-(limit // 2) :]
    kept = {r.id for r in own}
    others = [r for r in rows if r.id not in kept]
    picks = np.random.default_rng(0).choice(len(others), limit - len(own), replace=False)
    return sorted(own + [others[i] for i in picks], key=lambda r: r.id)
