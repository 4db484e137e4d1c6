"""Measure the risk detector: throughput (rules only, with similarity and the learned scorer) and
labelled-set quality.

    .venv/bin/python benchmarks/bench_risk.py [--no-similarity] [--errors tune|heldout|all]

Quality is reported on tests/data/risk_labelled.jsonl as a whole and on its two halves: the
"tune" half (the rules and thresholds were adjusted while looking at its mistakes) and the
"held-out" half (never looked at while tuning), split at random per batch, level and language
with a fixed seed (see ``load_labelled``). The learned scorer (``topics/risk_scorer.py``) is
trained on the tune halves only (and the demo corpus's tune half). "held-out, batches 1-2" is
the held-out half of the messages written before batch 3, comparable with figures reported
before batch 3 existed. The demo corpus
(data/demo, 778 everyday messages with their own risk labels) gives a further false-positive
check on ordinary traffic.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import PROJECT_ROOT
from topics.risk import CATEGORIES, RiskAssessment, RiskModel, load_risk_model

LABELLED = PROJECT_ROOT / "tests" / "data" / "risk_labelled.jsonl"
DEMO = PROJECT_ROOT / "data" / "demo"
SPLIT_SEED = 6  # issue 6


def load_labelled(path: Path = LABELLED) -> list[dict]:
    """The labelled messages, each with a "half" key: "tune" or "heldout".

    Each batch of messages (rows without a ``batch`` key are batch 1) is split on its own, at
    random per level and language with a fixed seed, so adding a batch never moves a message
    of an earlier batch from one half to the other.
    """
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    groups: dict[tuple[int, str, str], list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["id"]):
        groups[(row.get("batch", 1), row["level"], row["lang"])].append(row)
    rng = random.Random(SPLIT_SEED)
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        for i, row in enumerate(members):
            row["half"] = "tune" if i % 2 == 0 else "heldout"
    return rows


def load_demo() -> list[dict]:
    """The demo corpus as rows with ``body``, ``level`` (its ``risk`` label), ``lang`` and
    ``half``: by id, every other message is "tune" (the learned scorer trains on those)."""
    rows = []
    for path in sorted(DEMO.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                text = "\n".join(p for p in (row.get("subject"), row["body"]) if p)
                rows.append({
                    "body": text, "level": row["risk"], "lang": row["lang"], "id": row["id"],
                    "hard_negative": row.get("hard_negative", False),
                })  # fmt: skip
    rows.sort(key=lambda r: r["id"])
    for i, row in enumerate(rows):
        row["half"] = "tune" if i % 2 == 0 else "heldout"
    return rows


def ratio(hits: int, total: int) -> str:
    return f"{hits}/{total} = {hits / total:.1%}" if total else "-"


def quality(rows: list[dict], results: list[RiskAssessment]) -> dict[str, str]:
    """The figures of one set of labelled rows."""
    pairs = list(zip(rows, results, strict=True))
    urgent = [(r, a) for r, a in pairs if r["level"] == "urgent"]
    review = [(r, a) for r, a in pairs if r["level"] == "review"]
    risky = urgent + review
    negatives = [(r, a) for r, a in pairs if r["level"] == "none"]
    figures = {
        "urgent -> urgent": ratio(sum(a.level == "urgent" for _, a in urgent), len(urgent)),
        "urgent -> >=review": ratio(sum(a.level != "none" for _, a in urgent), len(urgent)),
        "review -> >=review": ratio(sum(a.level != "none" for _, a in review), len(review)),
        "review -> review": ratio(sum(a.level == "review" for _, a in review), len(review)),
        "hard negatives flagged": ratio(
            sum(a.level != "none" for _, a in negatives), len(negatives)
        ),
    }
    if risky and "categories" in risky[0][0]:
        for category in CATEGORIES:
            mine = [(r, a) for r, a in urgent if category in r["categories"]]
            figures[f"urgent -> urgent: {category}"] = ratio(
                sum(a.level == "urgent" for _, a in mine), len(mine)
            )
        found = [(r, a) for r, a in risky if a.level != "none"]
        figures["category found (of flagged)"] = ratio(
            sum(bool(set(r["categories"]) & set(a.categories)) for r, a in found), len(found)
        )
        figures["negated flag correct"] = ratio(
            sum(r["negated"] == a.negated for r, a in found), len(found)
        )
        tagged = [(r, a) for r, a in found if r["negated"]]
        figures["negated: found"] = ratio(sum(a.negated for _, a in tagged), len(tagged))
        figures["third_party flag correct"] = ratio(
            sum(r["third_party"] == a.third_party for r, a in found), len(found)
        )
        tagged = [(r, a) for r, a in found if r["third_party"]]
        figures["third_party: found"] = ratio(sum(a.third_party for _, a in tagged), len(tagged))
    return figures


def print_table(title: str, columns: dict[str, dict[str, str]]) -> None:
    names = list(columns)
    keys = list(dict.fromkeys(k for column in columns.values() for k in column))
    width = max(len(k) for k in keys)
    cell = max(20, *(len(v) for column in columns.values() for v in column.values()))
    print(f"\n{title}")
    print(f"{'':{width}}  " + "  ".join(f"{n:>{cell}}" for n in names))
    for key in keys:
        print(f"{key:{width}}  " + "  ".join(f"{columns[n].get(key, ''):>{cell}}" for n in names))


def throughput(model: RiskModel, texts: list[str], embeddings=None, repeat: int = 3) -> str:
    """Messages per second: CPU time of this process (steady when other work shares the machine,
    best of ``repeat`` runs) and wall-clock time."""
    model.assess_many(texts[:10], None if embeddings is None else embeddings[:10])  # warm
    cpu = wall = float("inf")
    for _ in range(repeat):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        model.assess_many(texts, embeddings)
        cpu = min(cpu, time.process_time() - cpu_start)
        wall = min(wall, time.perf_counter() - wall_start)
    return f"{len(texts) / cpu:,.0f} msgs/s CPU, {len(texts) / wall:,.0f} wall"


def show_errors(rows: list[dict], results: list[RiskAssessment], half: str) -> None:
    print(f"\nmistakes on the {half} half:")
    for row, result in zip(rows, results, strict=True):
        if half != "all" and row["half"] != half:
            continue
        wrong = result.level != row["level"]
        if row["level"] != "none" and result.level != "none":
            wrong = wrong or result.negated != row["negated"]
            wrong = wrong or result.third_party != row["third_party"]
            wrong = wrong or not set(row["categories"]) & set(result.categories)
        if wrong:
            print(
                f"{row['id']} want {row['level']}/{','.join(row['categories'])}"
                f" neg={row['negated']:d} tp={row['third_party']:d}  got {result.level}/"
                f"{','.join(result.categories)} neg={result.negated:d} tp={result.third_party:d}"
                f" {result.matched}\n    {row['body']!r}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-similarity", action="store_true", help="rules only")
    parser.add_argument("--errors", choices=["tune", "heldout", "all"])
    args = parser.parse_args()

    rows = load_labelled()
    demo = load_demo()
    texts = [r["body"] for r in rows]
    rules_only = load_risk_model()
    speed = {
        "rules only, labelled set": throughput(rules_only, texts, repeat=10),
        "rules only, demo corpus": throughput(rules_only, [d["body"] for d in demo]),
    }
    models = {"rules": rules_only}
    if not args.no_similarity:
        from topics.embeddings import load_embedder

        embedder = load_embedder()
        start = time.perf_counter()
        models["rules+similarity+scorer"] = load_risk_model(embedder)
        speed["load model + embed examples"] = f"{time.perf_counter() - start:.2f} s"
        vectors = embedder.encode(texts)
        speed["with similarity+scorer, embedding given"] = throughput(
            models["rules+similarity+scorer"], texts, vectors
        )
        speed["with similarity+scorer, embedding computed"] = throughput(
            models["rules+similarity+scorer"], texts, repeat=1
        )
    print_table("throughput", {"": speed})

    for name, model in models.items():
        vectors = None
        if name != "rules":
            vectors = model.embedder.encode(texts)
        results = model.assess_many(texts, vectors)
        columns = {}
        for label, keep in (
            ("all", lambda r: True),
            ("tune half", lambda r: r["half"] == "tune"),
            ("held-out half", lambda r: r["half"] == "heldout"),
            ("held-out, batches 1-2", lambda r: r["half"] == "heldout" and r.get("batch", 1) < 3),
            ("English", lambda r: r["lang"] == "en"),
            ("Spanish", lambda r: r["lang"] == "es"),
        ):
            chosen = [(r, a) for r, a in zip(rows, results, strict=True) if keep(r)]
            columns[label] = quality([r for r, _ in chosen], [a for _, a in chosen])
        print_table(f"quality on {LABELLED.name}: {name}", columns)
        all_results = model.assess_many([d["body"] for d in demo])
        demo_columns = {}
        for label, half in (("demo corpus", None), ("demo held-out half", "heldout")):
            pairs = [(d, a) for d, a in zip(demo, all_results, strict=True)
                     if half is None or d["half"] == half]  # fmt: skip
            column = quality([d for d, _ in pairs], [a for _, a in pairs])
            del column["hard negatives flagged"]  # its "none" rows are everyday messages
            everyday = [(d, a) for d, a in pairs if d["level"] == "none"]
            column["everyday messages flagged"] = ratio(
                sum(a.level != "none" for _, a in everyday), len(everyday)
            )
            hard = [(d, a) for d, a in everyday if d["hard_negative"]]
            column["its hard negatives flagged"] = ratio(
                sum(a.level != "none" for _, a in hard), len(hard)
            )
            demo_columns[label] = column
        print_table(f"demo corpus: {name}", demo_columns)
        if args.errors:
            show_errors(rows, results, args.errors)


if __name__ == "__main__":
    main()
