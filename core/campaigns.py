"""Near-duplicate and campaign detection: copy-paste letters and mass-forwarded texts.

Each stored message carries ``content_hash`` (equal for texts that differ only in case, accents,
punctuation and spacing) and ``near_hash`` (a 64-bit SimHash of its words). Messages whose near
hashes are at most ``MAX_DISTANCE`` bits apart are one campaign (on the demo corpus, edited copies
of a letter differ by 1-4 bits and unrelated messages by 12 or more). Candidates are found by
banding: cut into ``MAX_DISTANCE + 1`` bands, two hashes within that distance agree on a band.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from core.db import read_session
from core.models import Message

MAX_DISTANCE = 5
BANDS = [(start, min(start + 11, 64)) for start in range(0, 64, 11)]  # 6 bands of <= 11 bits


@dataclass(frozen=True)
class Campaign:
    """A group of near-identical messages: ``size`` in all, ``identical`` of them word for word."""

    size: int
    identical: int
    message_ids: list[int]


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (signed or unsigned)."""
    return ((a ^ b) & (2**64 - 1)).bit_count()


def group_near_duplicates(
    rows: Iterable[tuple[int, str, int | None]],
) -> list[list[int]]:
    """Groups of message IDs from ``(id, content_hash, near_hash)`` rows, largest first."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        parent[find(a)] = find(b)

    first_by_hash: dict[str, int] = {}
    near: dict[int, int] = {}  # representative id -> near hash, one per distinct content
    for message_id, content, near_hash in rows:
        parent[message_id] = message_id
        if content in first_by_hash:
            union(message_id, first_by_hash[content])
        else:
            first_by_hash[content] = message_id
            if near_hash is not None:
                near[message_id] = near_hash
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for message_id, value in near.items():
        for start, end in BANDS:
            key = (start, (value >> start) & (2 ** (end - start) - 1))
            for other in buckets[key]:
                if find(other) != find(message_id) and hamming(value, near[other]) <= MAX_DISTANCE:
                    union(message_id, other)
            buckets[key].append(message_id)
    groups: dict[int, list[int]] = defaultdict(list)
    for message_id in parent:
        groups[find(message_id)].append(message_id)
    return sorted(groups.values(), key=len, reverse=True)


def campaigns(
    engine: Engine,
    since: datetime,
    until: datetime,
    topic_id: int | None = None,
    min_size: int = 3,
) -> list[Campaign]:
    """Near-identical message groups received in ``[since, until)``, optionally in one topic."""
    query = select(Message.id, Message.content_hash, Message.near_hash).where(
        Message.received_at >= since, Message.received_at < until
    )
    if topic_id is not None:
        query = query.where(Message.topic_id == topic_id)
    with read_session(engine) as session:
        rows = [tuple(row) for row in session.execute(query)]
    content_of = {row[0]: row[1] for row in rows}
    result = []
    for ids in group_near_duplicates(rows):
        if len(ids) < min_size:
            break
        identical = Counter(content_of[i] for i in ids).most_common(1)[0][1]
        result.append(Campaign(size=len(ids), identical=identical, message_ids=sorted(ids)))
    return result
