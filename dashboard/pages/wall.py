"""Wall display ``/wall``: a kiosk view for an office TV, opened with the wall token.

Dark, large type, no controls: one panel at a time (word cloud, topic heatmap, trending topics,
alerts summary), rotating every ``settings.wall_rotate_seconds`` in the browser. The data
version is polled like the overview's; the panels are recomputed (and cached) only when it
moved. Aggregates only, small topics suppressed (see :mod:`dashboard.wall_data`); every callback
writes only ``wall-`` components, which is all a wall session may call.

The browser also asks ``/health`` on every tick (a clientside callback with a timeout): when the
newest message is older than ``settings.wall_stale_minutes``, or the server does not answer, a
banner says so while the last good data stays on screen; when the server answers again after a
failure, the page reloads itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import ClientsideFunction, Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from alerts.engine import school_calendar
from core.models import utcnow
from core.queries import data_version
from dashboard.cache import cached
from dashboard.context import pulse
from dashboard.data import Filters, Trend, kpis, window_bounds
from dashboard.figures import heatmap_figure, sparkline_figure
from dashboard.wall_data import AlertSummary, WallData, is_stale, latest_message_at, wall_data
from dashboard.wordcloud import word_cloud_figure

dash.register_page(__name__, path="/wall", title="Pulse · Wall", name="Wall", min_role="wall")

PANELS = {
    "cloud": "What people are writing about today",
    "heatmap": "Topics by hour today",
    "trending": "Trending vs usual (last 24 hours)",
    "alerts": "Alerts",
}
# The word cloud's fixed canvas: the panel's full width and height on a 1920x1080 screen (below
# the header and panel title), centred by wall.css.
CLOUD_SIZE = (1800, 840)
HEATMAP_TOPICS = 10
TICK_FONT_SIZE = 26  # heatmap labels, readable at 3 m
# Bright on a dark background (the overview's Dark2 colours are too dim across a room).
WALL_COLOURS = ["#8ecae6", "#ffb703", "#90be6d", "#f28482", "#cdb4db", "#f9c74f", "#4cc9f0"]
WALL_FONT = {"family": "'DejaVu Sans', sans-serif", "size": 22, "color": "#e9ecef"}
HEALTH_TIMEOUT_MS = 4000
ALERT_KIND_NAMES = {
    "spike": ("spike", "spikes"),
    "emerging": ("emerging topic", "emerging topics"),
    "risk": ("risk alert", "risk alerts"),
    "source_down": ("source down", "sources down"),
}


def _panel(name: str, title: str, body: Any, active: bool) -> html.Section:
    return html.Section(
        [html.H2(title, className="wall-panel-title"), body],
        id=f"wall-panel-{name}",
        className="wall-section active" if active else "wall-section",
    )


def layout(**_query: str) -> html.Div:
    """The wall; the query string (the token) is read by the access check, not here."""
    settings = pulse().settings
    width, height = CLOUD_SIZE
    bodies = {
        "cloud": dcc.Graph(
            id="wall-cloud",
            config={"staticPlot": True, "responsive": False},
            style={"width": f"{width}px", "height": f"{height}px"},
        ),
        "heatmap": dcc.Graph(
            id="wall-heatmap",
            config={"staticPlot": True, "responsive": True},
            className="wall-fill",
        ),
        "trending": html.Div(id="wall-trending"),
        "alerts": html.Div(id="wall-alerts"),
    }
    config = {
        "timeout_ms": min(HEALTH_TIMEOUT_MS, settings.dashboard_refresh_seconds * 1000),
        "tz": settings.timezone,
        "panels": [f"wall-panel-{name}" for name in PANELS],
    }
    return html.Div(
        [
            html.Header(
                [
                    html.Div(f"Pulse · {settings.district_name}", className="wall-brand"),
                    html.Div(id="wall-today", className="wall-today"),
                    html.Div("Last updated –", id="wall-last-updated", className="wall-updated"),
                ],
                className="wall-header",
            ),
            html.Div(id="wall-stale-banner", className="wall-stale", hidden=True),
            html.Main(
                [
                    _panel(name, title, bodies[name], i == 0)
                    for i, (name, title) in enumerate(PANELS.items())
                ],
                id="wall-panel",
                className="wall-panels",
            ),
            dcc.Store(id="wall-version"),
            dcc.Store(id="wall-status", data={}),
            dcc.Store(id="wall-health", data={}),
            dcc.Store(id="wall-config", data=config),
            dcc.Interval(id="wall-tick", interval=settings.dashboard_refresh_seconds * 1000),
            dcc.Interval(id="wall-rotate", interval=settings.wall_rotate_seconds * 1000),
        ],
        className="wall",
        id="wall-root",
    )


@callback(
    Output("wall-version", "data"),
    Input("wall-tick", "n_intervals"),
    State("wall-version", "data"),
)
def wall_version(_tick: int | None, seen: str | None) -> str:
    """The data version, the local hour and whether the data is stale: the panels recompute
    only when one of them changed (unchanged: no update)."""
    context = pulse()
    now = utcnow()
    stale = is_stale(latest_message_at(context.engine), now, context.settings)
    hour = now.astimezone(context.settings.tz).strftime("%Y-%m-%dT%H")
    version = f"{data_version(context.engine)}@{hour}{'/stale' if stale else ''}"
    if version == seen:
        raise PreventUpdate
    return version


def _dark(figure: go.Figure) -> go.Figure:
    figure.update_layout(
        template="plotly_dark",
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font=WALL_FONT,
    )
    return figure


def cloud_panel(words: list[tuple[str, float]]) -> dict[str, Any]:
    """The word cloud in bright colours for a dark wall (a figure dict)."""
    figure = word_cloud_figure(words, *CLOUD_SIZE, empty_text="No topic is busy enough yet today")
    n = len(figure.data[0].x or [])
    figure.update_traces(textfont_color=[WALL_COLOURS[i % len(WALL_COLOURS)] for i in range(n)])
    return _dark(figure).to_plotly_json()


def heatmap_panel(counts: pd.DataFrame, now: datetime) -> dict[str, Any]:
    """Today's kept topics by local hour (a figure dict) sized by its graph, so it fills the
    panel, with large tick labels."""
    tz = pulse().settings.tz
    since, bucket = window_bounds(Filters(), now, pulse().settings)
    first = pd.Timestamp(since).tz_convert(tz)
    hours = list(pd.date_range(first, pd.Timestamp(now).tz_convert(tz).floor("h"), freq="h"))
    figure = heatmap_figure(counts, hours, bucket, top=HEATMAP_TOPICS)
    figure.update_traces(colorscale="Viridis", showscale=False, hoverinfo="skip")
    figure.update_layout(height=None, autosize=True, margin={"l": 20, "r": 20, "t": 10, "b": 60})
    figure.update_xaxes(tickfont_size=TICK_FONT_SIZE)
    figure.update_yaxes(tickfont_size=TICK_FONT_SIZE)
    return _dark(figure).to_plotly_json()


def trending_panel(trends: list[Trend]) -> html.Div:
    """The trending topics, one large row each: label, change ("new" when almost nothing was
    expected), count against usual and a sparkline."""
    if not trends:
        return html.Div("No topic is busy enough to show yet.", className="wall-quiet")
    rows = []
    for trend in trends:
        rising = trend.change > 0.5
        rows.append(
            html.Div(
                [
                    html.Span(trend.label, className="wall-trend-label"),
                    html.Span(
                        trend.change_text,
                        className="wall-trend-change up" if rising else "wall-trend-change",
                    ),
                    html.Span(
                        f"{trend.observed:,} messages · usually {trend.expected:,.0f}",
                        className="wall-trend-count",
                    ),
                    dcc.Graph(
                        figure=sparkline_figure(
                            trend.series, "#ffb703" if rising else "#8ecae6"
                        ).update_layout(width=300, height=60),
                        config={"staticPlot": True},
                        className="wall-sparkline",
                    ),
                ],
                className="wall-trend",
            )
        )
    return html.Div(rows)


def _plural(n: int, kind: str) -> str:
    one, many = ALERT_KIND_NAMES.get(kind, (kind, kind))
    return f"{n} {one if n == 1 else many}"


def alerts_panel(summary: AlertSummary) -> html.Div:
    """Firing alerts by kind, the topics that may be named, and sources that are down."""
    if not summary.firing:
        return html.Div("No alert is firing. All quiet.", className="wall-quiet")
    parts: list[Any] = [
        html.Div(
            [
                html.Span(_plural(n, kind), className=f"wall-alert-count {kind}")
                for kind, n in sorted(summary.firing.items())
            ],
            className="wall-alert-counts",
        )
    ]
    if summary.topics:
        parts.append(html.Ul([html.Li(label) for label in summary.topics], className="wall-list"))
    if summary.sources_down:
        parts.append(html.Div("Not receiving: " + ", ".join(summary.sources_down)))
    return html.Div(parts)


def today_text(messages: int, usual: float | None) -> str:
    """The header's count of today's messages against usual by this time."""
    text = f"{messages:,} messages today"
    return text if usual is None else f"{text} · usually {usual:,.0f} by now"


def wall_panels(now: datetime) -> dict[str, Any]:
    """Everything the wall shows at ``now``, as JSON-able values (cached per data version)."""
    context = pulse()
    engine, settings = context.engine, context.settings
    calendar = school_calendar(engine, settings)
    data: WallData = wall_data(engine, settings, now, calendar)
    tiles = kpis(engine, settings, Filters(), now, calendar)
    latest = latest_message_at(engine)
    updated = latest.astimezone(settings.tz).strftime("%H:%M") if latest else None
    stale = None
    if is_stale(latest, now, settings):
        stale = f"No new messages since {updated}" if updated else "No messages yet"
    return {
        "cloud": cloud_panel(data.words),
        "heatmap": heatmap_panel(data.heatmap, now),
        "trends": data.trends,
        "alerts": data.alerts,
        "today": today_text(tiles.messages_today, tiles.usual_by_now),
        "updated": updated or "–",
        "stale": stale,  # the banner's text when the data is stale, else None
    }


@callback(
    Output("wall-cloud", "figure"),
    Output("wall-heatmap", "figure"),
    Output("wall-trending", "children"),
    Output("wall-alerts", "children"),
    Output("wall-today", "children"),
    Output("wall-last-updated", "children"),
    Output("wall-status", "data"),
    Input("wall-version", "data"),
)
def refresh_wall(version: str | None) -> tuple[Any, ...]:
    """Recompute the panels for a new data version (cached per version)."""
    if version is None:
        raise PreventUpdate
    panels = cached("wall", version, lambda: wall_panels(utcnow()))
    return (
        panels["cloud"],
        panels["heatmap"],
        trending_panel(panels["trends"]),
        alerts_panel(panels["alerts"]),
        panels["today"],
        f"Last updated {panels['updated']}",
        {"stale": panels["stale"], "updated": panels["updated"]},
    )


# In the browser: show one panel at a time, rotating.
dash.clientside_callback(
    ClientsideFunction("pulseWall", "rotate"),
    [Output(f"wall-panel-{name}", "className") for name in PANELS],
    Input("wall-rotate", "n_intervals"),
    State("wall-config", "data"),
)

# In the browser: ask /health; the banner says the data is stale (wall-status) or the server is
# unreachable; once the server answers again after a failure, reload.
dash.clientside_callback(
    ClientsideFunction("pulseWall", "health"),
    Output("wall-stale-banner", "children"),
    Output("wall-stale-banner", "hidden"),
    Output("wall-health", "data"),
    Input("wall-tick", "n_intervals"),
    Input("wall-status", "data"),
    State("wall-health", "data"),
    State("wall-config", "data"),
)
