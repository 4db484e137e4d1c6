"""Clickable word clouds: the wordcloud package lays the words out, Plotly draws them as text.

``WordCloud.layout_`` gives each word's font size and the (row, col) where the package put the
top-left corner of the word's ink box (``getbbox``): it reserves that box (plus ``margin``) and
draws the ink there. The figure draws each word with the same font file (served from
``assets/fonts`` and declared in ``assets/pulse.css``) on a canvas exactly the graph's size, with
a reversed y axis, and puts the text's anchor where Plotly's "middle center" text lands on that
ink: Plotly centres the advance width on x and puts the baseline ``BASELINE_SHIFT`` em below y. An
invisible marker about the word's height sits under each anchor, because Plotly hits points, not
text. The word and its weight travel in ``customdata`` as plain lists, so ``clickData`` carries
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from PIL import ImageFont
from wordcloud import WordCloud

from core.settings import PROJECT_ROOT

FONT_PATH = PROJECT_ROOT / "assets" / "fonts" / "DejaVuSans.ttf"
FONT_FAMILY = "PulseCloud, 'DejaVu Sans', sans-serif"  # @font-face in assets/pulse.css
COLORMAP = "Dark2"
# plotly.js (textPointPosition) puts "middle" text's baseline 0.75 - 0.5 = 0.25 em below its point
BASELINE_SHIFT = 0.25
MARGIN = 6  # the layout's margin: words' ink ends up at least MARGIN // 2 pixels apart


@dataclass(frozen=True)
class PlacedWord:
    """A word where the layout put it, in canvas pixels (y grows downwards).

    ``x``/``y`` is the anchor Plotly's "middle center" text is drawn around; ``left``/``top``
    and ``width``/``height`` the word's ink box, which the layout reserved for it.
    """

    word: str
    weight: float
    font_size: int
    x: float
    y: float
    left: int
    top: int
    width: int
    height: int
    colour: str


def compute_layout(
    weights: Sequence[tuple[str, float]], width: int, height: int, font_path: Path = FONT_PATH
) -> WordCloud | None:
    """The wordcloud package's layout of the positive weights (None when there are none)."""
    frequencies = {word: float(weight) for word, weight in weights if weight > 0}
    if not frequencies:
        return None
    return WordCloud(
        font_path=str(font_path),
        width=width,
        height=height,
        prefer_horizontal=1.0,
        random_state=0,
        colormap=COLORMAP,
        min_font_size=10,
        max_font_size=max(12, height // 4),
        margin=MARGIN,
    ).generate_from_frequencies(frequencies)


def layout_words(
    weights: Sequence[tuple[str, float]], width: int, height: int, font_path: Path = FONT_PATH
) -> list[PlacedWord]:
    """Lay ``(word, weight)`` pairs out on a ``width`` x ``height`` canvas, horizontally.

    The same words, sizes and font give the same layout (the layout's randomness is seeded).
    Words that do not fit are left out, as the wordcloud package does.
    """
    if width < 50 or height < 50:
        raise ValueError(f"word cloud canvas {width}x{height}: use at least 50x50 pixels")
    cloud = compute_layout(weights, width, height, font_path)
    if cloud is None:
        return []
    placed = []
    for (word, weight), font_size, (row, col), _orientation, colour in cloud.layout_:
        font = ImageFont.truetype(str(font_path), font_size)
        left, top, right, bottom = font.getbbox(word, anchor="ls")  # around the baseline origin
        origin_x, baseline = col - left, row - top
        placed.append(
            PlacedWord(
                word=word,
                weight=float(weight),
                font_size=int(font_size),
                x=float(origin_x + font.getlength(word) / 2),
                y=float(baseline - BASELINE_SHIFT * font_size),
                left=int(col),
                top=int(row),
                width=right - left,
                height=bottom - top,
                colour=colour,
            )
        )
    return placed


def word_cloud_figure(
    weights: Sequence[tuple[str, float]],
    width: int,
    height: int,
    font_path: Path = FONT_PATH,
    *,
    empty_text: str = "No words to show for this selection yet",
) -> go.Figure:
    """A Plotly figure of the word cloud of ``weights`` on a fixed ``width`` x ``height`` canvas.

    Give the graph showing it the same pixel size (and ``responsive: False``) so the layout's
    positions land where the words are drawn.
    """
    words = layout_words(weights, width, height, font_path)
    figure = go.Figure(
        go.Scatter(
            x=[w.x for w in words],
            y=[w.y for w in words],
            mode="text+markers",
            text=[w.word for w in words],
            textposition="middle center",
            textfont={
                "family": FONT_FAMILY,
                "size": [w.font_size for w in words],
                "color": [w.colour for w in words],
            },
            marker={"size": [w.height for w in words], "opacity": 0, "symbol": "square"},
            customdata=[[w.word, round(w.weight, 4)] for w in words],
            hovertemplate="%{customdata[0]}<extra></extra>",
            showlegend=False,
        )
    )
    axis = {"visible": False, "fixedrange": True, "showgrid": False, "zeroline": False}
    figure.update_layout(
        width=width,
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        xaxis={**axis, "range": [0, width]},
        yaxis={**axis, "range": [height, 0]},  # rows grow downwards, as in the image
        plot_bgcolor="rgba(0,0,0,0)",
        paper_bgcolor="rgba(0,0,0,0)",
        hovermode="closest",
        dragmode=False,
    )
    if not words:
        figure.add_annotation(
            text=empty_text, x=width / 2, y=height / 2, showarrow=False, font={"size": 14}
        )
    return figure


def clicked_word(click_data: dict[str, Any] | None) -> str | None:
    """The word a ``clickData`` of :func:`word_cloud_figure` points at (None for no click)."""
    points = (click_data or {}).get("points") or []
    if not points or not points[0].get("customdata"):
        return None
    return str(points[0]["customdata"][0])
