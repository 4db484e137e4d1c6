"""The sources file: which connectors the worker pulls and which webhooks the web app accepts.

``sources.toml`` (path from ``PULSE_SOURCES_FILE``) holds ``[[source]]`` tables (pulled on a
schedule) and ``[[webhook]]`` tables (pushed to ``/webhooks/<name>``). Every table has ``name``
and ``type``; a source may set ``interval_seconds``. Any other key is passed to the connector;
a key ending in ``_env`` names an environment variable that holds the value (secrets never live
in the file): ``password_env = "PULSE_IMAP_PASSWORD"`` passes ``password``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import PROJECT_ROOT, Settings
from ingestion.base import Connector
from ingestion.errors import SourceConfigError

# type -> "module:Class"; imported only when a source of that type is configured.
SOURCE_TYPES = {
    "imap": "ingestion.imap:ImapSource",
    "twilio": "ingestion.twilio_sms:TwilioSource",
    "mastodon": "ingestion.mastodon:MastodonSource",
    "rss": "ingestion.rss:FeedSource",
    "facebook": "ingestion.facebook:FacebookPageSource",
    "bluesky": "ingestion.bluesky:BlueskySource",
}
WEBHOOK_TYPES = ("twilio", "signed_json")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
DEFAULT_INTERVAL_SECONDS = 60


@dataclass(frozen=True)
class WebhookConfig:
    """A push source: requests to ``/webhooks/<name>`` are checked with its secret and stored."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourcesConfig:
    """Everything the sources file configures."""

    sources: list[Connector] = field(default_factory=list)
    webhooks: list[WebhookConfig] = field(default_factory=list)


def resolve_secrets(where: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with each ``<key>_env`` replaced by ``<key>`` read from that variable."""
    resolved = {}
    for key, value in options.items():
        if key.endswith("_env"):
            if not isinstance(value, str) or value not in os.environ:
                raise SourceConfigError(
                    f"{where}: {key} = {value!r}: set that environment variable "
                    f"(it holds the {key.removesuffix('_env')})"
                )
            resolved[key.removesuffix("_env")] = os.environ[value]
        else:
            resolved[key] = value
    return resolved


def _identity(where: str, table: dict[str, Any], types: object) -> tuple[str, str]:
    name, kind = table.get("name"), table.get("type")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SourceConfigError(
            f"{where}: name = {name!r}: use lowercase letters, digits, '-', '_' or '.'"
        )
    if kind not in types:  # type: ignore[operator]
        raise SourceConfigError(f"{where} ({name}): type = {kind!r}: use one of {sorted(types)}")  # type: ignore[arg-type]
    return name, kind


def build_source(where: str, table: dict[str, Any], settings: Settings) -> Connector:
    """The connector a ``[[source]]`` table describes."""
    name, kind = _identity(where, table, SOURCE_TYPES)
    options = resolve_secrets(f"{where} ({name})", {
        k: v for k, v in table.items() if k not in ("name", "type")
    })  # fmt: skip
    module_name, class_name = SOURCE_TYPES[kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = inspect.signature(cls).parameters
    interval = accepted.get("interval_seconds")
    if interval is None or interval.default is inspect.Parameter.empty:
        options.setdefault("interval_seconds", DEFAULT_INTERVAL_SECONDS)
    unknown = sorted(set(options) - set(accepted) - {"settings"})
    if unknown:
        allowed = sorted(p for p in accepted if p not in ("name", "settings"))
        raise SourceConfigError(
            f"{where} ({name}): unknown option(s) {unknown} for type {kind!r}; allowed: {allowed}"
        )
    if "settings" in accepted:
        options["settings"] = settings
    try:
        return cls(name=name, **options)
    except (TypeError, ValueError) as exc:
        raise SourceConfigError(f"{where} ({name}): {exc}") from exc


def load_sources(settings: Settings, path: Path | None = None) -> SourcesConfig:
    """Read the sources file; a missing file configures nothing. Errors name the bad table."""
    path = path or settings.sources_file
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    if not path.exists():
        return SourcesConfig()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SourceConfigError(f"{path}: not valid TOML: {exc}") from exc
    sources = [
        build_source(f"{path.name} [[source]] #{i}", table, settings)
        for i, table in enumerate(document.get("source", []), start=1)
    ]
    webhooks = []
    for i, table in enumerate(document.get("webhook", []), start=1):
        where = f"{path.name} [[webhook]] #{i}"
        name, kind = _identity(where, table, WEBHOOK_TYPES)
        options = {k: v for k, v in table.items() if k not in ("name", "type")}
        webhooks.append(WebhookConfig(name, kind, resolve_secrets(f"{where} ({name})", options)))
    names = [s.name for s in sources] + [w.name for w in webhooks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourceConfigError(f"{path}: source names must be unique; repeated: {duplicates}")
    return SourcesConfig(sources, webhooks)
