"""Topic drill-down ``/topics/<id>``: label (analysts rename it), words, timeline, breakdowns,
and, for analysts, the topic's messages in a grid with search, sort and CSV export.

Viewers see the aggregates only; every message whose text an analyst is shown is audit-logged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from core.models import Topic, utcnow
from dashboard.access import audit_message_read, current_username, role_at_least
from dashboard.context import pulse
from dashboard.data import (
    Filters,
    MessageQuery,
    find_messages,
    get_topic,
    message_rows,
    topic_breakdown,
)
from dashboard.figures import breakdown_figure, daily_figure
from dashboard.wordcloud import clicked_word, word_cloud_figure
from topics.registry import rename_topic

dash.register_page(
    __name__,
    path_template="/topics/<topic_id>",
    title="Pulse · Topic",
    name="Topic",
    min_role="viewer",
)

TIMELINE_DAYS = 30
CLOUD_SIZE = (560, 260)

MESSAGE_COLUMNS = [
    {"field": "id", "headerName": "#", "cellRenderer": "markdown", "maxWidth": 110},
    {"field": "received", "headerName": "Received", "sort": "desc", "maxWidth": 160},
    {"field": "channel", "maxWidth": 110},
    {"field": "school"},
    {"field": "language", "maxWidth": 110},
    {"field": "sentiment", "type": "numericColumn", "maxWidth": 120},
    {"field": "risk", "maxWidth": 100},
    {"field": "subject"},
    {"field": "text", "flex": 3, "tooltipField": "text"},
]


def message_grid(id_: str, rows: list[dict[str, Any]], filename: str) -> html.Div:
    """An ag-grid of message rows with a quick search box and a CSV export button."""
    linked = [{**row, "id": f"[{row['id']}](/message/{row['id']})"} for row in rows]
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Input(
                            id=f"{id_}-search",
                            placeholder="Search these messages…",
                            type="search",
                            debounce=True,
                        ),
                        md=6,
                    ),
                    dbc.Col(
                        dbc.Button("Export CSV", id=f"{id_}-export", color="secondary", size="sm"),
                        className="text-end",
                    ),
                ],
                className="mb-2",
            ),
            dag.AgGrid(
                id=id_,
                columnDefs=MESSAGE_COLUMNS,
                rowData=linked,
                defaultColDef={"sortable": True, "resizable": True, "filter": True, "flex": 1},
                dashGridOptions={"pagination": True, "paginationPageSize": 50},
                csvExportParams={"fileName": filename},
                style={"height": "560px"},
            ),
        ]
    )


def _header(topic: Topic) -> list[Any]:
    status = "" if topic.status == "active" else f" ({topic.status})"
    return [
        html.H4(f"{topic.display_label}{status}", id="topic-title"),
        html.Div(f"Topic #{topic.id}", className="text-muted small"),
    ]


def layout(topic_id: str | None = None, **_query: str) -> html.Div:
    """The topic page; viewers get aggregates, analysts also the messages."""
    context = pulse()
    if not (topic_id or "").isdigit():
        return dbc.Alert(
            f"Topic {topic_id!r}: give a topic number, e.g. /topics/12", color="warning"
        )
    topic = get_topic(context.engine, int(topic_id))
    if topic is None:
        return dbc.Alert(f"There is no topic {topic_id}.", color="warning", id="topic-missing")
    now = utcnow()
    today = now.astimezone(context.settings.tz).date()
    first = today - timedelta(days=TIMELINE_DAYS - 1)
    breakdown = topic_breakdown(context.engine, context.settings, topic.id, first, today)
    analyst = role_at_least("analyst")
    words = [(str(w), float(v)) for w, v, *_ in topic.words or []]
    children: list[Any] = [
        dcc.Store(id="topic-id", data=topic.id),
        dcc.Location(id="topic-nav", refresh=True),
        dbc.Row(
            [
                dbc.Col(_header(topic), id="topic-header", md=6),
                dbc.Col(
                    dbc.InputGroup(
                        [
                            dbc.Input(
                                id="topic-rename-input",
                                placeholder="New label",
                                value=topic.custom_label or "",
                            ),
                            dbc.Button("Rename", id="topic-rename", color="primary"),
                        ],
                        size="sm",
                    )
                    if analyst
                    else None,
                    md=6,
                ),
            ],
            className="mb-2",
        ),
        html.Div(id="topic-rename-status", className="small mb-2"),
        dbc.Row(
            [
                dbc.Col(
                    dbc.Card(
                        [
                            dbc.CardHeader("Words (click one for its messages)"),
                            dbc.CardBody(
                                dcc.Graph(
                                    id="topic-wordcloud",
                                    figure=word_cloud_figure(words, *CLOUD_SIZE),
                                    config={"displayModeBar": False, "responsive": False},
                                    style={
                                        "width": f"{CLOUD_SIZE[0]}px",
                                        "height": f"{CLOUD_SIZE[1]}px",
                                    },
                                ),
                                className="overflow-auto",
                            ),
                        ]
                    ),
                    lg=6,
                ),
                dbc.Col(
                    dbc.Card(
                        [
                            dbc.CardHeader(f"Messages per day, last {TIMELINE_DAYS} days"),
                            dbc.CardBody(
                                dcc.Graph(id="topic-timeline", figure=daily_figure(breakdown.daily))
                            ),
                        ]
                    ),
                    lg=6,
                ),
            ],
            className="g-3 mb-3",
        ),
        dbc.Row(
            [
                dbc.Col(
                    dcc.Graph(id=f"topic-by-{name}", figure=breakdown_figure(counts, name)), lg=4
                )
                for name, counts in (
                    ("channel", breakdown.by_channel),
                    ("school", breakdown.by_school),
                    ("language", breakdown.by_language),
                )
            ],
            className="g-3 mb-3",
        ),
    ]
    if analyst:
        since = min(topic.first_seen, now - timedelta(days=TIMELINE_DAYS))
        found = find_messages(context.engine, MessageQuery(since, now, topic_id=topic.id))
        audit_message_read(context.engine, current_username(), [m.id for m in found])
        labels = {topic.id: topic.display_label}
        rows = message_rows(found, labels, context.settings, with_text=True)
        children += [
            html.H5(f"Messages ({len(rows)} newest)"),
            message_grid("topic-messages", rows, f"topic-{topic.id}-messages.csv"),
        ]
    else:
        children.append(
            dbc.Alert("Message text is visible to analysts.", color="light", id="topic-no-text")
        )
    return html.Div(children)


@callback(
    Output("topic-header", "children"),
    Output("topic-rename-status", "children"),
    Input("topic-rename", "n_clicks"),
    State("topic-rename-input", "value"),
    State("topic-id", "data"),
    prevent_initial_call=True,
)
def rename(n_clicks: int | None, label: str | None, topic_id: int) -> tuple[Any, str]:
    """Rename the topic (analysts); an empty label restores the automatic one."""
    if not n_clicks:
        raise PreventUpdate
    if not role_at_least("analyst"):
        return dash.no_update, "Only analysts can rename topics."
    engine = pulse().engine
    rename_topic(engine, topic_id, label)
    topic = get_topic(engine, topic_id)
    assert topic is not None  # rename_topic raised KeyError otherwise
    return _header(topic), f"Renamed to “{topic.display_label}”."


def quick_filter(text: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Filter a message grid by ``text`` anywhere in a row."""
    return {**options, "quickFilterText": text or ""}


def export_clicked(n_clicks: int | None) -> bool:
    """Download a message grid (as filtered and sorted) as CSV."""
    return bool(n_clicks)


def grid_callbacks(id_: str) -> None:
    """Register the search and CSV export of the grid :func:`message_grid` made as ``id_``."""
    callback(
        Output(id_, "dashGridOptions"),
        Input(f"{id_}-search", "value"),
        State(id_, "dashGridOptions"),
        prevent_initial_call=True,
    )(quick_filter)
    callback(
        Output(id_, "exportDataAsCsv"),
        Input(f"{id_}-export", "n_clicks"),
        prevent_initial_call=True,
    )(export_clicked)


grid_callbacks("topic-messages")


@callback(
    Output("topic-nav", "href"),
    Input("topic-wordcloud", "clickData"),
    State("topic-id", "data"),
    prevent_initial_call=True,
)
def word_messages(click: dict | None, topic_id: int) -> str:
    """A clicked word opens the topic's messages containing it."""
    word = clicked_word(click)
    if word is None:
        raise PreventUpdate
    return f"/messages{Filters(window='30d').search(topic=topic_id, word=word)}"
