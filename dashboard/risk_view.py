"""What the risk queue page shows and does, as plain functions (no Dash): the queue for an
analyst, audited whenever message text is sent, and confirm/dismiss through
topics/risk_review.py.
"""

from __future__ import annotations

import hashlib
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from dashboard.access import audit_message_read, require_role
from topics.risk_review import QueueItem, confirm, dismiss, review_queue

DECISIONS = {"confirm": confirm, "dismiss": dismiss}


def queue_signature(items: list[QueueItem]) -> str:
    """Changes whenever the queue's messages, levels or reviews change."""
    state = "|".join(f"{i.id}:{i.level}:{i.score}:{i.review}" for i in items)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def queue_rows(items: list[QueueItem], tz: ZoneInfo) -> list[dict[str, Any]]:
    """Grid rows; the text fields are plain strings (the grid shows them as text, never HTML)."""
    return [
        {
            "id": i.id,
            "received": i.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "level": i.level,
            "categories": ", ".join(i.categories),
            "score": round(i.score, 2),
            "channel": i.source_kind,
            "school": i.school or "",
            "subject": i.subject or "",
            "body": i.body,
            "notes": ", ".join(
                note
                for flag, note in ((i.negated, "negated"), (i.third_party, "third party"))
                if flag
            ),
            "review": i.review or "waiting",
            "reviewed_by": i.reviewed_by or "",
            "reason": i.review_reason or "",
        }
        for i in items
    ]


def show_queue(
    engine: Engine,
    username: str | None,
    role: str | None,
    include_reviewed: bool,
    seen_signature: str | None,
    tz: ZoneInfo,
) -> tuple[list[dict[str, Any]], str] | None:
    """The queue's rows and signature for an analyst, or None when it has not changed since
    ``seen_signature`` (nothing is sent then). Every message whose text is sent is audited."""
    require_role(role, "analyst", "reading the risk queue")
    items = review_queue(engine, include_reviewed=include_reviewed)
    signature = queue_signature(items)
    if signature == seen_signature:
        return None
    audit_message_read(engine, username, [i.id for i in items])
    return queue_rows(items, tz), signature


def review(
    engine: Engine,
    decision: str,
    message_ids: list[int],
    reason: str | None,
    username: str | None,
    role: str | None,
) -> str:
    """Confirm or dismiss the selected flags with a reason (analyst); returns what was done."""
    require_role(role, "analyst", "reviewing risk flags")
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}: use confirm or dismiss")
    if not message_ids:
        raise ValueError("no message selected: tick the messages to review first")
    for message_id in message_ids:
        DECISIONS[decision](engine, message_id, username or "", reason or "")
    done = "confirmed" if decision == "confirm" else "dismissed"
    return f"{done} message{'s' if len(message_ids) > 1 else ''} {', '.join(map(str, message_ids))}"
