"""Fitted topic models on disk: one safetensors folder per refit under data/models/<run id>/.

BERTopic saves its topics, c-TF-IDF and topic embeddings (no UMAP/HDBSCAN, no embedder);
``registry.json`` beside them maps the fit's topic numbers to registry topic IDs. Only the
newest few runs are kept.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from core.settings import DATA_DIR

MODELS_DIR = DATA_DIR / "models"
KEEP_RUNS = 3
REGISTRY_FILE = "registry.json"


def save_draft(topic_model: Any, models_dir: Path) -> Path:
    """Save ``topic_model`` to a draft folder in ``models_dir`` (renamed by :func:`publish`)."""
    draft = models_dir / f".draft-{uuid.uuid4().hex}"
    draft.mkdir(parents=True)
    try:
        topic_model.save(
            draft, serialization="safetensors", save_ctfidf=True, save_embedding_model=False
        )
    except BaseException:
        shutil.rmtree(draft, ignore_errors=True)
        raise
    return draft


def publish(draft: Path, run_id: int, registry_ids: dict[int, int], keep: int = KEEP_RUNS) -> Path:
    """Move a draft to ``<models_dir>/<run_id>`` with its topic -> registry ID map, and delete
    all but the newest ``keep`` runs."""
    mapping = {str(topic): registry_id for topic, registry_id in registry_ids.items()}
    (draft / REGISTRY_FILE).write_text(json.dumps(mapping, indent=1))
    final = draft.parent / str(run_id)
    shutil.rmtree(final, ignore_errors=True)  # a leftover of a database that was reset
    draft.rename(final)
    prune(draft.parent, keep)
    return final


def prune(models_dir: Path, keep: int = KEEP_RUNS) -> None:
    """Delete saved runs but the newest ``keep`` (by run id)."""
    runs = sorted(
        (p for p in models_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    for old in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def discard(draft: Path) -> None:
    """Delete a draft that will not be published."""
    shutil.rmtree(draft, ignore_errors=True)


def latest_run_dir(models_dir: Path = MODELS_DIR) -> Path | None:
    """The folder of the newest saved run, if any."""
    if not models_dir.is_dir():
        return None
    runs = [p for p in models_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(runs, key=lambda p: int(p.name), default=None)


def load_model(path: Path, embedding_model: Any = None) -> tuple[Any, dict[int, int]]:
    """The BERTopic model saved in ``path`` and its topic -> registry ID map."""
    from bertopic import BERTopic  # slow import: only where a model is loaded

    model = BERTopic.load(str(path), embedding_model=embedding_model)
    mapping = json.loads((path / REGISTRY_FILE).read_text())
    return model, {int(topic): int(registry_id) for topic, registry_id in mapping.items()}
