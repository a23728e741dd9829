"""The server-drawn line chart: coordinates map the data ranges onto the plot box."""

import re

from tigerdecode.demos.svgchart import Series, line_chart


def test_points_map_onto_the_plot_box():
    svg = line_chart([Series("a", [(0, 0, "lo"), (10, 1, "hi <x>")])], x_title="x",
                     y_title="y", x_range=(0, 10), y_range=(0, 1), mark=(5, 0.5, "m"), width=144,
                     height=100)
    (pts,) = re.findall(r'points="([^"]*)"', svg)
    # x: left margin 44, right 12 → [44, 132]. y: one legend row adds 14 to the height (114)
    # and to the bottom margin (36 + 14 = 50), so the box is 114 - 12 - 50 = 52 high: [12, 64].
    assert pts == "44.0,64.0 132.0,12.0"
    assert re.search(r'class="td-chart-mark" cx="88.0" cy="38.0"', svg)
    assert "hi &lt;x&gt;" in svg and "<x>" not in svg


def test_nothing_to_draw():
    assert line_chart([], x_title="x", y_title="y") == ""
    assert line_chart([Series("a", [])], x_title="x", y_title="y") == ""
