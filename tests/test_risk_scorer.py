"""The learned risk scorer: its shipped weights, training, that it only ever raises the rules'
level, and its recall on the held-out halves of the labelled set (never trained on)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.bench_risk import load_demo, load_labelled
from topics import risk_scorer
from topics.embeddings import load_embedder
from topics.risk import RANK, RiskModel, load_risk_model, rules
from topics.risk_scorer import RiskScorer, load_scorer, train


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.fixture(scope="module")
def scored(embedder):
    """Each labelled row with the rules-only and the full (rules, similarity, scorer) result."""
    rows = load_labelled()
    texts = [row["body"] for row in rows]
    full = load_risk_model(embedder).assess_many(texts, embedder.encode(texts))
    return list(zip(rows, load_risk_model().assess_many(texts), full, strict=True))


def test_the_shipped_scorer_matches_the_default_embeddings(embedder):
    scorer = load_scorer()
    assert scorer is not None and scorer.embedder_key == embedder.key
    assert len(scorer.risk_weights) == len(scorer.urgent_weights) == embedder.dim
    assert 0.5 < scorer.raise_review < 1 and 0.5 < scorer.raise_urgent < 1
    assert load_risk_model(embedder).scorer == scorer
    assert load_risk_model().scorer is None  # ingest: rules only, no embeddings


def test_a_broken_scorer_file_names_itself_and_the_fix(tmp_path):
    path = tmp_path / "scorer.json"
    path.write_text(json.dumps({"embedder_key": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"scorer\.json.*python -m topics\.risk_scorer"):
        load_scorer(path)
    assert load_scorer(tmp_path / "missing.json") is None


def test_a_scorer_for_other_embeddings_is_refused(embedder):
    scorer = RiskScorer("other-model", [0.0] * 4, 0.0, [0.0] * 4, 0.0, 0.6, 0.7)
    with pytest.raises(ValueError, match=r"other-model.*retrain"):
        RiskModel(rules(), embedder, scorer=scorer)


def test_raised_only_ever_raises():
    always = RiskScorer("k", [0.0, 0.0], 10.0, [0.0, 0.0], 10.0, 0.6, 0.7)  # p = 1.0
    never = RiskScorer("k", [0.0, 0.0], -10.0, [0.0, 0.0], -10.0, 0.6, 0.7)  # p = 0.0
    vector = np.zeros(2, dtype=np.float32)
    assert always.raised("none", False, vector)[0] == "urgent"
    assert always.raised("review", True, vector)[0] == "review"  # negated: stays review
    for level in ("none", "review", "urgent"):
        assert never.raised(level, False, vector) == (level, 0.0)
        assert RANK[always.raised(level, False, vector)[0]] >= RANK[level]


def test_train_sets_thresholds_from_the_training_data_and_round_trips(tmp_path):
    rng = np.random.default_rng(6)
    centres = {"none": rng.normal(size=8), "review": rng.normal(size=8),
               "urgent": rng.normal(size=8)}  # fmt: skip
    levels = [level for level in centres for _ in range(30)]
    vectors = np.array([centres[level] + rng.normal(scale=0.3, size=8) for level in levels])
    scorer = train(vectors, levels, "toy")
    p_risk, p_urgent = scorer.probabilities(vectors)
    labels = np.array(levels)
    assert p_risk[labels != "none"].mean() > 0.9 > 0.1 > p_risk[labels == "none"].mean()
    assert p_urgent[labels == "urgent"].mean() > 0.9
    path = tmp_path / "scorer.json"
    scorer.save(path)
    assert load_scorer(path) == scorer
    with pytest.raises(ValueError, match="unknown risk level"):
        train(vectors, ["high"] * len(levels), "toy")
    with pytest.raises(ValueError, match="needs none, review and urgent"):
        train(vectors, ["none"] * len(levels), "toy")


def test_the_scorer_never_lowers_the_rules(scored):
    assert all(RANK[full.level] >= RANK[rule.level] for _, rule, full in scored)
    raised = [full for _, rule, full in scored if full.level != rule.level]
    assert raised and all(any(m.startswith("~") for m in full.matched) for full in raised)
    assert all(full.categories for full in raised)


def test_held_out_recall_with_the_scorer(scored):
    """The held-out halves were never trained on: these are the honest figures (see report)."""
    held = [(r, rule, full) for r, rule, full in scored if r["half"] == "heldout"]
    urgent = [(rule, full) for r, rule, full in held if r["level"] == "urgent"]
    rules_recall = sum(rule.level == "urgent" for rule, _ in urgent) / len(urgent)
    full_recall = sum(full.level == "urgent" for _, full in urgent) / len(urgent)
    assert full_recall >= 0.92 and full_recall >= rules_recall + 0.05
    assert sum(full.level != "none" for _, full in urgent) / len(urgent) >= 0.96
    negatives = [full for r, _, full in held if r["level"] == "none"]
    assert sum(full.level != "none" for full in negatives) / len(negatives) <= 0.12


def test_everyday_traffic_is_not_flooded(embedder):
    """The demo corpus's held-out half (the scorer trained on the other half)."""
    everyday = [d for d in load_demo() if d["half"] == "heldout" and d["level"] == "none"]
    texts = [d["body"] for d in everyday]
    full = load_risk_model(embedder).assess_many(texts, embedder.encode(texts))
    rules_only = load_risk_model().assess_many(texts)
    flagged, by_rules = (sum(a.level != "none" for a in found) for found in (full, rules_only))
    assert flagged / len(texts) <= 0.05 and flagged <= by_rules + 3


def test_the_scorer_file_stays_small():
    assert risk_scorer.SCORER_FILE.stat().st_size < 64_000
