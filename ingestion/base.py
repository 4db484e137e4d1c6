"""The connector contract every source implements (DESIGN.md, "Connector")."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

Cursor = dict[str, Any] | None
MAX_EXTERNAL_ID = 255  # messages.external_id is VARCHAR(255)


def stable_external_id(value: str) -> str:
    """``value`` if it fits the external_id column, else a hash of it (just as stable)."""
    if len(value) <= MAX_EXTERNAL_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class RawMessage:
    """A message as a source delivered it, before normalisation.

    ``body`` is text, or MIME bytes for email. ``source_kind`` overrides the connector's kind
    (the demo source delivers emails, texts and posts).
    """

    source_name: str
    external_id: str
    received_at: datetime
    body: str | bytes
    author: str | None = None
    subject: str | None = None
    source_kind: str | None = None
    school: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Connector(Protocol):
    """A source of messages. ``fetch`` returns the messages after ``cursor`` and the new cursor."""

    name: str
    kind: str
    interval_seconds: int

    def fetch(self, cursor: Cursor) -> tuple[Iterable[RawMessage], Cursor]: ...
