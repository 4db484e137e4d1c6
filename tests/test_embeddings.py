"""Embeddings: the default model is installed and offline; each message is embedded once."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from sqlalchemy import func, select
from test_runner import ListSource

from core.db import read_session
from core.models import Embedding
from ingestion.runner import sync_source
from topics.embeddings import (
    DEFAULT_MODEL,
    LocalSentenceTransformer,
    cached_embeddings,
    from_bytes,
    load_embedder,
    to_bytes,
)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(DEFAULT_MODEL)


class Counting:
    """Wraps an embedder and counts the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.key, self.dim, self.texts = inner, inner.key, inner.dim, []

    def encode(self, texts):
        self.texts += list(texts)
        return self.inner.encode(texts)


def test_the_default_model_is_multilingual_and_needs_no_network(embedder, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fresh = load_embedder(DEFAULT_MODEL)  # loads its weights with the network blocked
    vectors = fresh.encode([
        "The school bus was late again this morning",
        "El autobús escolar llegó tarde otra vez esta mañana",
        "The cafeteria ran out of lunch",
    ])  # fmt: skip
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    same_issue, other_issue = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert same_issue > other_issue + 0.2  # English and Spanish share one space


def test_embeddings_are_computed_once_per_message_and_cached(db_engine, settings, embedder):
    sync_source(db_engine, ListSource(["bus late", "lunch menu", "¿hay clases mañana?"]), settings)
    counting = Counting(embedder)
    first = cached_embeddings(db_engine, counting, [3, 1, 2, 1])
    assert sorted(counting.texts) == ["bus late", "lunch menu", "¿hay clases mañana?"]
    assert np.array_equal(first[1], first[3])
    again = cached_embeddings(db_engine, counting, [1, 2, 3])
    assert len(counting.texts) == 3  # nothing embedded twice
    assert np.allclose(again, first[[1, 2, 0]])
    with read_session(db_engine) as session:
        stored = session.scalar(select(func.count()).select_from(Embedding))
    assert stored == 3
    assert cached_embeddings(db_engine, counting, []).shape == (0, 512)
    with pytest.raises(KeyError, match="no messages with ids"):
        cached_embeddings(db_engine, counting, [99])


def test_vectors_round_trip_as_float32_bytes():
    vector = np.arange(4, dtype=np.float64) / 3
    assert np.allclose(from_bytes(to_bytes(vector)), vector.astype(np.float32))


def test_a_local_model_path_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist: set PULSE_EMBEDDING_MODEL"):
        LocalSentenceTransformer(tmp_path / "missing-model")


def test_a_local_model_without_sentence_transformers_installed_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"sentence-transformers package .* is not installed"):
        load_embedder(str(tmp_path))
