"""The clickable word cloud: positions from the wordcloud layout, clicks carry the word."""

from __future__ import annotations

import pytest
from PIL import ImageFont

from dashboard.wordcloud import (
    FONT_PATH,
    clicked_word,
    compute_layout,
    layout_words,
    word_cloud_figure,
)

WEIGHTS = [("bus", 1.0), ("lunch", 0.8), ("late", 0.6), ("cafeteria", 0.5), ("autobús", 0.4)] + [
    (f"palabra{i}", 0.3 / (i + 1)) for i in range(30)
]


def test_font_is_served_from_assets_and_declared_in_css():
    assert FONT_PATH.exists() and FONT_PATH.parent.name == "fonts"
    css = (FONT_PATH.parent.parent / "pulse.css").read_text()
    assert "PulseCloud" in css and "fonts/DejaVuSans.ttf" in css


def test_positions_are_the_centres_of_the_layout_boxes():
    width, height = 600, 300
    cloud = compute_layout(WEIGHTS, width, height)
    placed = layout_words(WEIGHTS, width, height)
    assert [p.word for p in placed] == [entry[0][0] for entry in cloud.layout_]
    for p, ((word, _), size, (row, col), orientation, _colour) in zip(
        placed, cloud.layout_, strict=True
    ):
        assert orientation is None  # horizontal only: scatter text cannot rotate
        left, top, right, bottom = ImageFont.truetype(str(FONT_PATH), size).getbbox(word)
        assert p.x == pytest.approx(col + (left + right) / 2)  # x = col, y = row (top-left)
        assert p.y == pytest.approx(row + (top + bottom) / 2)
        assert p.x - p.width / 2 >= 0 and p.x + p.width / 2 <= width + 1
        assert p.y - p.height / 2 >= 0 and p.y + p.height / 2 <= height + 1
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
