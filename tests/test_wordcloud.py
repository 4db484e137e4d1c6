"""The clickable word cloud: positions from the wordcloud layout, clicks carry the word."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from dashboard.wordcloud import (
    BASELINE_SHIFT,
    FONT_PATH,
    MARGIN,
    PlacedWord,
    clicked_word,
    compute_layout,
    layout_words,
    word_cloud_figure,
)

WEIGHTS = [("bus", 1.0), ("lunch", 0.8), ("late", 0.6), ("cafeteria", 0.5), ("autobús", 0.4)] + [
    (f"palabra{i}", 0.3 / (i + 1)) for i in range(30)
]
# words with and without ascenders and descenders, weights from dominant to marginal
CLOUD_TEXT = (
    "enfermera snow autobús lunch late cafeteria gym jaqueca tos fiebre dolor quejas horario "
    "profesor examen biblioteca wifi parking lluvia nieve frío calor agua comida menú pizza "
    "yoga fútbol piscina ducha baño limpieza ruido fiesta música clase aula tarea nota beca "
    "matrícula secretaría director padres hijos juego patio recreo pelea acoso miedo ayuda "
    "gracias genial bien mal triste feliz cansado sueño"
)
CLOUD_WEIGHTS = [(word, 1 / (1 + i) ** 0.8) for i, word in enumerate(CLOUD_TEXT.split())]


def test_font_is_served_from_assets_and_declared_in_css():
    assert FONT_PATH.exists() and FONT_PATH.parent.name == "fonts"
    css = (FONT_PATH.parent.parent / "pulse.css").read_text()
    assert "PulseCloud" in css and "fonts/DejaVuSans.ttf" in css


def plotly_text(word: PlacedWord) -> tuple[tuple[int, int], ImageFont.FreeTypeFont]:
    """Where Plotly's "middle center" text of ``word`` starts its baseline, and the font."""
    font = ImageFont.truetype(str(FONT_PATH), word.font_size)
    origin_x = word.x - font.getlength(word.word) / 2  # Plotly centres the advance width
    baseline = word.y + BASELINE_SHIFT * word.font_size
    return (round(origin_x), round(baseline)), font


def grown(ink: np.ndarray, pixels: int) -> np.ndarray:
    """``ink`` with every inked pixel spread ``pixels`` pixels in every direction."""
    for _ in range(pixels):
        padded = np.pad(ink, 1)
        rows, cols = ink.shape
        ink = np.any([padded[r : r + rows, c : c + cols] for r in range(3) for c in range(3)], 0)
    return ink


def test_words_are_drawn_apart_inside_their_boxes_and_the_canvas():
    width, height = 720, 340
    placed = layout_words(CLOUD_WEIGHTS, width, height)
    assert len(placed) >= 50
    both = Image.new("L", (width, height))
    inks, boxes = [], []
    for word in placed:
        origin, font = plotly_text(word)
        alone = Image.new("L", (width, height))
        ImageDraw.Draw(alone).text(origin, word.word, fill=255, font=font, anchor="ls")
        ImageDraw.Draw(both).text(origin, word.word, fill=255, font=font, anchor="ls")
        box = ImageDraw.Draw(alone).textbbox(origin, word.word, font=font, anchor="ls")
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height, word
        ink = np.asarray(alone) > 0
        left, top, right, bottom = box
        assert ink.sum() == ink[top:bottom, left:right].sum() > 0, word
        inks.append(ink)
        boxes.append(box)
    # words' ink at least MARGIN // 2 pixels apart: the package leaves margin // 2 around a box,
    # less one pixel above and left (its free-space query skips the first row and column)
    inked = np.sum(inks, axis=0)
    for word, ink in zip(placed, inks, strict=True):
        others = inked - ink > 0
        assert not (grown(ink, MARGIN // 2 - 1) & others).any(), f"{word.word} touches a word"
    # the text drawn where Plotly puts it is exactly the ink the package drew for its layout
    cloud = compute_layout(CLOUD_WEIGHTS, width, height)
    package = cloud.recolor(color_func=lambda *args, **kwargs: "white").to_image().convert("L")
    assert np.array_equal(np.asarray(both), np.asarray(package))
    assert boxes == [(w.left, w.top, w.left + w.width, w.top + w.height) for w in placed]


def test_layout_follows_the_package_and_is_repeatable():
    width, height = 600, 300
    cloud = compute_layout(WEIGHTS, width, height)
    placed = layout_words(WEIGHTS, width, height)
    assert [p.word for p in placed] == [entry[0][0] for entry in cloud.layout_]
    for p, (_word, size, (row, col), orientation, _colour) in zip(
        placed, cloud.layout_, strict=True
    ):
        assert orientation is None  # horizontal only: scatter text cannot rotate
        assert (p.top, p.left, p.font_size) == (row, col, size)
        assert type(p.x) is float and type(p.y) is float
    assert placed[0].word == "bus" and placed[0].font_size == max(p.font_size for p in placed)
    assert layout_words(WEIGHTS, width, height) == placed  # same input, same layout


def test_figure_is_a_fixed_canvas_with_reversed_y_and_plain_list_customdata():
    figure = word_cloud_figure(WEIGHTS, 600, 300).to_plotly_json()
    layout, trace = figure["layout"], figure["data"][0]
    assert (layout["width"], layout["height"]) == (600, 300)
    assert list(layout["xaxis"]["range"]) == [0, 600]
    assert list(layout["yaxis"]["range"]) == [300, 0]
    assert trace["textposition"] == "middle center" and trace["marker"]["opacity"] == 0
    assert "PulseCloud" in trace["textfont"]["family"]
    customdata = trace["customdata"]
    assert all(type(item) is list for item in customdata)
    assert customdata[0] == ["bus", 1.0]
    assert list(trace["text"]) == [item[0] for item in customdata]


def test_click_data_carries_the_word():
    trace = word_cloud_figure(WEIGHTS, 600, 300).to_plotly_json()["data"][0]
    i = list(trace["text"]).index("autobús")
    point = {"x": trace["x"][i], "y": trace["y"][i], "customdata": trace["customdata"][i]}
    click = {"points": [point]}
    assert clicked_word(click) == "autobús"
    assert clicked_word(None) is None and clicked_word({"points": []}) is None


def test_empty_and_bad_input():
    figure = word_cloud_figure([], 400, 200)
    assert len(figure.data[0].x) == 0
    assert "No words" in figure.layout.annotations[0].text
    assert word_cloud_figure([("zero", 0.0)], 400, 200).data[0].x == ()
    with pytest.raises(ValueError, match="canvas 10x200"):
        word_cloud_figure(WEIGHTS, 10, 200)
