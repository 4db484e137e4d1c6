"""The topic refit: BERTopic over the last ``topic_window_days`` of messages, matched into the
stable registry, written back to messages, recorded in ``model_runs``, saved with safetensors.

Pipeline (all offline; embeddings come from the cache, BERTopic never embeds):

1. Guidance. BERTopic's own guided mode labels a document only when a seed is closer to it
   than the average document is, which on short school messages is ~12% of them. Pulse guides
   in a space with the corpus mean and its top principal direction (message style, shared by
   all messages) removed: a document whose nearest taxonomy seed beats the runner-up by
   :data:`GUIDE_MARGIN` gets that seed as its UMAP target and is nudged towards the seed. The
   others stay unlabelled, so topics nobody listed still form. Seed words also get BERTopic's
   c-TF-IDF boost (``seed_topic_list``).
2. UMAP (seeded, single-threaded: deterministic) and HDBSCAN (a topic holds at least
   ``min_topic_size`` messages and :data:`MIN_TOPIC_SHARE` of the window; a degenerate result
   is clustered again with HDBSCAN's default ``min_samples``), then BERTopic on those clusters:
   words from the project's English+Spanish vectorizer, c-TF-IDF with ``reduce_frequent_words``.
3. Cross-language merge: a mostly-English and a mostly-Spanish topic that are each other's
   nearest topic in the other language merge from a centroid cosine of
   :data:`MERGE_CROSS_LANGUAGE` (any two mutually nearest topics from :data:`MERGE_COSINE`).
4. Outliers join their nearest topic when the cosine reaches :data:`OUTLIER_THRESHOLD`;
   the rest stay unassigned. ``update_topics`` then recomputes words with the same settings.
5. Small data (< :data:`SMALL_DATA` messages, or HDBSCAN finding no usable topics): messages close
   to one taxonomy seed form its group, the others average-linkage clusters on cosine distance;
   then steps 3-4 and words the same way.

Each message in the window gets its registry topic (or none) and its cosine score; unassigned
messages keep their best score, as live assignment does. Hourly topic counts are rebuilt from
the window's start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core.db import read_session, write_session
from core.models import Message, ModelRun, utcnow
from core.settings import Settings
from topics import model_store
from topics.assign import rebuild_topic_counts
from topics.embeddings import Embedder, cached_embeddings
from topics.registry import RegistryUpdate, TopicSnapshot, apply_refit
from topics.taxonomy import seed_topic_list
from topics.vocabulary import make_vectorizer

log = logging.getLogger(__name__)

TOP_N_WORDS = 30
UMAP_PARAMS = {"n_neighbors": 15, "n_components": 5, "min_dist": 0.0, "metric": "cosine"}
SMALL_DATA = 100  # fewer messages than this: the small-data clustering
STYLE_COMPONENTS = 1  # top principal directions removed before guiding and clustering
MIN_TOPIC_SHARE = 0.003  # a topic holds at least this share of the window (and min_topic_size)
MIN_SAMPLES_FACTOR = 1.5  # HDBSCAN min_samples = 1.5 × min_cluster_size: fewer flapping topics
GUIDE_MARGIN = 0.06  # nearest seed must beat the second by this (cosine) to guide a message
GUIDE_NUDGE = 0.25  # a guided message moves this far towards its seed before UMAP
# Merge two mutually nearest topics from MERGE_COSINE; a mostly-English and a mostly-Spanish
# one (Spanish shares LANGUAGE_GAP apart) from MERGE_CROSS_LANGUAGE. On the demo corpus's fits,
# one issue split by language had centroids at 0.65-0.69, different issues across languages
# at most 0.63, and different issues in one language up to 0.77.
MERGE_COSINE = 0.80
MERGE_CROSS_LANGUAGE = 0.64
LANGUAGE_GAP = 0.35
MIN_KNOWN_LANGUAGE = 3  # messages with a known language a topic needs for its Spanish share
# An outlier joins its nearest topic from this cosine up. On the demo corpus, outliers below
# 0.5 went to the right issue 11-16% of the time (HDBSCAN's own members: 65%), above it 38-60%.
OUTLIER_THRESHOLD = 0.50
SMALL_GUIDE_MARGIN = 0.03  # small data: a message joins its nearest seed's group from this margin
SMALL_DISTANCE = 0.65  # small data: others are grouped up to this average cosine distance
DEGENERATE_SHARE = 0.5  # one HDBSCAN cluster holding more than this share: clustering failed
FALLBACK_MAX_DOCS = 3000  # the fallback clusters at most this many; the rest join as outliers


@dataclass
class Fit:
    """A fit's outcome: ``labels[i]`` indexes ``topics`` (−1: unassigned); ``scores[i]`` is the
    cosine to that topic's centroid, or to the nearest one if unassigned (NaN: no topics)."""

    labels: np.ndarray
    scores: np.ndarray
    topics: list[TopicSnapshot]
    model: Any = None
    method: str = "none"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def outlier_share(self) -> float:
        """Share of documents left unassigned."""
        return float(np.mean(self.labels == -1)) if len(self.labels) else 0.0


@dataclass(frozen=True)
class RefitResult:
    """What a refit did."""

    run_id: int
    n_docs: int
    n_topics: int
    outlier_share: float
    topics_created: int
    topics_kept: int
    topics_retired: int
    duration_s: float
    method: str
    model_dir: Path | None


def seed_texts() -> list[str]:
    """One text per taxonomy topic (its seed words), to embed as the topic's seed vector."""
    return [" ".join(words) for words in seed_topic_list()]


def refit(
    engine: Engine,
    settings: Settings,
    embedder: Embedder,
    now: datetime | None = None,
    models_dir: Path = model_store.MODELS_DIR,
    keep_runs: int = model_store.KEEP_RUNS,
) -> RefitResult:
    """Fit topics on the window ending at ``now``, update the registry and the messages."""
    started = time.perf_counter()
    now = now or utcnow()
    window_start = now - timedelta(days=settings.topic_window_days)
    with read_session(engine) as session:
        rows = session.execute(
            select(Message.id, Message.body, Message.language, Message.school)
            .where(Message.received_at >= window_start, Message.received_at <= now)
            .order_by(Message.received_at, Message.id)
        ).all()
    ids = [row.id for row in rows]
    vectors = cached_embeddings(engine, embedder, ids)
    seeds = embedder.encode(seed_texts()) if ids else None
    fit = fit_topics(
        [row.body for row in rows],
        vectors,
        settings,
        seeds,
        [row.language for row in rows],
        sorted({row.school for row in rows if row.school}),
    )
    draft = model_store.save_draft(fit.model, models_dir) if fit.model is not None else None
    try:
        with write_session(engine) as session:
            registry = apply_refit(session, fit.topics, now)
            _write_assignments(session, ids, fit, registry)
            run = ModelRun(
                fitted_at=now,
                n_docs=len(ids),
                window_start=window_start,
                window_end=now,
                params=_params(settings, embedder, fit),
                outlier_share=fit.outlier_share,
                topics_created=registry.created + registry.revived,
                topics_kept=registry.kept,
                topics_retired=registry.retired,
            )
            session.add(run)
    except BaseException:
        if draft is not None:
            model_store.discard(draft)
        raise
    rebuild_topic_counts(engine, since=window_start)  # the window's messages changed topics
    model_dir = None
    if draft is not None:
        registry_ids = dict(zip(fit.info["model_topics"], registry.ids, strict=True))
        model_dir = model_store.publish(draft, run.id, registry_ids, keep_runs)
    run.duration_s = round(time.perf_counter() - started, 3)
    with write_session(engine) as session:
        session.execute(
            update(ModelRun).where(ModelRun.id == run.id).values(duration_s=run.duration_s)
        )
    result = RefitResult(
        run_id=run.id,
        n_docs=len(ids),
        n_topics=len(fit.topics),
        outlier_share=fit.outlier_share,
        topics_created=run.topics_created,
        topics_kept=run.topics_kept,
        topics_retired=run.topics_retired,
        duration_s=run.duration_s or 0.0,
        method=fit.method,
        model_dir=model_dir,
    )
    log.info(
        "refit %s: %d messages, %d topics (%d new, %d kept, %d retired), %.0f%% unassigned, %.1f s",
        fit.method,
        result.n_docs,
        result.n_topics,
        result.topics_created,
        result.topics_kept,
        result.topics_retired,
        100 * result.outlier_share,
        result.duration_s,
    )
    return result


def _write_assignments(
    session: Session, ids: list[int], fit: Fit, registry: RegistryUpdate
) -> None:
    rows = [
        {
            "id": message_id,
            "topic_id": registry.ids[label] if label >= 0 else None,
            "topic_score": None if np.isnan(score) else round(float(score), 4),
        }
        for message_id, label, score in zip(ids, fit.labels, fit.scores, strict=True)
    ]
    for start in range(0, len(rows), 5000):
        session.execute(update(Message), rows[start : start + 5000])


def _params(settings: Settings, embedder: Embedder, fit: Fit) -> dict[str, Any]:
    return {
        "method": fit.method,
        "embedding_model": embedder.key,
        "window_days": settings.topic_window_days,
        "seed": settings.topic_seed,
        "min_topic_size": settings.min_topic_size,
        "umap": UMAP_PARAMS,
        "guide_margin": GUIDE_MARGIN,
        "merge_cosine": MERGE_COSINE,
        "merge_cross_language": MERGE_CROSS_LANGUAGE,
        "outlier_threshold": OUTLIER_THRESHOLD,
        **{k: v for k, v in fit.info.items() if k != "model_topics"},
    }


def fit_topics(
    docs: Sequence[str],
    embeddings: np.ndarray,
    settings: Settings,
    seed_vectors: np.ndarray | None = None,
    languages: Sequence[str | None] | None = None,
    schools: Sequence[str] = (),
) -> Fit:
    """Topics of ``docs`` (``embeddings``: their unit vectors). No database, no network.

    ``seed_vectors``: embeddings of :func:`seed_texts` (no guidance without them);
    ``languages``: each document's language code, if known (for the cross-language merge);
    ``schools``: school names, never mistaken for people's names in topic words.
    """
    docs = list(docs)
    n = len(docs)
    languages = list(languages) if languages is not None else [None] * n
    if n == 0:
        return _empty(0, "none")
    model, method = None, "bertopic"
    if n >= SMALL_DATA:
        vectorizer = make_vectorizer(settings, min_df=2, schools=schools)
        try:
            fitted = _fit_bertopic(docs, embeddings, settings, seed_vectors, vectorizer)
        except ValueError as exc:  # e.g. no word survives the vectorizer (emoji-only messages)
            log.warning("BERTopic fit failed (%s): small-data clustering instead", exc)
            fitted = None
        if fitted is not None:
            model, labels, info = fitted
    if model is None:
        method = "agglomerative"
        labels = _small_clusters(embeddings, settings, seed_vectors)
        if labels.max(initial=-1) < 0:
            return _empty(n, method)
        # min_df counts topics here (c-TF-IDF's documents are topics): with the few topics of
        # small data, 2 would drop most of their own words
        vectorizer = make_vectorizer(settings, min_df=1, schools=schools)
        try:
            model, labels, info = _fit_given(docs, embeddings, labels, vectorizer)
        except ValueError as exc:  # e.g. no word survives the vectorizer (emoji-only messages)
            log.warning("topic words unavailable (%s): topics without words", exc)
            return _without_words(embeddings, labels, method)
    info["initial_outlier_share"] = round(float(np.mean(labels == -1)), 4)
    labels, merged = _merge(model, docs, embeddings, labels, languages)
    info["merged_topics"] = merged
    labels = _reduce_outliers(model, docs, embeddings, labels)
    model.update_topics(
        docs,
        topics=labels.tolist(),
        top_n_words=TOP_N_WORDS,
        vectorizer_model=model.vectorizer_model,
        ctfidf_model=model.ctfidf_model,
    )
    return _finish(model, embeddings, labels, method, info)


def _empty(n: int, method: str) -> Fit:
    return Fit(np.full(n, -1), np.full(n, np.nan), [], None, method)


class _ExpectedNoise(logging.Filter):
    """Drops BERTopic warnings this pipeline triggers on purpose (topics passed to
    ``update_topics``; saving without an embedding model, which Pulse never saves)."""

    PHRASES = ("custom list of topic assignments", "without explicitly defining an embedding")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(phrase in record.getMessage() for phrase in self.PHRASES)


def _fit_bertopic(
    docs: list[str],
    embeddings: np.ndarray,
    settings: Settings,
    seeds: np.ndarray | None,
    vectorizer: Any,
) -> tuple[Any, np.ndarray, dict[str, Any]] | None:
    """Guided UMAP, then HDBSCAN, then BERTopic's topic words for those clusters; None when
    HDBSCAN finds no usable topics.

    UMAP and HDBSCAN run before BERTopic (which then takes the clusters as given) so that a
    degenerate clustering can be redone on the same layout: on a few hundred messages
    ``min_samples`` = 1.5 × the cluster size can leave one cluster holding most of them; HDBSCAN's
    default (``min_samples`` = cluster size) is tried next.
    """
    from hdbscan import HDBSCAN
    from umap import UMAP

    min_size = max(settings.min_topic_size, round(MIN_TOPIC_SHARE * len(docs)))
    space = _style_removed(embeddings)
    y, guided = _guide(space(embeddings), space(seeds) if seeds is not None else None)
    umap = UMAP(**UMAP_PARAMS, random_state=settings.topic_seed, n_jobs=1)
    # Identical messages (a copy-pasted campaign) share one UMAP point: exact duplicates make
    # UMAP's spectral initialisation fail, and its random fallback differs from run to run.
    # Rows keep their first occurrence's order, so a window without duplicates fits as is.
    _, first, copies = np.unique(guided, axis=0, return_index=True, return_inverse=True)
    if len(first) < SMALL_DATA:  # too few distinct messages for UMAP: the small-data way
        return None
    order = np.argsort(first)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    targets = y[first[order]] if y is not None else None
    layout = umap.fit_transform(guided[first[order]], y=targets)[position[copies.reshape(-1)]]
    for factor in (MIN_SAMPLES_FACTOR, 1.0):
        min_samples = round(factor * min_size)
        clusters = HDBSCAN(
            min_cluster_size=min_size,
            min_samples=min_samples,
            metric="euclidean",
            cluster_selection_method="eom",
            prediction_data=True,
        ).fit_predict(layout)
        if not _degenerate(clusters):
            break
    else:
        return None
    model, labels, _ = _fit_given(docs, embeddings, clusters, vectorizer)
    info = {
        "guided_share": round(float(np.mean(y != -1)), 4) if y is not None else 0.0,
        "min_cluster_size": min_size,
        "min_samples": min_samples,
    }
    return model, labels, info


def _degenerate(clusters: np.ndarray) -> bool:
    """Fewer than two clusters, or one holding more than :data:`DEGENERATE_SHARE` of all."""
    found = clusters[clusters >= 0]
    return len(np.unique(found)) < 2 or np.bincount(found).max() > DEGENERATE_SHARE * len(clusters)


def _style_removed(embeddings: np.ndarray) -> Any:
    """A map into the space the fit clusters in: minus the corpus mean and its top principal
    direction(s) (what all messages share: their being messages), rows re-normalised."""
    mean = embeddings.mean(axis=0, dtype=np.float64)
    centred = (embeddings - mean).astype(np.float32)
    top = _top_directions(centred.T.astype(np.float64) @ centred, STYLE_COMPONENTS)

    def space(rows: np.ndarray) -> np.ndarray:
        moved = (rows - mean).astype(np.float32)
        moved -= (moved @ top.T) @ top
        norms = np.linalg.norm(moved, axis=1, keepdims=True)
        return moved / np.where(norms == 0, 1, norms)

    return space


def _top_directions(gram: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` eigenvectors (rows) of a symmetric positive semi-definite matrix, by power
    iteration from a fixed start: deterministic, and faster than a full LAPACK ``eigh``."""
    found: list[np.ndarray] = []
    for _ in range(k):
        vector = np.ones(len(gram)) / np.sqrt(len(gram))
        for _ in range(2000):
            step = gram @ vector
            for done in found:
                step -= (step @ done) * done
            norm = np.linalg.norm(step)
            if norm == 0:
                break
            step /= norm
            if np.abs(step - vector).max() < 1e-9:
                vector = step
                break
            vector = step
        found.append(vector)
    return np.array(found, dtype=np.float32).reshape(k, len(gram))


def _guide(vectors: np.ndarray, seeds: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
    """UMAP targets (seed index, or −1) and the guided vectors."""
    if seeds is None:
        return None, vectors
    sims = vectors @ seeds.T
    best = sims.argmax(axis=1)
    top2 = np.sort(sims, axis=1)[:, -2:]
    guided = top2[:, 1] - top2[:, 0] >= GUIDE_MARGIN
    y = np.where(guided, best, -1)
    vectors = vectors.copy()
    vectors[guided] = (1 - GUIDE_NUDGE) * vectors[guided] + GUIDE_NUDGE * seeds[best[guided]]
    return (y if guided.any() else None), vectors


def _small_clusters(
    embeddings: np.ndarray, settings: Settings, seeds: np.ndarray | None
) -> np.ndarray:
    """Small-data topics: messages whose nearest taxonomy seed clearly beats the runner-up
    join that seed's group; the others are clustered by average linkage on cosine distance.
    Groups of at least ``min_size`` become topics, numbered by size (0 biggest); −1 the rest."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(embeddings)
    min_size = min(settings.min_topic_size, max(3, n // 6))
    groups = np.full(n, -1)
    if seeds is not None:
        sims = embeddings @ seeds.T
        top2 = np.sort(sims, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] >= SMALL_GUIDE_MARGIN
        groups[sure] = sims.argmax(axis=1)[sure]
    rest = np.flatnonzero(groups == -1)
    if len(rest) > FALLBACK_MAX_DOCS:  # bounded memory; the others may join as outliers later
        rest = rest[np.linspace(0, len(rest) - 1, FALLBACK_MAX_DOCS).astype(int)]
    if len(rest) >= 2:
        clusters = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=SMALL_DISTANCE
        ).fit_predict(embeddings[rest])
        groups[rest] = len(seeds if seeds is not None else ()) + clusters
    labels = np.full(n, -1)
    found, sizes = np.unique(groups[groups >= 0], return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    for number, group in enumerate(g for g in found[order] if np.sum(groups == g) >= min_size):
        labels[groups == group] = number
    return labels


def _fit_given(
    docs: list[str], embeddings: np.ndarray, clusters: np.ndarray, vectorizer: Any
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """BERTopic on clusters made beforehand: c-TF-IDF words per topic (seed words boosted),
    topic bookkeeping, save/load. It never embeds: embeddings are precomputed and cached."""
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction
    from bertopic.vectorizers import ClassTfidfTransformer

    bertopic_log = logging.getLogger("BERTopic")
    if not any(isinstance(f, _ExpectedNoise) for f in bertopic_log.filters):
        bertopic_log.addFilter(_ExpectedNoise())
    model = BERTopic(
        embedding_model=None,
        umap_model=BaseDimensionalityReduction(),
        hdbscan_model=BaseCluster(),
        vectorizer_model=vectorizer,
        ctfidf_model=ClassTfidfTransformer(reduce_frequent_words=True),
        seed_topic_list=seed_topic_list(),
        top_n_words=TOP_N_WORDS,
        language="multilingual",  # "english" would strip every non-ASCII letter from words
        verbose=False,
    )
    topics, _ = model.fit_transform(docs, embeddings, y=clusters)
    return model, np.asarray(topics), {}


def centroids(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Unit mean vectors of topics ``0..k-1``."""
    from scipy.sparse import csr_matrix

    assigned = np.flatnonzero(labels >= 0)
    members = csr_matrix(
        (np.ones(len(assigned), dtype=np.float32), (labels[assigned], assigned)),
        shape=(k, len(labels)),
    )
    sums = np.asarray(members @ embeddings, dtype=np.float32)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.where(norms == 0, 1, norms)


def spanish_shares(labels: np.ndarray, languages: Sequence[str | None], k: int) -> np.ndarray:
    """Per topic, the share of its messages of known language (en/es) that are Spanish; NaN
    when fewer than :data:`MIN_KNOWN_LANGUAGE` are known."""
    lang = np.array([(lg or "")[:2].lower() for lg in languages])
    shares = np.full(k, np.nan)
    for topic in range(k):
        members = lang[labels == topic]
        known = np.isin(members, ("en", "es"))
        if known.sum() >= MIN_KNOWN_LANGUAGE:
            shares[topic] = np.mean(members[known] == "es")
    return shares


def merge_groups(centres: np.ndarray, shares: np.ndarray | None = None) -> list[list[int]]:
    """Pairs of topics to merge: mutual nearest neighbours whose centroid cosine reaches
    :data:`MERGE_COSINE`; and a mostly-English and a mostly-Spanish topic (Spanish shares apart
    by :data:`LANGUAGE_GAP` or more) that are each other's nearest topic in the other language,
    from :data:`MERGE_CROSS_LANGUAGE` on.

    Mutual pairs only: a chain of close topics never collapses into one."""
    k = len(centres)
    if k < 2:
        return []
    cosine = centres @ centres.T
    np.fill_diagonal(cosine, -np.inf)
    candidates = [(cosine, MERGE_COSINE)]
    if shares is not None:
        other_language = np.nan_to_num(np.abs(shares[:, None] - shares[None, :])) >= LANGUAGE_GAP
        candidates.append((np.where(other_language, cosine, -np.inf), MERGE_CROSS_LANGUAGE))
    pairs: dict[tuple[int, int], float] = {}
    for similar, threshold in candidates:
        nearest = similar.argmax(axis=1)
        for a, b in enumerate(nearest.tolist()):
            if a < b and nearest[b] == a and similar[a, b] >= threshold:
                pairs[a, b] = float(similar[a, b])
    used: set[int] = set()
    groups = []
    for (a, b), _ in sorted(pairs.items(), key=lambda item: -item[1]):
        if a not in used and b not in used:
            groups.append([a, b])
            used |= {a, b}
    return groups


def _merge(
    model: Any,
    docs: list[str],
    embeddings: np.ndarray,
    labels: np.ndarray,
    languages: Sequence[str | None],
) -> tuple[np.ndarray, int]:
    """Merge close topics (:func:`merge_groups`), looking again after each round since merging
    moves centroids; BERTopic then merges them all in one ``merge_topics`` call."""
    owner = np.arange(int(labels.max(initial=-1)) + 1)  # fitted topic -> merged topic
    current, merged = labels, 0
    for _ in range(5):
        k = int(owner.max(initial=-1)) + 1
        pairs = merge_groups(
            centroids(embeddings, current, k), spanish_shares(current, languages, k)
        )
        if not pairs:
            break
        target = np.arange(k)
        for a, b in pairs:
            target[b] = a
        owner = np.unique(target, return_inverse=True)[1][owner]
        current = np.where(labels >= 0, owner[np.maximum(labels, 0)], -1)
        merged += len(pairs)
    if not merged:
        return labels, 0
    groups = [np.flatnonzero(owner == g).tolist() for g in range(int(owner.max()) + 1)]
    model.merge_topics(docs, [g for g in groups if len(g) > 1])
    return np.asarray(model.topics_), merged


def _reduce_outliers(
    model: Any, docs: list[str], embeddings: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Outliers join their nearest topic from :data:`OUTLIER_THRESHOLD` on; joining moves the
    centroids, so look again (a few rounds at most)."""
    for _ in range(3):
        if not (labels == -1).any() or labels.max(initial=-1) < 0:
            break
        _set_topic_embeddings(model, embeddings, labels)
        reduced = np.asarray(
            model.reduce_outliers(
                docs,
                labels.tolist(),
                strategy="embeddings",
                embeddings=embeddings,
                threshold=OUTLIER_THRESHOLD,
            )
        )
        if np.array_equal(reduced, labels):
            break
        labels = reduced
    return labels


def _set_topic_embeddings(model: Any, embeddings: np.ndarray, labels: np.ndarray) -> None:
    """Topic embeddings = unit centroids of the real embeddings (not of the guided space), so
    outlier reduction and a loaded model's ``transform`` measure what live assignment does."""
    k = int(labels.max(initial=-1)) + 1
    rows = centroids(embeddings, labels, k)
    if (labels == -1).any():
        outliers = embeddings[labels == -1].mean(axis=0, keepdims=True)
        rows = np.vstack([outliers, rows])
    model.topic_embeddings_ = rows


def _finish(
    model: Any, embeddings: np.ndarray, labels: np.ndarray, method: str, info: dict[str, Any]
) -> Fit:
    k = int(labels.max(initial=-1)) + 1
    centres = centroids(embeddings, labels, k)
    _set_topic_embeddings(model, embeddings, labels)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    topics = [
        TopicSnapshot(
            centroid=centres[t],
            words=[(w, float(s)) for w, s in (model.get_topic(t) or []) if w],
            size=int(sizes[t]),
        )
        for t in range(k)
    ]
    scores = _scores(embeddings, labels, centres)
    info["model_topics"] = list(range(k))
    return Fit(labels, scores, topics, model, method, info)


def _scores(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Cosine to the own topic's centroid; for unassigned messages, to the nearest centroid
    (as live assignment stores it); NaN when there are no topics."""
    if not len(centres):
        return np.full(len(labels), np.nan)
    sims = embeddings @ centres.T
    own = sims[np.arange(len(labels)), np.maximum(labels, 0)]
    return np.where(labels >= 0, own, sims.max(axis=1))


def _without_words(embeddings: np.ndarray, labels: np.ndarray, method: str) -> Fit:
    k = int(labels.max(initial=-1)) + 1
    centres = centroids(embeddings, labels, k)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    topics = [TopicSnapshot(centroid=centres[t], words=[], size=int(sizes[t])) for t in range(k)]
    return Fit(labels, _scores(embeddings, labels, centres), topics, None, method)
