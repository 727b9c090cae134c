"""Charts are built from arrays and carry the numbers they are given."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration import charts


def test_kde_integrates_to_one():
    rng = np.random.default_rng(0)
    x, dens = charts.kde(rng.normal(0.01, 0.02, 4000))
    assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=0.01)
    assert x[np.argmax(dens)] == pytest.approx(0.01, abs=0.005)


def test_delta_density_draws_the_margin_and_the_interval_in_points():
    rng = np.random.default_rng(1)
    fig = charts.delta_density(
        rng.normal(-0.01, 0.01, 1000), margin=0.02, title="Correctness",
        interval=(-0.03, 0.01), verdict="undecided",
    )  # fmt: skip
    margin_line = fig.layout.shapes[0]
    assert margin_line.x0 == margin_line.x1 == pytest.approx(-2.0)
    band = fig.layout.shapes[-1]
    assert (band.x0, band.x1) == (pytest.approx(-3.0), pytest.approx(1.0))
    density = fig.data[1]
    assert min(density.x) < -4 and max(density.x) > 2  # points, not shares
    shaded = fig.data[0]
    assert min(shaded.x) >= -2.0  # only the region Δ > −margin is shaded


def test_forest_lists_regions_top_down_with_asymmetric_intervals():
    fig = charts.forest(
        ["EU", "US"], [0.01, -0.02], [-0.01, -0.05], [0.02, 0.00], margin=0.02, title="t",
        verdicts=["go", "undecided"],
    )  # fmt: skip
    trace = fig.data[0]
    assert list(trace.y) == ["US", "EU"]  # plotly draws the first category at the bottom
    np.testing.assert_allclose(trace.x, [-2.0, 1.0])
    np.testing.assert_allclose(trace.error_x.array, [2.0, 1.0])
    np.testing.assert_allclose(trace.error_x.arrayminus, [3.0, 2.0])


def test_narrowing_sorts_by_labels():
    fig = charts.narrowing([200, 100], [0.0, 0.01], [-0.01, -0.03], [0.01, 0.05], margin=0.02,
                           title="t")  # fmt: skip
    line = fig.data[1]
    assert list(line.x) == [100, 200]
    np.testing.assert_allclose(line.y, [1.0, 0.0])


def test_judge_rates_has_one_bar_trace_per_arm():
    fig = charts.judge_rates(
        ["orion", "nimbus"], [[0.9, 0.85, 0.95], [0.88, 0.8, 0.93]],
        [[0.1, 0.05, 0.15], [0.24, 0.18, 0.3]], title="judge",
    )  # fmt: skip
    assert [t.name for t in fig.data] == ["orion", "nimbus"]
    np.testing.assert_allclose(fig.data[1].y, [88.0, 24.0])


def test_figure_spec_is_json_safe_inside_a_script_element():
    fig = charts.forest(["</script><b>x"], [0], [-0.01], [0.01], margin=0.02, title="t")
    spec = charts.figure_spec(fig)
    assert "</" not in spec and "<" not in spec
    data = json.loads(spec)
    assert data["data"][0]["y"] == ["</script><b>x"]
    assert data["config"]["displaylogo"] is False


def test_figure_html_is_a_fragment_without_plotly_js():
    fig = charts.forest(["EU"], [0], [-0.01], [0.01], margin=0.02, title="t")
    html = charts.figure_html(fig, div_id="abc")
    assert 'id="abc"' in html and "Plotly.newPlot" in html
    assert "<html" not in html and "cdn.plot.ly" not in html and len(html) < 20_000
