"""The Dash app factory: pages from dashboard/pages, assets from assets/, a JSON health endpoint.

Everything the browser loads is served from here (Bootstrap's CSS is in assets/), so the
dashboard works on a network with no internet access.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, html, page_container
from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import Engine

from core.models import utcnow
from core.queries import data_version, volume_stats
from core.settings import PROJECT_ROOT, Settings
from dashboard.context import PulseContext, attach, pulse
from ingestion.webhooks import blueprint as webhooks_blueprint

PAGES_DIR = PROJECT_ROOT / "dashboard" / "pages"
ASSETS_DIR = PROJECT_ROOT / "assets"


def create_app(settings: Settings, engine: Engine) -> Dash:
    """A Dash app reading from ``engine``; its Flask server is ``app.server`` (for gunicorn)."""
    app = Dash(
        "dashboard",  # the package name: Dash then names page modules dashboard.pages.*
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        title=f"Pulse · {settings.district_name}",
        suppress_callback_exceptions=True,
    )
    attach(app.server, PulseContext(settings=settings, engine=engine))
    app.layout = html.Div(
        [
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand(f"Pulse · {settings.district_name}", href="/"),
                        dbc.Nav(
                            [
                                dbc.NavLink("Overview", href="/", active="exact"),
                                dbc.NavLink("Sources", href="/sources", active="exact"),
                            ]
                        ),
                    ]
                ),
                color="dark",
                dark=True,
                className="mb-3",
            ),
            dbc.Container(page_container, fluid=True),
        ]
    )
    app.server.add_url_rule("/health", "health", _health)
    app.server.register_blueprint(webhooks_blueprint)  # POST /webhooks/<name>, no login
    return app


def _health() -> ResponseReturnValue:
    engine = pulse().engine
    stats = volume_stats(engine, utcnow())
    latest = stats.latest_received_at.isoformat() if stats.latest_received_at else None
    return jsonify(
        status="ok",
        messages=stats.total,
        latest_received_at=latest,
        data_version=data_version(engine),
    )
