"""Figure builders: plain functions from query results to Plotly figures (no Dash, no database)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd
import plotly.graph_objects as go

CHANNEL_COLOURS = {
    "email": "#2f6db5",
    "sms": "#2a9d8f",
    "social": "#e76f51",
    "webform": "#8d6cab",
    "voicemail": "#e9c46a",
    "import": "#6c757d",
    "demo": "#adb5bd",
}


def volume_figure(volume: pd.DataFrame, tz: ZoneInfo) -> go.Figure:
    """Messages per hour, stacked by channel, in the district's local time."""
    figure = go.Figure()
    local = volume.assign(hour=volume["hour"].dt.tz_convert(tz))
    for kind, rows in local.groupby("source_kind", sort=True):
        figure.add_bar(
            x=rows["hour"],
            y=rows["n"],
            name=str(kind),
            marker_color=CHANNEL_COLOURS.get(str(kind)),
            hovertemplate="%{x|%a %H:00}: %{y} messages<extra>" + str(kind) + "</extra>",
        )
    figure.update_layout(
        barmode="stack",
        margin={"l": 40, "r": 10, "t": 10, "b": 40},
        legend={"orientation": "h", "y": -0.15},
        yaxis_title="messages per hour",
        template="plotly_white",
        uirevision="volume",
    )
    return figure
