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


HEATMAP_TOPICS = 15


def empty_figure(text: str, height: int = 300) -> go.Figure:
    """A blank figure saying ``text`` (no data yet, nothing matches)."""
    figure = go.Figure()
    figure.add_annotation(text=text, showarrow=False, font={"size": 14})
    hidden = {"visible": False}
    figure.update_layout(
        xaxis=hidden,
        yaxis=hidden,
        template="plotly_white",
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return figure


def heatmap_figure(
    counts: pd.DataFrame, buckets: list[pd.Timestamp], bucket: str, top: int = HEATMAP_TOPICS
) -> go.Figure:
    """Topics (busiest ``top``, busiest first) x time buckets, coloured by message count.

    ``counts`` has columns topic_id, label, bucket, n (see ``dashboard.data.topic_heatmap``);
    ``buckets`` are every column to show (hours or days), so quiet ones show as zero. Each
    cell's customdata is ``"<topic_id>|<bucket ISO>"`` for the click-through.
    """
    if counts.empty:
        return empty_figure("No topic counts in this window yet")
    totals = counts.groupby("topic_id")["n"].sum().sort_values(ascending=False, kind="stable")
    topics = [int(t) for t in totals.index[:top]]
    labels = counts.drop_duplicates("topic_id").set_index("topic_id")["label"]
    grid = (
        counts.pivot_table(index="topic_id", columns="bucket", values="n", aggfunc="sum")
        .reindex(index=topics, columns=buckets)
        .fillna(0)
        .astype(int)
    )
    fmt = "%H:00" if bucket == "hour" else "%a %d %b"
    x = [b.strftime(fmt) for b in buckets]
    y = [f"{labels[t]} (#{t})" for t in topics]
    customdata = [[f"{t}|{b.isoformat()}" for b in buckets] for t in topics]
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy().tolist(),
            x=x,
            y=y,
            customdata=customdata,
            colorscale="Blues",
            hovertemplate="%{y}<br>%{x}: %{z} messages<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 10, "b": 40},
        yaxis={"autorange": "reversed", "automargin": True},
        xaxis={"type": "category"},
        template="plotly_white",
        height=max(220, 28 * len(topics) + 80),
    )
    return figure


def heatmap_cell(click_data: dict | None) -> tuple[int, str] | None:
    """The (topic_id, bucket ISO) of a clicked heatmap cell, or None."""
    points = (click_data or {}).get("points") or []
    if not points or not points[0].get("customdata"):
        return None
    topic, _, bucket = str(points[0]["customdata"]).partition("|")
    return int(topic), bucket


def sparkline_figure(series: list[int], colour: str = "#2f6db5") -> go.Figure:
    """A tiny line of hourly counts, no axes: for the trending list."""
    figure = go.Figure(
        go.Scatter(
            y=series,
            mode="lines",
            line={"color": colour, "width": 1.5},
            fill="tozeroy",
            hoverinfo="skip",
        )
    )
    axis = {"visible": False, "fixedrange": True}
    figure.update_layout(
        height=36,
        width=140,
        margin={"l": 0, "r": 0, "t": 2, "b": 2},
        xaxis=axis,
        yaxis={**axis, "rangemode": "tozero"},
        plot_bgcolor="rgba(0,0,0,0)",
        paper_bgcolor="rgba(0,0,0,0)",
        showlegend=False,
    )
    return figure


def channel_mix_figure(mix: dict[str, int]) -> go.Figure:
    """A donut of messages per channel."""
    if not mix:
        return empty_figure("No messages in this window", height=260)
    figure = go.Figure(
        go.Pie(
            labels=list(mix),
            values=list(mix.values()),
            hole=0.55,
            marker={"colors": [CHANNEL_COLOURS.get(kind) for kind in mix]},
            sort=False,
            textinfo="label+percent",
        )
    )
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return figure


def daily_figure(daily: pd.DataFrame) -> go.Figure:
    """Messages per day (columns day, n) as bars."""
    figure = go.Figure(
        go.Bar(x=daily["day"], y=daily["n"], marker_color="#2f6db5", hovertemplate="%{x}: %{y}")
    )
    figure.update_layout(
        height=240,
        margin={"l": 40, "r": 10, "t": 10, "b": 40},
        yaxis_title="messages per day",
        template="plotly_white",
    )
    return figure


def breakdown_figure(counts: dict[str, int], title: str) -> go.Figure:
    """Horizontal bars of counts by one dimension (channel, school, language), largest on top."""
    if not counts:
        return empty_figure(f"No messages by {title}", height=200)
    figure = go.Figure(
        go.Bar(x=list(counts.values()), y=list(counts), orientation="h", marker_color="#6c757d")
    )
    figure.update_layout(
        height=max(160, 26 * len(counts) + 60),
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        title={"text": title, "font": {"size": 13}},
        yaxis={"autorange": "reversed", "automargin": True},
        template="plotly_white",
    )
    return figure
