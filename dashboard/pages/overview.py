"""Overview page: live message volume by channel, refreshed when new data arrives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from core.models import utcnow
from core.queries import data_version, hourly_volume, volume_stats
from dashboard.context import pulse
from dashboard.figures import volume_figure

dash.register_page(__name__, path="/", title="Pulse · Overview", name="Overview")

VOLUME_WINDOW = timedelta(hours=48)


def _tile(title: str, value_id: str) -> dbc.Col:
    return dbc.Col(
        dbc.Card(
            dbc.CardBody([html.Div(title, className="text-muted small"), html.H3("…", id=value_id)])
        ),
        md=3,
    )


def layout(**_query: str) -> html.Div:
    """The overview layout; the interval drives the live refresh."""
    refresh_ms = pulse().settings.dashboard_refresh_seconds * 1000
    return html.Div(
        [
            dbc.Row(
                [
                    _tile("Messages in the last hour", "kpi-last-hour"),
                    _tile("Messages in the last 24 hours", "kpi-last-24h"),
                    _tile("Messages stored", "kpi-total"),
                    _tile("Latest message", "kpi-latest"),
                ],
                className="g-3 mb-3",
            ),
            dbc.Card(
                [
                    dbc.CardHeader("Messages per hour, last 48 hours, by channel"),
                    dbc.CardBody(dcc.Graph(id="volume-graph", config={"displaylogo": False})),
                ]
            ),
            dcc.Store(id="overview-version"),
            dcc.Interval(id="overview-tick", interval=refresh_ms),
        ]
    )


@callback(
    Output("kpi-last-hour", "children"),
    Output("kpi-last-24h", "children"),
    Output("kpi-total", "children"),
    Output("kpi-latest", "children"),
    Output("volume-graph", "figure"),
    Output("overview-version", "data"),
    Input("overview-tick", "n_intervals"),
    State("overview-version", "data"),
)
def refresh_overview(_tick: int | None, seen_version: str | None) -> tuple[Any, ...]:
    """Recompute tiles and chart, but only when the data version moved since the last refresh."""
    context = pulse()
    version = data_version(context.engine)
    if version == seen_version:
        raise PreventUpdate
    now = utcnow()
    stats = volume_stats(context.engine, now)
    volume = hourly_volume(context.engine, now - VOLUME_WINDOW, now + timedelta(hours=1))
    latest = (
        stats.latest_received_at.astimezone(context.settings.tz).strftime("%H:%M:%S")
        if stats.latest_received_at
        else "none yet"
    )
    return (
        f"{stats.last_hour:,}",
        f"{stats.last_24h:,}",
        f"{stats.total:,}",
        latest,
        volume_figure(volume, context.settings.tz),
        version,
    )
