"""The stable topic registry: each refit's topics are matched to the stored ones so that IDs,
labels a person gave, and history survive although BERTopic re-numbers topics on every fit.

Matching is one-to-one (Hungarian) on a score mixing centroid cosine and the overlap of the top
words; a pair scoring under :data:`MIN_MATCH_SCORE` is no match. Matched topics keep their row;
unmatched new topics are born; unmatched active ones retire (or are marked merged into the topic
that took their place). A retired topic that comes back is revived under its old ID.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy.optimize import linear_sum_assignment
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db import write_session
from core.models import Topic
from topics.embeddings import from_bytes, to_bytes
from topics.taxonomy import match_seed
from topics.vocabulary import auto_label

TOP_WORDS = 30  # words stored per topic
OVERLAP_WORDS = 20  # top words compared when matching
COSINE_WEIGHT = 0.6  # score = 0.6 * centroid cosine + 0.4 * Jaccard of the top words
# Refits of the demo corpus: one topic across fits scored 0.61-1.0, different topics at most 0.59.
MIN_MATCH_SCORE = 0.6
SEED_WORDS = 10  # a topic gets a taxonomy seed when its top 10 words share 2+ seed words


@dataclass(frozen=True)
class TopicSnapshot:
    """A topic as one fit sees it: unit centroid, weighted top words, size; ``id`` if stored."""

    centroid: np.ndarray
    words: list[tuple[str, float]]
    size: int = 0
    id: int | None = None


@dataclass(frozen=True)
class Match:
    """``old[old]`` and ``new[new]`` are the same topic, with this score."""

    old: int
    new: int
    score: float


@dataclass
class RegistryUpdate:
    """What a refit did to the registry; ``ids[i]`` is the registry ID of new topic ``i``."""

    ids: list[int] = field(default_factory=list)
    created: int = 0
    kept: int = 0
    revived: int = 0
    retired: int = 0


def match_scores(old: Sequence[TopicSnapshot], new: Sequence[TopicSnapshot]) -> np.ndarray:
    """The (len(old), len(new)) matrix of match scores in [−0.6, 1]."""
    if not old or not new:
        return np.zeros((len(old), len(new)))
    cosine = np.vstack([t.centroid for t in old]) @ np.vstack([t.centroid for t in new]).T
    old_words = [_top(t) for t in old]
    new_words = [_top(t) for t in new]
    jaccard = np.array(
        [[len(a & b) / len(a | b) if a | b else 0.0 for b in new_words] for a in old_words]
    )
    return COSINE_WEIGHT * cosine + (1 - COSINE_WEIGHT) * jaccard


def _top(topic: TopicSnapshot) -> set[str]:
    return {word for word, _ in topic.words[:OVERLAP_WORDS]}


def match_topics(
    old: Sequence[TopicSnapshot],
    new: Sequence[TopicSnapshot],
    min_score: float = MIN_MATCH_SCORE,
) -> list[Match]:
    """One-to-one matches between ``old`` and ``new`` maximising the total score, each pair
    scoring at least ``min_score``; sorted by ``old``."""
    scores = match_scores(old, new)
    if scores.size == 0:
        return []
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return [
        Match(int(r), int(c), float(scores[r, c]))
        for r, c in zip(rows, cols, strict=True)
        if scores[r, c] >= min_score
    ]


def snapshot(topic: Topic, dim: int | None = None) -> TopicSnapshot:
    """A stored topic as a snapshot; a centroid of another dimension (the embedding model
    changed) becomes zeros of ``dim``, so the topic matches nothing."""
    centroid = from_bytes(topic.centroid) if topic.centroid else np.zeros(0, dtype=np.float32)
    if dim is not None and len(centroid) != dim:
        centroid = np.zeros(dim, dtype=np.float32)
    words = [(str(w), float(s)) for w, s in (topic.words or [])]
    return TopicSnapshot(centroid=centroid, words=words, size=topic.size, id=topic.id)


def apply_refit(
    session: Session, new_topics: Sequence[TopicSnapshot], now: datetime
) -> RegistryUpdate:
    """Match a fit's topics to the registry and write the result in ``session``.

    Matched topics keep id, custom label, first_seen; their words, centroid, size, auto label
    and seed follow the new fit. Unmatched new topics are matched against retired ones (revived)
    and otherwise born. Unmatched active topics retire, or become ``merged`` into the topic that
    took the new topic they matched best (which inherits their custom label if it has none).
    """
    stored = list(session.scalars(select(Topic).order_by(Topic.id)))
    dim = len(new_topics[0].centroid) if new_topics else None
    active = [t for t in stored if t.status == "active"]
    inactive = [t for t in stored if t.status != "active"]
    active_snaps = [snapshot(t, dim) for t in active]
    update = RegistryUpdate(ids=[0] * len(new_topics))
    taken: dict[int, Topic] = {}  # new index -> stored topic
    for m in match_topics(active_snaps, new_topics):
        taken[m.new] = active[m.old]
        update.kept += 1
    left = [i for i in range(len(new_topics)) if i not in taken]
    for m in match_topics([snapshot(t, dim) for t in inactive], [new_topics[i] for i in left]):
        topic = inactive[m.old]
        topic.status, topic.merged_into = "active", None
        taken[left[m.new]] = topic
        update.revived += 1
    for index, new in enumerate(new_topics):
        topic = taken.get(index)
        if topic is None:
            topic = Topic(first_seen=now, status="active")
            session.add(topic)
            update.created += 1
        _describe(topic, new, now)
        taken[index] = topic
    session.flush()  # assigns the new IDs
    update.ids = [taken[i].id for i in range(len(new_topics))]
    _retire(active, active_snaps, new_topics, taken, update)
    return update


def _describe(topic: Topic, new: TopicSnapshot, now: datetime) -> None:
    words = [[word, round(float(weight), 6)] for word, weight in new.words[:TOP_WORDS]]
    topic.words = words
    topic.centroid = to_bytes(new.centroid)
    topic.size = new.size
    topic.last_seen = now
    topic.label = auto_label(new.words)
    topic.seed = match_seed([w for w, _ in new.words[:SEED_WORDS]])


def _retire(
    active: list[Topic],
    active_snaps: list[TopicSnapshot],
    new_topics: Sequence[TopicSnapshot],
    taken: dict[int, Topic],
    update: RegistryUpdate,
) -> None:
    kept = {id(t) for t in taken.values()}
    gone = [i for i, t in enumerate(active) if id(t) not in kept]
    if not gone:
        return
    scores = match_scores([active_snaps[i] for i in gone], new_topics)
    for row, index in enumerate(gone):
        topic = active[index]
        best = int(np.argmax(scores[row])) if scores.shape[1] else -1
        if best >= 0 and scores[row, best] >= MIN_MATCH_SCORE:
            survivor = taken[best]
            topic.status, topic.merged_into = "merged", survivor.id
            if survivor.custom_label is None and topic.custom_label:
                survivor.custom_label = topic.custom_label  # a person's label is not lost
        else:
            topic.status, topic.merged_into = "retired", None
        update.retired += 1


def rename_topic(engine: Engine, topic_id: int, label: str | None) -> None:
    """Give a topic a person's label (kept across refits); an empty label restores the auto one."""
    with write_session(engine) as session:
        topic = session.get(Topic, topic_id)
        if topic is None:
            raise KeyError(f"no topic {topic_id}")
        topic.custom_label = (label or "").strip() or None
