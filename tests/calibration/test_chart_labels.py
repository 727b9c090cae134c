"""Charts whose labels fit and whose error bars have a colour (issue 14, item 8)."""

from __future__ import annotations

from calibration import charts

REGIONS = ["North America", "Middle East & North Africa"]


def forest():
    return charts.forest(
        REGIONS, [0.01, -0.02], [-0.01, -0.05], [0.03, 0.01], margin=0.02, title="t",
        verdicts=["go", "no-go"],
    )  # fmt: skip


def test_the_forest_plot_leaves_room_for_the_longest_region_name():
    layout = forest().layout
    assert layout.margin.l >= 7 * len("Middle East & North Africa")
    assert layout.yaxis.automargin is True


def test_the_forest_plot_error_bars_have_one_valid_colour():
    (trace,) = forest().data
    assert isinstance(trace.error_x.color, str) and trace.error_x.color.startswith("#")
