"""Alerts page: alert history with acknowledge (analyst), silences and calendar events (admin).

Data and actions are in dashboard/alerts_view.py; the callbacks here only pass the signed-in
user's name and role along and show the outcome.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, ctx, dcc, html

from alerts.engine import AlertError
from core.models import ALERT_KINDS, utcnow
from dashboard.access import current_role, current_username, role_at_least
from dashboard.alerts_view import (
    acknowledge_alerts,
    add_event,
    alert_rows,
    calendar_rows,
    end_silence,
    silence_alerts,
    silence_rows,
)
from dashboard.context import pulse

dash.register_page(
    __name__, path="/alerts", title="Pulse · Alerts", name="Alerts", min_role="viewer"
)

GRID_DEFAULTS = {"sortable": True, "resizable": True, "filter": True, "flex": 1, "minWidth": 100}
ALERT_COLUMNS = [
    {"field": "id", "checkboxSelection": True, "maxWidth": 90},
    {"field": "kind"},
    {
        "field": "state",
        "cellClassRules": {
            "text-danger fw-bold": "params.value == 'firing'",
            "text-muted": "params.value == 'resolved'",
        },
    },
    {"field": "severity"},
    {"field": "topic", "flex": 2},
    {"field": "observed", "type": "numericColumn"},
    {"field": "expected", "type": "numericColumn"},
    {"field": "first_seen", "headerName": "First seen"},
    {"field": "fired_at", "headerName": "Fired"},
    {"field": "resolved_at", "headerName": "Resolved"},
    {"field": "acknowledged_by", "headerName": "Acknowledged by"},
]
SILENCE_COLUMNS = [
    {"field": "id", "checkboxSelection": True, "maxWidth": 90},
    *({"field": f} for f in ("kind", "topic_id", "starts", "ends", "by")),
    {"field": "comment", "flex": 2},
]
CALENDAR_COLUMNS = [
    {"field": f} for f in ("name", "kind", "starts_on", "ends_on", "school", "mutes_alerts")
]
ACTION_ERRORS = (AlertError, PermissionError, ValueError)  # shown to the user, not raised


def _grid(grid_id: str, columns: list[dict[str, Any]], select: bool) -> dag.AgGrid:
    options: dict[str, Any] = {"domLayout": "autoHeight", "pagination": True}
    if select:
        options["rowSelection"] = "multiple"
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        getRowId="params.data.id" if select else None,  # a refresh keeps the selection
        defaultColDef=GRID_DEFAULTS,
        dashGridOptions=options,
    )


def _silence_form() -> html.Div:
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(
                        dcc.Dropdown(
                            id="silence-kind",
                            options=list(ALERT_KINDS),
                            placeholder="Kind (any)",
                        ),
                        md=3,
                    ),
                    dbc.Col(
                        dbc.Input(id="silence-topic", type="number", placeholder="Topic id"), md=2
                    ),
                    dbc.Col(
                        dbc.InputGroup(
                            [
                                dbc.Input(id="silence-hours", type="number", value=4, min=0.5),
                                dbc.InputGroupText("hours"),
                            ]
                        ),
                        md=2,
                    ),
                    dbc.Col(dbc.Input(id="silence-comment", placeholder="Why (optional)"), md=3),
                    dbc.Col(dbc.Button("Silence", id="silence-add", color="warning"), md=2),
                ],
                className="g-2 mb-2",
            ),
            dbc.Button("End selected silence", id="silence-end", color="secondary", size="sm"),
        ],
        className="mb-2",
    )


def _calendar_form() -> dbc.Row:
    return dbc.Row(
        [
            dbc.Col(dbc.Input(id="event-name", placeholder="Event (e.g. Snow day)"), md=3),
            dbc.Col(dbc.Input(id="event-kind", placeholder="Kind", value="event"), md=2),
            dbc.Col(dcc.DatePickerSingle(id="event-start", placeholder="Starts"), md=2),
            dbc.Col(dcc.DatePickerSingle(id="event-end", placeholder="Ends (optional)"), md=2),
            dbc.Col(dbc.Input(id="event-school", placeholder="School (all)"), md=1),
            dbc.Col(dbc.Checkbox(id="event-mute", label="Mute alerts", value=False), md=1),
            dbc.Col(dbc.Button("Add", id="event-add", color="primary"), md=1),
        ],
        className="g-2 mb-2",
    )


def layout(**_query: str) -> html.Div:
    """History, silences and calendar; action controls only for roles that may use them."""
    refresh_ms = pulse().settings.dashboard_refresh_seconds * 1000
    analyst, admin = role_at_least("analyst"), role_at_least("admin")
    return html.Div(
        [
            html.H4("Alerts"),
            dbc.Checkbox(id="alerts-closed", label="Include resolved alerts", value=True),
            _grid("alerts-grid", ALERT_COLUMNS, select=analyst),
            html.Div(
                dbc.Button("Acknowledge selected", id="alerts-ack", color="primary"),
                className="my-2",
                hidden=not analyst,
            ),
            html.Div(id="alerts-status"),
            html.H5("Silences", className="mt-4"),
            html.Div(_silence_form(), hidden=not admin),
            _grid("silences-grid", SILENCE_COLUMNS, select=admin),
            html.Div(id="silences-status"),
            html.H5("Calendar events", className="mt-4"),
            html.Div(_calendar_form(), hidden=not admin),
            _grid("calendar-grid", CALENDAR_COLUMNS, select=False),
            html.Div(id="calendar-status"),
            dcc.Interval(id="alerts-tick", interval=refresh_ms),
        ]
    )


def _status(message: str, ok: bool) -> dbc.Alert:
    return dbc.Alert(message, color="success" if ok else "danger", dismissable=True)


@callback(
    Output("alerts-grid", "rowData"),
    Output("alerts-status", "children"),
    Input("alerts-tick", "n_intervals"),
    Input("alerts-closed", "value"),
    Input("alerts-ack", "n_clicks"),
    State("alerts-grid", "selectedRows"),
)
def refresh_alerts(
    _tick: int | None, include_closed: bool, _ack: int | None, selected: list[dict] | None
) -> tuple[list[dict[str, Any]], Any]:
    """The alert grid; acknowledges the selected alerts when the button was pressed."""
    context = pulse()
    status = dash.no_update
    if ctx.triggered_id == "alerts-ack":
        try:
            done = acknowledge_alerts(
                context.engine,
                [row["id"] for row in selected or []],
                current_username(),
                current_role(),
                utcnow(),
            )
            status = _status(done, True)
        except ACTION_ERRORS as exc:
            status = _status(str(exc), False)
    return alert_rows(context.engine, context.settings.tz, bool(include_closed)), status


@callback(
    Output("silences-grid", "rowData"),
    Output("silences-status", "children"),
    Input("alerts-tick", "n_intervals"),
    Input("silence-add", "n_clicks"),
    Input("silence-end", "n_clicks"),
    State("silence-kind", "value"),
    State("silence-topic", "value"),
    State("silence-hours", "value"),
    State("silence-comment", "value"),
    State("silences-grid", "selectedRows"),
)
def refresh_silences(
    _tick: int | None,
    _add: int | None,
    _end: int | None,
    kind: str | None,
    topic_id: int | None,
    hours: float | None,
    comment: str | None,
    selected: list[dict] | None,
) -> tuple[list[dict[str, Any]], Any]:
    """Active silences; adds one or ends the selected one when a button was pressed."""
    context = pulse()
    now, status = utcnow(), dash.no_update
    try:
        if ctx.triggered_id == "silence-add":
            done = silence_alerts(
                context.engine,
                kind,
                topic_id,
                hours,
                comment,
                current_username(),
                current_role(),
                now,
            )
            status = _status(done, True)
        elif ctx.triggered_id == "silence-end":
            silence_id = selected[0]["id"] if selected else None
            done = end_silence(context.engine, silence_id, current_username(), current_role(), now)
            status = _status(done, True)
    except ACTION_ERRORS as exc:
        status = _status(str(exc), False)
    return silence_rows(context.engine, context.settings.tz, now), status


@callback(
    Output("calendar-grid", "rowData"),
    Output("calendar-status", "children"),
    Input("event-add", "n_clicks"),
    State("event-name", "value"),
    State("event-kind", "value"),
    State("event-start", "date"),
    State("event-end", "date"),
    State("event-school", "value"),
    State("event-mute", "value"),
)
def refresh_calendar(
    _add: int | None,
    name: str | None,
    kind: str | None,
    starts_on: str | None,
    ends_on: str | None,
    school: str | None,
    mute: bool | None,
) -> tuple[list[dict[str, Any]], Any]:
    """Known events (read on page load, they change rarely); adds one when the button is pressed."""
    context = pulse()
    status = dash.no_update
    if ctx.triggered_id == "event-add":
        try:
            done = add_event(
                context.engine, name, kind, starts_on, ends_on, school, bool(mute), current_role()
            )
            status = _status(done, True)
        except ACTION_ERRORS as exc:
            status = _status(str(exc), False)
    return calendar_rows(context.engine, context.settings), status
