"""The Dash app factory: pages from dashboard/pages, assets from assets/, a JSON health endpoint.

Everything the browser loads is served from here (Bootstrap's CSS is in assets/), so the
dashboard works on a network with no internet access.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html, page_container
from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import Engine

from core.models import utcnow
from core.queries import data_version, volume_stats
from core.settings import PROJECT_ROOT, Settings
from dashboard.access import current_role, current_username, role_at_least
from dashboard.auth import csrf_token
from dashboard.auth import install as install_auth
from dashboard.cache import init_cache
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
    init_cache(app.server, settings)
    install_auth(app.server, settings)
    # on the app, not dash.callback: the first app to serve takes all global callbacks
    app.callback(Output("nav-user", "children"), Input("_pages_location", "pathname"))(user_menu)
    app.layout = html.Div(
        [
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand(f"Pulse · {settings.district_name}", href="/"),
                        dbc.Nav(
                            [
                                dbc.NavLink("Overview", href="/", active="exact"),
                                dbc.NavLink("Messages", href="/messages", active="exact"),
                                dbc.NavLink("Sources", href="/sources", active="exact"),
                            ]
                        ),
                        dbc.Nav(id="nav-user", className="ms-auto align-items-center"),
                    ]
                ),
                color="dark",
                dark=True,
                className="pulse-navbar d-print-none mb-3",  # wall.css hides it on /wall
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


def user_menu(_path: str | None) -> list[Any]:
    """Links to the pages this role may open, who is signed in, and a sign-out button; nothing
    for a wall display."""
    if not role_at_least("viewer"):
        return []
    links = [dbc.NavLink("Alerts", href="/alerts", active="exact")]
    if role_at_least("analyst"):
        links.append(dbc.NavLink("Risk queue", href="/risk", active="exact"))
    sign_out = html.Form(
        [
            dcc.Input(type="hidden", name="csrf_token", value=csrf_token()),
            dbc.Button("Sign out", type="submit", size="sm", color="secondary", outline=True),
        ],
        method="POST",
        action="/logout",
        className="ms-3",
    )
    who = html.Span(f"{current_username()} ({current_role()})", className="navbar-text ms-3")
    return [*links, who, sign_out]
