"""Overview: KPI tiles, word cloud, topic x time heatmap, trending topics, channel mix.

The filters (time window, channel, school, language) live in the URL query string, so a view
can be shared. One cheap poll of the data version drives everything: the panels recompute only
when it moved (or the filters changed), and each heavy result is cached on the version, so
several viewers and web workers share one computation. Clicking a word opens its messages,
clicking a heatmap cell opens that topic's messages of that hour (or day), clicking a trending
topic opens its page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from alerts.engine import school_calendar
from core.models import SOURCE_KINDS, utcnow
from core.queries import data_version, hourly_volume, topic_list
from dashboard.cache import cached
from dashboard.context import pulse
from dashboard.data import (
    WINDOWS,
    Filters,
    Kpis,
    channel_mix,
    filter_options,
    kpis,
    topic_heatmap,
    trending_topics,
    window_bounds,
)
from dashboard.figures import (
    channel_mix_figure,
    heatmap_cell,
    heatmap_figure,
    sparkline_figure,
    volume_figure,
)
from dashboard.wordcloud import clicked_word, word_cloud_figure
from topics.words import topic_words

dash.register_page(__name__, path="/", title="Pulse · Overview", name="Overview", min_role="viewer")

CLOUD_SIZE = (720, 340)
CLOUD_WORDS = 80
ALL_TOPICS = "all"
# The channel/school/language selects' "All" value: not "", which dbc.Select keeps for its hidden
# placeholder option (a selected "" shows blank instead of "All").
EVERY = "*"


def _tile(title: str, value_id: str, note_id: str) -> dbc.Col:
    body = [
        html.Div(title, className="text-muted small"),
        html.H3("…", id=value_id),
        html.Div(id=note_id, className="small text-muted"),
    ]
    return dbc.Col(dbc.Card(dbc.CardBody(body)), md=3)


def _select(id_: str, label: str, options: list[dict[str, str]], value: str) -> dbc.Col:
    return dbc.Col(
        [
            dbc.Label(label, html_for=id_, className="small text-muted mb-0"),
            dbc.Select(id=id_, options=options, value=value),
        ],
        md=3,
    )


def _filter_bar(filters: Filters) -> dbc.Row:
    options = filter_options(pulse().engine)
    every = [{"label": "All", "value": EVERY}]
    return dbc.Row(
        [
            _select(
                "overview-window",
                "Time window",
                [{"label": v, "value": k} for k, v in WINDOWS.items()],
                filters.window,
            ),
            _select(
                "overview-kind",
                "Channel",
                every + [{"label": k, "value": k} for k in SOURCE_KINDS],
                filters.source_kind or EVERY,
            ),
            _select(
                "overview-school",
                "School",
                every + [{"label": s, "value": s} for s in options["schools"]],
                filters.school or EVERY,
            ),
            _select(
                "overview-language",
                "Language",
                every + [{"label": lang, "value": lang} for lang in options["languages"]],
                filters.language or EVERY,
            ),
        ],
        className="g-2 mb-3",
    )


def layout(**query: str) -> html.Div:
    """The overview; ``query`` is the URL's query string (the filters)."""
    try:
        filters, problem = Filters.from_query(query), None
    except ValueError as exc:
        filters, problem = Filters(), str(exc)
    refresh_ms = pulse().settings.dashboard_refresh_seconds * 1000
    width, height = CLOUD_SIZE
    return html.Div(
        [
            dcc.Location(id="overview-url", refresh=False),
            dcc.Location(id="overview-nav", refresh=True),
            dbc.Alert(problem, color="warning", id="overview-filter-error", is_open=bool(problem)),
            _filter_bar(filters),
            dbc.Row(
                [
                    _tile("Messages today", "kpi-today", "kpi-today-usual"),
                    _tile("Firing alerts", "kpi-alerts", "kpi-alerts-note"),
                    _tile("Urgent risk flags to review", "kpi-urgent", "kpi-urgent-note"),
                    _tile("Negative messages", "kpi-negative", "kpi-negative-note"),
                ],
                className="g-3 mb-3",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader(
                                    dbc.Row(
                                        [
                                            dbc.Col("Word cloud: click a word for its messages"),
                                            dbc.Col(
                                                dbc.Select(
                                                    id="overview-cloud-topic",
                                                    options=[],
                                                    value=ALL_TOPICS,
                                                    size="sm",
                                                ),
                                                width=5,
                                            ),
                                        ],
                                        align="center",
                                    )
                                ),
                                dbc.CardBody(
                                    dcc.Loading(
                                        dcc.Graph(
                                            id="overview-wordcloud",
                                            config={"displayModeBar": False, "responsive": False},
                                            style={"width": f"{width}px", "height": f"{height}px"},
                                        )
                                    ),
                                    className="overflow-auto",
                                ),
                            ]
                        ),
                        lg=7,
                    ),
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader("Trending vs expected (last 24 h)"),
                                dbc.CardBody(html.Div(id="overview-trending")),
                            ]
                        ),
                        lg=5,
                    ),
                ],
                className="g-3 mb-3",
            ),
            dbc.Card(
                [
                    dbc.CardHeader("Topics over time: click a cell for its messages"),
                    dbc.CardBody(dcc.Graph(id="overview-heatmap", config={"displaylogo": False})),
                ],
                className="mb-3",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader("Channel mix"),
                                dbc.CardBody(dcc.Graph(id="overview-channels")),
                            ]
                        ),
                        lg=4,
                    ),
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader("Messages per hour by channel"),
                                dbc.CardBody(dcc.Graph(id="volume-graph")),
                            ]
                        ),
                        lg=8,
                    ),
                ],
                className="g-3",
            ),
            dcc.Store(id="overview-version"),
            dcc.Interval(id="overview-tick", interval=refresh_ms),
        ]
    )


@callback(
    Output("overview-version", "data"),
    Input("overview-tick", "n_intervals"),
    State("overview-version", "data"),
)
def poll_version(_tick: int | None, seen: str | None) -> str:
    """The data version (plus the local hour, so the day rolls over); unchanged: no update."""
    context = pulse()
    hour = utcnow().astimezone(context.settings.tz).strftime("%Y-%m-%dT%H")
    version = f"{data_version(context.engine)}@{hour}"
    if version == seen:
        raise PreventUpdate
    return version


def _filters(window: str, kind: str, school: str, language: str) -> Filters:
    """The filters of the selects' values (``EVERY``, or nothing: all)."""
    kind, school, language = ("" if v in (None, EVERY) else v for v in (kind, school, language))
    return Filters(window or "today", kind, school, language)


@callback(
    Output("overview-url", "search"),
    Input("overview-window", "value"),
    Input("overview-kind", "value"),
    Input("overview-school", "value"),
    Input("overview-language", "value"),
)
def filters_to_url(window: str, kind: str, school: str, language: str) -> str:
    """Keep the filters in the URL's query string."""
    return _filters(window, kind, school, language).search()


def kpi_texts(found: Kpis) -> tuple[str, ...]:
    """The tiles' values and notes."""
    usual = (
        "no comparable day yet"
        if found.usual_by_now is None
        else f"usually {found.usual_by_now:,.0f} by this time"
    )
    negative = "–" if found.negative_share is None else f"{found.negative_share:.0%}"
    return (
        f"{found.messages_today:,}",
        usual,
        f"{found.firing_alerts:,}",
        "see Alerts" if found.firing_alerts else "all quiet",
        f"{found.urgent_unreviewed:,}",
        "awaiting a person's review" if found.urgent_unreviewed else "none waiting",
        negative,
        "of messages in the window with a sentiment",
    )


def overview_panels(filters: Filters, now: datetime) -> dict[str, Any]:
    """Everything the overview shows except the word cloud, for ``filters`` at ``now``."""
    context = pulse()
    engine, settings = context.engine, context.settings
    calendar = school_calendar(engine, settings)
    since, bucket = window_bounds(filters, now, settings)
    counts = topic_heatmap(engine, settings, filters, now)
    freq = "h" if bucket == "hour" else "D"
    first = pd.Timestamp(since).tz_convert(settings.tz)
    last = pd.Timestamp(now).tz_convert(settings.tz).floor("h")
    buckets = list(pd.date_range(first, last, freq=freq))
    volume = hourly_volume(engine, since, now)
    if filters.source_kind:
        volume = volume[volume["source_kind"] == filters.source_kind]
    return {
        "kpis": kpi_texts(kpis(engine, settings, filters, now, calendar)),
        "heatmap": heatmap_figure(counts, buckets, bucket).to_plotly_json(),
        "trending": trending_topics(engine, settings, now, calendar),
        "channels": channel_mix_figure(
            channel_mix(engine, settings, filters, now)
        ).to_plotly_json(),
        "volume": volume_figure(volume, settings.tz).to_plotly_json(),
        "topics": [(t.id, t.display_label) for t in topic_list(engine)],
    }


def trending_list(trends: list[Any], filters: Filters) -> html.Div | dbc.ListGroup:
    """The trending topics as links to their pages, each with a sparkline and its change."""
    if not trends:
        return html.Div("No topic activity in the last 24 hours.", className="text-muted")
    items = []
    for trend in trends:
        colour = "text-danger" if trend.change > 0.5 else "text-muted"
        items.append(
            dbc.ListGroupItem(
                dbc.Row(
                    [
                        dbc.Col(
                            dcc.Link(
                                trend.label,
                                href=f"/topics/{trend.topic_id}{filters.search()}",
                                id={"type": "overview-trend-link", "topic": trend.topic_id},
                            ),
                            width=5,
                        ),
                        dbc.Col(
                            dcc.Graph(
                                figure=sparkline_figure(trend.series),
                                config={"staticPlot": True},
                                style={"height": "36px", "width": "140px"},
                            ),
                            width=4,
                        ),
                        dbc.Col(
                            [
                                html.Div(f"{trend.observed} vs {trend.expected:.0f}"),
                                html.Div(trend.change_text, className=f"small {colour}"),
                            ],
                            width=3,
                            className="text-end",
                        ),
                    ],
                    align="center",
                ),
            )
        )
    return dbc.ListGroup(items, flush=True)


@callback(
    Output("kpi-today", "children"),
    Output("kpi-today-usual", "children"),
    Output("kpi-alerts", "children"),
    Output("kpi-alerts-note", "children"),
    Output("kpi-urgent", "children"),
    Output("kpi-urgent-note", "children"),
    Output("kpi-negative", "children"),
    Output("kpi-negative-note", "children"),
    Output("overview-heatmap", "figure"),
    Output("overview-trending", "children"),
    Output("overview-channels", "figure"),
    Output("volume-graph", "figure"),
    Output("overview-cloud-topic", "options"),
    Input("overview-version", "data"),
    Input("overview-window", "value"),
    Input("overview-kind", "value"),
    Input("overview-school", "value"),
    Input("overview-language", "value"),
)
def refresh_overview(
    version: str | None, window: str, kind: str, school: str, language: str
) -> tuple[Any, ...]:
    """Recompute the panels for a new data version or new filters (cached per version)."""
    if version is None:
        raise PreventUpdate
    filters = _filters(window, kind, school, language)
    panels = cached(
        "overview", version, lambda: overview_panels(filters, utcnow()), filters.query()
    )
    options = [{"label": "All topics", "value": ALL_TOPICS}] + [
        {"label": label, "value": str(topic)} for topic, label in panels["topics"]
    ]
    return (
        *panels["kpis"],
        panels["heatmap"],
        trending_list(panels["trending"], filters),
        panels["channels"],
        panels["volume"],
        options,
    )


def cloud_figure(topic: int | None, filters: Filters, now: datetime) -> dict[str, Any]:
    """The word cloud (as a figure dict) of ``topic`` or of all messages in the window."""
    context = pulse()
    since, _bucket = window_bounds(filters, now, context.settings)
    weights = topic_words(context.engine, context.settings, topic, since, now, CLOUD_WORDS)
    return word_cloud_figure(weights, *CLOUD_SIZE).to_plotly_json()


@callback(
    Output("overview-wordcloud", "figure"),
    Input("overview-version", "data"),
    Input("overview-window", "value"),
    Input("overview-cloud-topic", "value"),
)
def refresh_cloud(version: str | None, window: str, topic: str | None) -> dict[str, Any]:
    """The word cloud for the window, overall or for the chosen topic (cached per version)."""
    if version is None:
        raise PreventUpdate
    filters = Filters(window or "today")
    chosen = None if topic in (None, "", ALL_TOPICS) else int(topic)
    return cached(
        "cloud", version, lambda: cloud_figure(chosen, filters, utcnow()), filters.window, chosen
    )


@callback(
    Output("overview-nav", "href"),
    Input("overview-wordcloud", "clickData"),
    Input("overview-heatmap", "clickData"),
    State("overview-window", "value"),
    State("overview-kind", "value"),
    State("overview-school", "value"),
    State("overview-language", "value"),
    State("overview-cloud-topic", "value"),
    prevent_initial_call=True,
)
def drill_down(
    word_click: dict | None,
    cell_click: dict | None,
    window: str,
    kind: str,
    school: str,
    language: str,
    cloud_topic: str | None,
) -> str:
    """Where a click leads: a word to its messages, a heatmap cell to that topic's hour/day."""
    filters = _filters(window, kind, school, language)
    if dash.ctx.triggered_id == "overview-wordcloud":
        word = clicked_word(word_click)
        if word is None:
            raise PreventUpdate
        extra: dict[str, str | int] = {"word": word}
        if cloud_topic not in (None, "", ALL_TOPICS):
            extra["topic"] = str(cloud_topic)
        return f"/messages{filters.search(**extra)}"
    cell = heatmap_cell(cell_click)
    if cell is None:
        raise PreventUpdate
    topic, bucket = cell
    start = datetime.fromisoformat(bucket)
    span = (
        {"hour": start.strftime("%Y-%m-%dT%H:00")}
        if filters.window == "today"
        else {"day": start.date().isoformat()}
    )
    return f"/messages{filters.search(topic=topic, **span)}"
