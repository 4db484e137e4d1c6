"""The dashboard's cache of computed results, keyed on the data version.

Heavy callbacks (word cloud layouts, baselines, heatmaps) store their result under the current
:func:`core.queries.data_version` plus their own arguments, so every viewer and every gunicorn
worker reuses one computation until the data changes. The cache is a Flask-Caching
``FileSystemCache`` in a folder the workers share; it is cleared when the app starts, so a
database rebuilt in place never meets results of the old one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, current_app
from flask_caching import Cache

from core.settings import PROJECT_ROOT, Settings

EXTENSION_KEY = "pulse_cache"
TIMEOUT_SECONDS = 3600  # a version's entries are dropped after this, used or not
MAX_ENTRIES = 2000

T = TypeVar("T")


def cache_dir(settings: Settings) -> Path:
    """The cache folder: ``dashboard_cache_dir``, else one per database in the temp folder."""
    if settings.dashboard_cache_dir is not None:
        folder = settings.dashboard_cache_dir
        return folder if folder.is_absolute() else PROJECT_ROOT / folder
    name = hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pulse-cache-{name}"


def init_cache(server: Flask, settings: Settings) -> Cache:
    """Give ``server`` an empty shared file cache (see :func:`cached`)."""
    folder = cache_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    cache = Cache(
        config={
            "CACHE_TYPE": "FileSystemCache",
            "CACHE_DIR": str(folder),
            "CACHE_DEFAULT_TIMEOUT": TIMEOUT_SECONDS,
            "CACHE_THRESHOLD": MAX_ENTRIES,
        }
    )
    cache.init_app(server)
    cache.clear()
    server.extensions[EXTENSION_KEY] = cache
    return cache


def cache_key(name: str, version: str, *parts: Any) -> str:
    """The key of ``name``'s result for ``version`` and arguments ``parts`` (JSON-able)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}:{version}:{digest[:24]}"


def cached(name: str, version: str, compute: Callable[[], T], *parts: Any) -> T:
    """``compute()``'s result, from the current app's cache when this ``version`` and ``parts``
    were computed before (by any worker), else computed now and stored."""
    cache: Cache = current_app.extensions[EXTENSION_KEY]
    key = cache_key(name, version, *parts)
    found = cache.get(key)
    if found is not None:
        return found
    value = compute()
    cache.set(key, value)
    return value
