"""Sources page: each source's health (last success, failures, totals, last error), live."""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
from dash import Input, Output, callback, dcc, html

from core.models import utcnow
from core.queries import source_health
from dashboard.context import pulse
from dashboard.tables import source_health_rows

dash.register_page(__name__, path="/sources", title="Pulse · Sources", name="Sources")

COLUMNS = [
    {"field": "source", "pinned": "left"},
    {"field": "channel"},
    {
        "field": "status",
        "cellClassRules": {
            "text-danger fw-bold": "params.value == 'DOWN'",
            "text-warning fw-bold": "params.value == 'Failing'",
            "text-success": "params.value == 'OK'",
        },
    },
    {"field": "last_success", "headerName": "Last success"},
    {"field": "last_attempt", "headerName": "Last attempt"},
    {"field": "failures_in_a_row", "headerName": "Failures in a row", "type": "numericColumn"},
    {"field": "messages", "headerName": "Messages stored", "type": "numericColumn"},
    {"field": "fetched", "headerName": "Fetched", "type": "numericColumn"},
    {"field": "failed_syncs", "headerName": "Failed syncs", "type": "numericColumn"},
    {"field": "every", "headerName": "Every"},
    {"field": "last_error", "headerName": "Last error", "flex": 2, "tooltipField": "last_error"},
]


def layout(**_query: str) -> html.Div:
    """The sources grid; the interval refreshes it."""
    refresh_ms = pulse().settings.dashboard_refresh_seconds * 1000
    return html.Div(
        [
            html.H4("Sources"),
            html.P(
                "Every source Pulse pulls from or receives from. A source is DOWN when it has "
                "had no success for several of its intervals.",
                className="text-muted",
            ),
            dag.AgGrid(
                id="sources-grid",
                columnDefs=COLUMNS,
                rowData=[],
                defaultColDef={"sortable": True, "resizable": True, "flex": 1, "minWidth": 110},
                dashGridOptions={"domLayout": "autoHeight"},
            ),
            dcc.Interval(id="sources-tick", interval=refresh_ms),
        ]
    )


@callback(Output("sources-grid", "rowData"), Input("sources-tick", "n_intervals"))
def refresh_sources(_tick: int | None) -> list[dict[str, Any]]:
    """Current health of every source."""
    context = pulse()
    now = utcnow()
    health = source_health(context.engine, now, context.settings.source_down_intervals)
    return source_health_rows(health, now, context.settings.tz)
