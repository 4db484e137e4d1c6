"""Table builders: plain functions from query results to grid rows (no Dash, no database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.queries import SourceHealth

STATUS_LABELS = {"ok": "OK", "failing": "Failing", "down": "DOWN", "waiting": "Not tried yet"}


def ago(when: datetime | None, now: datetime) -> str:
    """A short human 'how long ago' ("42 s ago", "5 min ago", "3 h ago", "2 days ago")."""
    if when is None:
        return "never"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 36 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def source_health_rows(
    health: list[SourceHealth], now: datetime, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """One grid row per source, down and failing sources first."""
    order = {"down": 0, "failing": 1, "waiting": 2, "ok": 3}
    rows = []
    for h in sorted(health, key=lambda h: (order[h.status], h.name)):
        rows.append(
            {
                "source": h.name,
                "channel": h.kind,
                "status": STATUS_LABELS[h.status],
                "last_success": ago(h.last_success_at, now),
                "last_attempt": h.last_attempt_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
                if h.last_attempt_at
                else "never",
                "failures_in_a_row": h.consecutive_failures,
                "messages": h.messages_total,
                "fetched": h.fetched_total,
                "failed_syncs": h.failures_total,
                "every": f"{h.interval_seconds} s" if h.interval_seconds else "push",
                "last_error": h.last_error or "",
            }
        )
    return rows
