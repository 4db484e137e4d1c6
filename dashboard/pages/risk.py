"""Risk queue page (analyst): flagged messages, waiting ones first, confirm or dismiss with a
reason. Message text is shown as text only, and every time it is sent it is audited.

Data and actions are in dashboard/risk_view.py.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.access import current_role, current_username
from dashboard.context import pulse
from dashboard.risk_view import review, show_queue
from topics.risk_review import ReviewError

dash.register_page(
    __name__, path="/risk", title="Pulse · Risk queue", name="Risk queue", min_role="analyst"
)

COLUMNS = [
    {"field": "id", "checkboxSelection": True, "maxWidth": 90},
    {
        "field": "level",
        "maxWidth": 110,
        "cellClassRules": {"text-danger fw-bold": "params.value == 'urgent'"},
    },
    {"field": "categories"},
    {"field": "score", "type": "numericColumn", "maxWidth": 100},
    {"field": "received"},
    {"field": "channel", "maxWidth": 110},
    {"field": "school"},
    {"field": "subject"},
    {"field": "body", "flex": 3, "wrapText": True, "autoHeight": True},
    {"field": "notes"},
    {"field": "review", "maxWidth": 120},
    {"field": "reviewed_by", "headerName": "Reviewed by"},
    {"field": "reason"},
]
ACTION_ERRORS = (ReviewError, PermissionError, ValueError)


def layout(**_query: str) -> html.Div:
    """The queue grid, the selected message in full, and the review form."""
    refresh_ms = pulse().settings.dashboard_refresh_seconds * 1000
    return html.Div(
        [
            html.H4("Risk queue"),
            html.P(
                "Flagged messages, waiting ones first, urgent first. Every flag is confirmed or "
                "dismissed by a person, with a reason; dismissed messages teach Pulse to lower "
                "their near-duplicates. Opening this page is recorded in the audit log.",
                className="text-muted",
            ),
            dbc.Checkbox(id="risk-reviewed", label="Include reviewed messages", value=False),
            dag.AgGrid(
                id="risk-grid",
                columnDefs=COLUMNS,
                rowData=[],
                getRowId="params.data.id",
                defaultColDef={"sortable": True, "resizable": True, "filter": True, "flex": 1},
                dashGridOptions={"rowSelection": "multiple", "pagination": True},
                style={"height": "60vh"},
            ),
            html.Pre(id="risk-text", className="border rounded p-2 mt-2 bg-light"),
            dbc.Row(
                [
                    dbc.Col(dbc.Textarea(id="risk-reason", placeholder="Reason (required)"), md=6),
                    dbc.Col(dbc.Button("Confirm", id="risk-confirm", color="danger"), md="auto"),
                    dbc.Col(dbc.Button("Dismiss", id="risk-dismiss", color="secondary"), md="auto"),
                ],
                className="g-2 my-2 align-items-center",
            ),
            html.Div(id="risk-status"),
            dcc.Store(id="risk-signature"),
            dcc.Interval(id="risk-tick", interval=refresh_ms),
        ]
    )


@callback(
    Output("risk-grid", "rowData"),
    Output("risk-signature", "data"),
    Output("risk-status", "children"),
    Input("risk-tick", "n_intervals"),
    Input("risk-reviewed", "value"),
    Input("risk-confirm", "n_clicks"),
    Input("risk-dismiss", "n_clicks"),
    State("risk-grid", "selectedRows"),
    State("risk-reason", "value"),
    State("risk-signature", "data"),
)
def refresh_queue(
    _tick: int | None,
    include_reviewed: bool | None,
    _confirm: int | None,
    _dismiss: int | None,
    selected: list[dict] | None,
    reason: str | None,
    seen: str | None,
) -> tuple[Any, Any, Any]:
    """The queue (sent again only when it changed); confirms or dismisses the selected flags."""
    context = pulse()
    username, role = current_username(), current_role()
    status: Any = dash.no_update
    if ctx.triggered_id in ("risk-confirm", "risk-dismiss"):
        decision = "confirm" if ctx.triggered_id == "risk-confirm" else "dismiss"
        ids = [row["id"] for row in selected or []]
        try:
            done = review(context.engine, decision, ids, reason, username, role)
            status = dbc.Alert(done, color="success", dismissable=True)
        except ACTION_ERRORS as exc:
            status = dbc.Alert(str(exc), color="danger", dismissable=True)
    try:
        shown = show_queue(
            context.engine, username, role, bool(include_reviewed), seen, context.settings.tz
        )
    except PermissionError as exc:
        return [], None, dbc.Alert(str(exc), color="danger")
    if shown is None:
        if status is dash.no_update:
            raise PreventUpdate
        return dash.no_update, dash.no_update, status
    rows, signature = shown
    return rows, signature, status


@callback(Output("risk-text", "children"), Input("risk-grid", "selectedRows"))
def show_selected(selected: list[dict] | None) -> str:
    """The last selected message in full, as plain text (already in the grid: no new read)."""
    if not selected:
        return "Select a message to read it in full here."
    row = selected[-1]
    subject = f"{row['subject']}\n\n" if row.get("subject") else ""
    return f"{subject}{row['body']}"
