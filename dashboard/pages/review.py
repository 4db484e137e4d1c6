"""Daily review ``/review``: one local date (yesterday by default, ``?date=YYYY-MM-DD``), the
same data as the morning digest email (:func:`alerts.digest.digest_data`, cached per data
version): volume against usual, top and new topics with their changes, alerts that fired,
notable messages, the word cloud; the day's topic table as CSV and the word cloud as PNG.

Viewers see the notable messages as counts; analysts read them as the digest shows them (masked,
shortened; each read is audit-logged) with a link to the full message.
The page prints cleanly: the navigation and controls carry ``d-print-none``.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate
from sqlalchemy import Engine

from alerts.digest import (
    DigestData,
    alert_row,
    count_row,
    day_context,
    digest_data,
    risk_text,
    word_cloud_png,
    yesterday,
)
from core.queries import data_version
from core.settings import Settings
from dashboard.access import audit_message_read, current_username, role_at_least
from dashboard.cache import cached
from dashboard.context import pulse
from dashboard.wordcloud import clicked_word, word_cloud_figure

dash.register_page(
    __name__, path="/review", title="Pulse · Daily review", name="Daily review", min_role="viewer"
)

CLOUD_SIZE = (640, 320)
CSV_COLUMNS = ["topic_id", "topic", "messages", "usual", "change_pct", "new"]


def parse_day(value: str | None, default: date) -> date:
    """The date ``value`` (``YYYY-MM-DD``; empty: ``default``); ValueError naming it if bad."""
    if not value:
        return default
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError(f"date {value!r}: give a date like 2026-03-10") from None


def review_data(day: date) -> DigestData:
    """The digest's data for ``day``, cached per data version (shared by every viewer)."""
    context = pulse()
    version = data_version(context.engine)
    return cached(
        "review",
        version,
        lambda: digest_data(context.engine, context.settings, day),
        day.isoformat(),
    )


def topic_table(data: DigestData) -> pd.DataFrame:
    """The day's topics: the top ones with their usual and change, then the new ones."""
    new = {t.topic_id for t in data.new_topics}
    rows = [
        {
            "topic_id": c.topic_id,
            "topic": c.name,
            "messages": c.n,
            "usual": None if c.usual is None else round(c.usual, 1),
            "change_pct": None if c.change is None else round(100 * c.change, 1),
            "new": c.topic_id in new,
        }
        for c in data.top_topics
    ]
    shown = {c.topic_id for c in data.top_topics}
    rows += [
        {"topic_id": t.topic_id, "topic": t.label, "messages": t.n, "usual": None,
         "change_pct": None, "new": True}
        for t in data.new_topics
        if t.topic_id not in shown
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def topic_csv(data: DigestData) -> str:
    """:func:`topic_table` as CSV text."""
    buffer = io.StringIO()
    topic_table(data).to_csv(buffer, index=False)
    return buffer.getvalue()


def audit_notable(engine: Engine, data: DigestData, username: str | None) -> None:
    """Write the showing of the digest's notable messages to an analyst to the audit log."""
    ids = [m.message_id for m in data.negative]
    audit_message_read(engine, username, ids, action="review_notable")


def _table(header: list[str], rows: list[list[Any]], id_: str) -> dbc.Table:
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Td(cell) for cell in row]) for row in rows]),
        ],
        size="sm",
        striped=True,
        id=id_,
        className="mb-0",
    )


def _card(title: str, body: Any, id_: str) -> dbc.Card:
    return dbc.Card(
        [dbc.CardHeader(title), dbc.CardBody(body)], className="mb-3 review-card", id=id_
    )


def summary_section(data: DigestData) -> dbc.Card:
    """Volume against usual, overall and per channel, with the day's context."""
    volume = count_row(data.volume)
    rows = [[c["name"], c["n"], c["usual"], c["trend"]] for c in map(count_row, data.channels)]
    return _card(
        "Volume",
        [
            html.H3(f"{volume['n']:,} messages", id="review-volume"),
            html.Div(f"usual {volume['usual']}, {volume['trend']}", className="text-muted"),
            html.Div(day_context(data), className="small text-muted mb-2"),
            _table(["Channel", "Messages", "Usual", "Change"], rows, "review-channels"),
        ],
        "review-summary",
    )


def topics_section(data: DigestData, day: date) -> dbc.Card:
    """The top topics with their changes (linked to their pages), then the new topics."""
    rows = [
        [dcc.Link(c.name, href=f"/topics/{c.topic_id}"), row["n"], row["usual"], row["trend"]]
        for c, row in ((c, count_row(c)) for c in data.top_topics)
    ]
    body: list[Any] = [_table(["Topic", "Messages", "Usual", "Change"], rows, "review-topics")]
    if data.new_topics:
        body += [
            html.H6("New topics", className="mt-3"),
            html.Ul(
                [
                    html.Li(
                        [
                            dcc.Link(t.label, href=f"/topics/{t.topic_id}"),
                            f": {t.n} messages · {', '.join(t.words)}",
                        ]
                    )
                    for t in data.new_topics
                ],
                id="review-new-topics",
            ),
        ]
    return _card(f"Topics on {day:%a %d %b}", body, "review-topics-card")


def alerts_section(data: DigestData, settings: Settings) -> dbc.Card:
    """The alerts that fired on the day (risk alerts by category only)."""
    if not data.alerts:
        body: Any = html.Div("No alert fired.", className="text-muted")
    else:
        body = html.Ul(
            [
                html.Li([html.Strong(row["title"]), html.Span(f" · {row['detail']}")])
                for row in (alert_row(a, settings) for a in data.alerts)
            ],
            id="review-alerts",
        )
    return _card("Alerts fired", body, "review-alerts-card")


def notable_section(data: DigestData, analyst: bool, settings: Settings) -> dbc.Card:
    """Notable messages: their masked text and a link for an ``analyst``, else only how many
    there are; the risk-flag counts; the largest near-duplicate campaign."""
    body: list[Any] = []
    if not analyst:
        body.append(
            html.Div(
                f"{len(data.negative)} notably negative messages; analysts can read them here.",
                id="review-notable-count",
            )
        )
    elif not data.negative:
        body.append(html.Div("No notably negative message.", className="text-muted"))
    else:
        body.append(
            html.Ul(
                [
                    html.Li(
                        [
                            html.Pre(m.text, className="message-text"),
                            html.Div(
                                [
                                    dcc.Link(f"#{m.message_id}", href=f"/message/{m.message_id}"),
                                    f" · {m.received_at.astimezone(settings.tz):%H:%M}"
                                    f" · {m.source_kind}",
                                ],
                                className="small text-muted",
                            ),
                        ],
                        className="mb-2",
                    )
                    for m in data.negative
                ],
                id="review-notable",
            )
        )
    body.append(html.Div(risk_text(data.risk_flags), className="mt-2", id="review-risk"))
    if data.campaign is not None:
        note = f"Largest campaign: {data.campaign.size} near-identical messages"
        body.append(html.Div(note, className="mt-2", id="review-campaign"))
        if analyst:
            body.append(html.Pre(data.campaign.sample, className="message-text small"))
    return _card("Notable messages", body, "review-notable-card")


def cloud_section(data: DigestData) -> dbc.Card:
    """The day's word cloud (click a word for its messages)."""
    width, height = CLOUD_SIZE
    graph = dcc.Graph(
        id="review-cloud",
        figure=word_cloud_figure(data.words, width, height, empty_text="No words for this day"),
        config={"displayModeBar": False, "responsive": False},
        style={"width": f"{width}px", "height": f"{height}px"},
    )
    return _card("Words of the day", graph, "review-cloud-card")


def review_sections(day: date, analyst: bool) -> list[Any]:
    """The page's content for ``day``; message text only when ``analyst`` (audited)."""
    context = pulse()
    data = review_data(day)
    heading = html.H4(f"Daily review · {day:%A %d %B %Y}", id="review-title")
    if data.empty:
        return [heading, dbc.Alert("No message arrived on this day.", color="secondary")]
    if analyst:
        audit_notable(context.engine, data, current_username())
    return [
        heading,
        dbc.Row(
            [
                dbc.Col([summary_section(data), alerts_section(data, context.settings)], lg=5),
                dbc.Col([topics_section(data, day), cloud_section(data)], lg=7),
            ]
        ),
        notable_section(data, analyst, context.settings),
    ]


def layout(date: str | None = None, **_query: str) -> html.Div:
    """The review page for ``?date=`` (default yesterday, local time)."""
    settings = pulse().settings
    default = yesterday(settings)
    try:
        day, problem = parse_day(date, default), None
    except ValueError as exc:
        day, problem = default, str(exc)
    controls = dbc.Row(
        [
            dbc.Col(
                dcc.DatePickerSingle(
                    id="review-date",
                    date=day.isoformat(),
                    max_date_allowed=default.isoformat(),
                    display_format="YYYY-MM-DD",
                    first_day_of_week=1,
                ),
                width="auto",
            ),
            dbc.Col(
                [
                    dbc.Button("Export CSV", id="review-csv-button", color="secondary", size="sm"),
                    dbc.Button(
                        "Export PNG",
                        id="review-png-button",
                        color="secondary",
                        size="sm",
                        className="ms-2",
                    ),
                ],
                width="auto",
            ),
        ],
        className="g-2 mb-3 align-items-center d-print-none",
    )
    return html.Div(
        [
            dcc.Location(id="review-url", refresh=False),
            dcc.Location(id="review-nav", refresh=True),
            dbc.Alert(problem, color="warning", id="review-date-error", is_open=bool(problem)),
            controls,
            dcc.Loading(html.Div(id="review-content")),
            dcc.Download(id="review-csv"),
            dcc.Download(id="review-png"),
        ],
        className="review",
    )


def _day(value: str | None) -> date:
    return parse_day(value, yesterday(pulse().settings))


@callback(
    Output("review-content", "children"),
    Output("review-url", "search"),
    Output("review-png-button", "disabled"),
    Input("review-date", "date"),
)
def show_review(value: str | None) -> tuple[list[Any], str, bool]:
    """The review of the picked date, kept in the URL so it can be shared."""
    day = _day(value)
    sections = review_sections(day, role_at_least("analyst"))
    return sections, f"?date={day.isoformat()}", not review_data(day).words


@callback(
    Output("review-csv", "data"),
    Input("review-csv-button", "n_clicks"),
    State("review-date", "date"),
    prevent_initial_call=True,
)
def export_csv(_clicks: int | None, value: str | None) -> dict[str, Any]:
    """Download the day's topic table as CSV."""
    day = _day(value)
    return dcc.send_string(topic_csv(review_data(day)), f"pulse-topics-{day.isoformat()}.csv")


@callback(
    Output("review-png", "data"),
    Input("review-png-button", "n_clicks"),
    State("review-date", "date"),
    prevent_initial_call=True,
)
def export_png(_clicks: int | None, value: str | None) -> dict[str, Any]:
    """Download the day's word cloud as the PNG the digest email carries."""
    day = _day(value)
    words = review_data(day).words
    if not words:
        raise PreventUpdate
    return dcc.send_bytes(word_cloud_png(words), f"pulse-words-{day.isoformat()}.png")


@callback(
    Output("review-nav", "href"),
    Input("review-cloud", "clickData"),
    State("review-date", "date"),
    prevent_initial_call=True,
)
def open_word(click: dict | None, value: str | None) -> str:
    """A clicked word opens that day's messages containing it (for analysts)."""
    word = clicked_word(click)
    if word is None:
        raise PreventUpdate
    return f"/messages?{urlencode({'word': word, 'day': _day(value).isoformat()})}"
