"""What a request needs from the running app (settings, engine): kept on the Flask app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import Engine

from core.settings import Settings

EXTENSION_KEY = "pulse"


@dataclass(frozen=True)
class PulseContext:
    """The settings and database engine the dashboard reads with."""

    settings: Settings
    engine: Engine


def attach(server: Flask, context: PulseContext) -> None:
    """Make ``context`` available to this Flask app's requests."""
    server.extensions[EXTENSION_KEY] = context


def pulse() -> PulseContext:
    """The context of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]
