"""Who gets which alert: recipient groups by alert kind and topic, from a TOML file.

The routes file (``PULSE_ALERT_ROUTES_FILE``, default ``alerts.toml``; see
``alerts.example.toml``) lists groups::

    [[group]]
    name = "transportation"
    recipients = ["transportation.director@district.example"]
    kinds = ["spike", "emerging"]       # default: every kind
    topics = ["transportation", 17]     # taxonomy seed, words of the label, or a topic id
    authorised = false                  # may read message text in risk alerts

An alert goes to every group whose kinds include its kind and, when the group lists topics,
whose topics include the alert's topic (a string matches the topic's taxonomy seed, or whole
words of its label, case-insensitively; an integer its id). A group that lists topics never
takes an alert without a topic (source down, risk, a group of unassigned messages).

Alerts no group takes go to ``PULSE_ALERT_RECIPIENTS`` (the ``default`` group, not
authorised); without a routes file every alert goes there. Only authorised groups see the
text of risk messages; the others get a link-only email (the dashboard checks access).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.outbox import ADDRESS
from core.models import ALERT_KINDS
from core.settings import PROJECT_ROOT, Settings

DEFAULT_GROUP = "default"
GROUP_KEYS = frozenset({"name", "recipients", "kinds", "topics", "authorised"})


@dataclass(frozen=True)
class RecipientGroup:
    """A named list of recipients and the alerts they take."""

    name: str
    recipients: tuple[str, ...]
    kinds: frozenset[str] = frozenset(ALERT_KINDS)
    topics: tuple[str | int, ...] = ()
    authorised: bool = False

    def takes(
        self, kind: str, topic_id: int | None, seed: str | None = None, label: str | None = None
    ) -> bool:
        """Whether an alert of ``kind`` about this topic (if any) goes to this group."""
        if kind not in self.kinds:
            return False
        if not self.topics:
            return True
        if topic_id is None:
            return False
        return any(_topic_matches(entry, topic_id, seed, label) for entry in self.topics)


@dataclass(frozen=True)
class Routes:
    """The routing groups and the default group for everything else."""

    groups: tuple[RecipientGroup, ...] = ()
    default: RecipientGroup | None = None

    def route(
        self, kind: str, topic_id: int | None, seed: str | None = None, label: str | None = None
    ) -> list[RecipientGroup]:
        """The groups an alert goes to (the default group when no other takes it; may be [])."""
        found = [group for group in self.groups if group.takes(kind, topic_id, seed, label)]
        if not found and self.default is not None:
            found = [self.default]
        return found

    @property
    def anyone(self) -> bool:
        """Whether any alert can reach anybody."""
        return bool(self.groups) or self.default is not None


def load_routes(settings: Settings, path: Path | None = None) -> Routes:
    """The routes in ``path`` (default ``settings.alert_routes_file``, relative to the project
    folder); a missing file routes everything to ``settings.alert_recipients``.

    Raises ``ValueError`` naming the file and the bad group when the file is malformed.
    """
    path = path or settings.alert_routes_file
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    default = _default_group(settings.alert_recipients)
    if not path.exists():
        return Routes((), default)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return parse_routes(document, default)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def parse_routes(document: Mapping[str, Any], default: RecipientGroup | None = None) -> Routes:
    """Routes from a parsed routes document (see the module docstring)."""
    unknown = set(document) - {"group"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}: only [[group]] tables are allowed")
    tables = document.get("group", [])
    if not isinstance(tables, list):
        raise ValueError("`group` must be an array of tables: write [[group]]")
    groups = tuple(_group(table, n) for n, table in enumerate(tables, start=1))
    names = [group.name for group in groups]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"group names must be unique: {repeated} appear more than once")
    return Routes(groups, default)


def _default_group(recipients: str) -> RecipientGroup | None:
    addresses = tuple(address.strip() for address in recipients.split(",") if address.strip())
    bad = [address for address in addresses if not ADDRESS.fullmatch(address)]
    if bad:
        raise ValueError(f"PULSE_ALERT_RECIPIENTS: not email addresses: {bad}")
    return RecipientGroup(DEFAULT_GROUP, addresses) if addresses else None


def _group(table: Any, n: int) -> RecipientGroup:
    where = f"[[group]] #{n}"
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where} needs a name")
    where = f"[[group]] {name!r}"
    unknown = set(table) - GROUP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use {sorted(GROUP_KEYS)}")
    recipients = table.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise ValueError(f"{where}: recipients must be a non-empty list of email addresses")
    bad = [r for r in recipients if not isinstance(r, str) or not ADDRESS.fullmatch(r.strip())]
    if bad:
        raise ValueError(f"{where}: not email addresses: {bad} (write plain addresses)")
    kinds = table.get("kinds", list(ALERT_KINDS))
    if not isinstance(kinds, list) or not kinds or not set(kinds) <= set(ALERT_KINDS):
        raise ValueError(f"{where}: kinds {kinds!r}: use a list of {', '.join(ALERT_KINDS)}")
    topics = table.get("topics", [])
    if not isinstance(topics, list) or not all(
        isinstance(t, int | str) and not isinstance(t, bool) for t in topics
    ):
        raise ValueError(f"{where}: topics must be a list of topic ids, seeds or label words")
    authorised = table.get("authorised", False)
    if not isinstance(authorised, bool):
        raise ValueError(f"{where}: authorised must be true or false")
    return RecipientGroup(
        name=name.strip(),
        recipients=tuple(r.strip() for r in recipients),
        kinds=frozenset(kinds),
        topics=tuple(t.strip().lower() if isinstance(t, str) else t for t in topics),
        authorised=authorised,
    )


def _topic_matches(entry: str | int, topic_id: int, seed: str | None, label: str | None) -> bool:
    if isinstance(entry, int):
        return entry == topic_id
    if seed is not None and seed.lower() == entry:
        return True
    return label is not None and re.search(rf"\b{re.escape(entry)}\b", label.lower()) is not None
