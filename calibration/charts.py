"""Plotly figures of the dashboards and the report, built from arrays (never querysets).

Every builder takes numpy arrays / floats and returns a ``plotly.graph_objects.Figure``.
Two ways out:

* :func:`figure_html` — ``to_html(full_html=False, include_plotlyjs=False)``: a ``<div>`` and
  an inline ``<script>`` calling ``Plotly.newPlot``. Used by the downloadable report, a file
  opened offline where no content security policy applies.
* :func:`figure_spec` — the figure as JSON, for the pages. The site sends a strict CSP
  (no inline script without the response's nonce, no inline ``style`` attributes), and
  ``to_html`` output has both; so pages put the JSON in a ``<script type="application/json">``
  (data, never executed) beside an empty ``<div>``, and ``static/baton/dashboard.js`` draws
  it. The same figure objects feed both, so the page and the report never disagree.

Figures use an empty template: plotly's default template adds ~8 KB of JSON per figure,
which the pages would ship a dozen times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from numpy.typing import ArrayLike

__all__ = [
    "COLOURS",
    "delta_density",
    "figure_html",
    "figure_spec",
    "forest",
    "judge_rates",
    "kde",
    "narrowing",
]

COLOURS = {
    "go": "#1a7f37",
    "no-go": "#cf222e",
    "undecided": "#9a6700",
    "accent": "#0b5cad",
    "incumbent": "#57606a",
    "candidate": "#0b5cad",
    "muted": "#8c959f",
    "band": "rgba(11, 92, 173, 0.18)",
}
CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def _layout(title: str, *, height: int = 260, **kw: object) -> dict:
    layout: dict = {
        "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 40, "b": 44},
        "font": _FONT,
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "showlegend": False,
        "template": {},
    }
    layout.update(kw)
    return layout


def _axis(title: str, **kw: object) -> dict:
    return {
        "title": {"text": title},
        "gridcolor": "#eaeef2",
        "zerolinecolor": "#d0d7de",
        "linecolor": "#d0d7de",
        **kw,
    }


def kde(draws: ArrayLike, *, points: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernel density of 1-d draws on a grid (Scott's bandwidth).

    Returns ``(x, density)``; the grid spans the draws ± 3 bandwidths. Computed in blocks
    so memory stays ``O(points × block)``.
    """
    d = np.asarray(draws, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.zeros(0), np.zeros(0)
    sd = d.std()
    bw = 1.06 * sd * d.size ** (-1 / 5) if sd > 0 else 1e-3
    x = np.linspace(d.min() - 3 * bw, d.max() + 3 * bw, points)
    dens = np.zeros(points)
    for start in range(0, d.size, 2000):
        z = (x[:, None] - d[None, start : start + 2000]) / bw
        dens += np.exp(-0.5 * z * z).sum(axis=1)
    dens /= d.size * bw * np.sqrt(2 * np.pi)
    return x, dens


def _pts(x: ArrayLike) -> np.ndarray:
    """Pass-rate differences in percentage points."""
    return np.asarray(x, dtype=np.float64) * 100.0


def delta_density(
    draws: ArrayLike,
    *,
    margin: float,
    title: str,
    interval: tuple[float, float] | None = None,
    verdict: str = "undecided",
) -> go.Figure:
    """Posterior density of Δ (in points) with the margin −δ and the 95% interval drawn.

    The area right of −δ is P(Δ > −δ), the probability the decision rule uses; it is
    shaded in the verdict's colour.
    """
    x, dens = kde(draws)
    xp = _pts(x)
    cut = -margin * 100.0
    colour = COLOURS.get(verdict, COLOURS["accent"])
    right = xp >= cut
    traces = [
        go.Scatter(
            x=xp[right],
            y=dens[right] / 100.0,
            mode="lines",
            line={"width": 0},
            fill="tozeroy",
            fillcolor="rgba(26, 127, 55, 0.15)" if verdict != "no-go" else "rgba(207,34,46,.12)",
            hoverinfo="skip",
            name="Δ > −margin",
        ),
        go.Scatter(
            x=xp,
            y=dens / 100.0,
            mode="lines",
            line={"color": colour, "width": 2},
            name="posterior density",
            hovertemplate="Δ %{x:.1f} pts<extra></extra>",
        ),
    ]
    shapes = _margin_lines(cut)
    if interval is not None:
        lo, hi = _pts(interval)
        shapes.append(
            {
                "type": "rect",
                "x0": float(lo),
                "x1": float(hi),
                "yref": "paper",
                "y0": 0,
                "y1": 0.04,
                "fillcolor": colour,
                "line": {"width": 0},
            }
        )
    annotations = [
        {
            "x": cut,
            "yref": "paper",
            "y": 1,
            "text": f"−margin ({cut:+.1f} pts)",
            "showarrow": False,
            "xanchor": "right",
            "font": {"color": COLOURS["no-go"], "size": 11},
        }
    ]
    return go.Figure(
        traces,
        _layout(
            title,
            xaxis=_axis("Δ pass rate, candidate − incumbent (percentage points)"),
            yaxis=_axis("density", showticklabels=False),
            shapes=shapes,
            annotations=annotations,
        ),
    )


def _label_margin(labels: Sequence[str]) -> int:
    return max(110, 16 + 7 * max((len(label) for label in labels), default=0))


def forest(
    labels: Sequence[str],
    mean: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    *,
    margin: float,
    title: str,
    verdicts: Sequence[str] | None = None,
) -> go.Figure:
    """Forest plot: one row per label (region), Δ mean with its 95% interval, margin drawn."""
    m, lo, hi = _pts(mean), _pts(lower), _pts(upper)
    colours = [COLOURS.get(v, COLOURS["accent"]) for v in (verdicts or ["undecided"] * len(m))]
    rows = list(labels)[::-1]  # first label on top
    trace = go.Scatter(
        x=m[::-1],
        y=rows,
        mode="markers",
        marker={"color": colours[::-1], "size": 9, "symbol": "square"},
        error_x={
            "type": "data",
            "symmetric": False,
            "array": (hi - m)[::-1],
            "arrayminus": (m - lo)[::-1],
            "thickness": 2,
            "width": 4,
            # One colour: plotly takes the marker's per-point colours for an array here,
            # which error bars do not support (it warns, then draws them black).
            "color": COLOURS["muted"],
        },
        hovertemplate="%{y}: Δ %{x:.1f} pts<extra></extra>",
    )
    cut = -margin * 100.0
    return go.Figure(
        [trace],
        _layout(
            title,
            height=max(160, 70 + 34 * len(rows)),
            # Room for the longest region name ("Middle East & North Africa"), ~7 px a
            # character at the axis font size; automargin grows it further if needed.
            margin={"l": _label_margin(rows), "r": 16, "t": 40, "b": 44},
            xaxis=_axis("Δ (percentage points), 95% interval"),
            yaxis=_axis("", type="category", automargin=True),
            shapes=_margin_lines(cut),
        ),
    )


def narrowing(
    n_labels: ArrayLike,
    mean: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    *,
    margin: float,
    title: str,
) -> go.Figure:
    """How the 95% interval of Δ narrowed as labels came in (one point per fit)."""
    n = np.asarray(n_labels, dtype=np.float64)
    m, lo, hi = _pts(mean), _pts(lower), _pts(upper)
    order = np.argsort(n, kind="stable")
    n, m, lo, hi = n[order], m[order], lo[order], hi[order]
    band = go.Scatter(
        x=np.concatenate([n, n[::-1]]),
        y=np.concatenate([hi, lo[::-1]]),
        fill="toself",
        fillcolor=COLOURS["band"],
        line={"width": 0},
        hoverinfo="skip",
        name="95% interval",
    )
    line = go.Scatter(
        x=n,
        y=m,
        mode="lines+markers",
        line={"color": COLOURS["accent"], "width": 2},
        marker={"size": 5},
        customdata=np.stack([lo, hi], axis=-1),
        hovertemplate="%{x} labels: Δ %{y:.1f} [%{customdata[0]:.1f}, %{customdata[1]:.1f}]"
        "<extra></extra>",
        name="posterior mean",
    )
    cut = -margin * 100.0
    return go.Figure(
        [band, line],
        _layout(
            title,
            xaxis=_axis("graded responses when the fit ran"),
            yaxis=_axis("Δ (points)"),
            shapes=[
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": cut,
                    "y1": cut,
                    "line": {"color": COLOURS["no-go"], "dash": "dash", "width": 2},
                }
            ],
        ),
    )


def judge_rates(
    arm_names: Sequence[str],
    pass_given_pass: ArrayLike,
    pass_given_fail: ArrayLike,
    *,
    title: str,
) -> go.Figure:
    """The judge against human grades, per arm: how often it passes what humans passed
    (sensitivity) and what humans failed (false-pass rate), each ``(arms, 3)`` as
    ``[mean, lower, upper]`` (shares)."""
    tp = np.asarray(pass_given_pass, dtype=np.float64) * 100.0
    fp = np.asarray(pass_given_fail, dtype=np.float64) * 100.0
    cats = ["passes humans passed", "passes humans failed"]
    traces = []
    colours = [COLOURS["incumbent"], COLOURS["candidate"], "#8250df", "#bc4c00"]
    for i, name in enumerate(arm_names):
        y = np.array([tp[i, 0], fp[i, 0]])
        lo = np.array([tp[i, 1], fp[i, 1]])
        hi = np.array([tp[i, 2], fp[i, 2]])
        traces.append(
            go.Bar(
                x=cats,
                y=y,
                name=name,
                marker={"color": colours[i % len(colours)]},
                error_y={"type": "data", "symmetric": False, "array": hi - y, "arrayminus": y - lo},
                hovertemplate=f"{name}: %{{y:.0f}}%<extra></extra>",
            )
        )
    return go.Figure(
        traces,
        _layout(
            title,
            barmode="group",
            showlegend=True,
            legend={"orientation": "h", "y": -0.2},
            margin={"l": 64, "r": 16, "t": 40, "b": 70},
            yaxis=_axis("% passed by the judge", range=[0, 100]),
            xaxis=_axis(""),
        ),
    )


def figure_spec(fig: go.Figure) -> str:
    """The figure and its config as JSON for ``dashboard.js`` (``<`` escaped as ``\\u003c``,
    so the string is safe inside a ``<script type="application/json">``)."""
    spec = fig.to_plotly_json()
    spec["config"] = CONFIG
    out = pio.to_json(spec, validate=False)
    return out.replace("<", "\\u003c")


def figure_html(fig: go.Figure, *, div_id: str) -> str:
    """``to_html`` fragment (div + inline newPlot script) for the offline report."""
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=CONFIG,
        validate=False,
        default_height=f"{fig.layout.height or 260}px",
    )


def _margin_lines(cut: float) -> list[dict[str, Any]]:
    """Vertical lines at −margin (dashed, the no-go side) and at Δ = 0."""

    def vline(x: float, line: dict[str, Any]) -> dict[str, Any]:
        return {"type": "line", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1, "line": line}

    return [
        vline(cut, {"color": COLOURS["no-go"], "dash": "dash", "width": 2}),
        vline(0, {"color": COLOURS["muted"], "width": 1}),
    ]
