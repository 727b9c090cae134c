"""Exports of a fit: the self-contained HTML report and the posterior draws as netCDF.

The report is one HTML file a lead can mail or archive: plotly.js is embedded inline once
(gzipped, inflated by the browser: the file stays under 2 MB),
each chart is a ``to_html`` fragment, styles are inline, and nothing is fetched from
anywhere (checked by a test that opens it with every network request blocked).
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from typing import Any

import numpy as np
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from annotate.models import Study
from calibration import charts, dashboards
from calibration.models import Fit

__all__ = ["build_report", "draws_dataset", "draws_netcdf", "pair_figures"]


def pair_figures(data: dict[str, Any]) -> dict[str, dict[str, tuple[Any, str]]]:
    """Figures of one pair (``dashboards.pair_data``) by dimension: name → (figure, label)."""
    out: dict[str, dict[str, tuple[Any, str]]] = {}
    cand, inc = data["candidate"], data["incumbent"]
    for dim in data["dimensions"]:
        title = dim["title"]
        figs: dict[str, tuple[Any, str]] = {
            "density": (
                charts.delta_density(
                    dim["delta_draws"],
                    margin=dim["margin"],
                    title=f"{title}: posterior of Δ",
                    interval=(dim["lower"], dim["upper"]),
                    verdict=dim["verdict"],
                ),
                f"Posterior density of the pass-rate difference on {title}, "
                f"{cand} minus {inc}, with the margin drawn.",
            ),
            "forest": (
                charts.forest(
                    [r["name"] for r in dim["regions"]],
                    [r["mean"] for r in dim["regions"]],
                    [r["lower"] for r in dim["regions"]],
                    [r["upper"] for r in dim["regions"]],
                    margin=dim["margin"],
                    title=f"{title}: Δ per region",
                    verdicts=[r["verdict"] for r in dim["regions"]],
                ),
                f"Δ per region on {title} with 95% intervals.",
            ),
        }
        h = dim["history"]
        if len(h["n"]) >= 2:
            figs["history"] = (
                charts.narrowing(
                    h["n"],
                    h["mean"],
                    h["lower"],
                    h["upper"],
                    margin=dim["margin"],
                    title=f"{title}: the interval as labels came in",
                ),
                f"Δ on {title} and its 95% interval at each fit, against labels.",
            )
        j = dim["judge"]
        figs["judge"] = (
            charts.judge_rates(
                j["arms"], j["pass_given_pass"], j["pass_given_fail"], title=f"{title}: the judge"
            ),
            f"How often the judge passes what humans passed and failed, per model, on {title}.",
        )
        out[dim["key"]] = figs
    return out


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


#: 85 printable characters without < > & " ' \\ (nothing that could end or confuse a <script>).
B85_ALPHABET = "".join(c for c in map(chr, range(33, 127)) if c not in "<>&\"'\\`")[:85]


def b85encode(data: bytes) -> tuple[str, int]:
    """Base 85 over :data:`B85_ALPHABET` (4 bytes to 5 characters, most significant first),
    with the number of zero bytes padded at the end."""
    pad = -len(data) % 4
    words = np.frombuffer(data + b"\0" * pad, dtype=">u4").astype(np.uint64)
    digits = np.stack([(words // 85**k) % 85 for k in range(4, -1, -1)], axis=1).ravel()
    table = np.frombuffer(B85_ALPHABET.encode("ascii"), dtype=np.uint8)
    return table[digits].tobytes().decode("ascii"), pad


def b85decode(text: str, pad: int) -> bytes:
    """The inverse of :func:`b85encode` (what the report's loader does in the browser)."""
    index = np.zeros(128, dtype=np.uint64)
    index[np.frombuffer(B85_ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(85)
    digits = index[np.frombuffer(text.encode("ascii"), dtype=np.uint8)].reshape(-1, 5)
    words = np.zeros(len(digits), dtype=np.uint64)
    for k in range(5):
        words = words * 85 + digits[:, k]
    out = words.astype(">u4").tobytes()
    return out[: len(out) - pad]


@lru_cache(maxsize=1)
def plotly_js_packed() -> tuple[str, int]:
    """plotly.js gzipped, then in base 85: 1.8 MB instead of 4.8 MB, which keeps the report
    under 2 MB (base64 would make it 2.0). The page inflates it with the browser's own
    DecompressionStream, so it still opens offline, from a file, with nothing fetched."""
    return b85encode(gzip.compress(_plotly_js().encode(), compresslevel=9, mtime=0))


# Runs before the charts: Plotly.newPlot calls are queued until plotly.js is inflated,
# then replayed.
_PLOTLY_LOADER = """\
(function () {
  "use strict";
  var queued = [];
  window.Plotly = { newPlot: function () { queued.push(arguments); return Promise.resolve(); } };
  var el = document.getElementById("plotly-js-gzip");
  var alphabet = el.getAttribute("data-alphabet"), pad = Number(el.getAttribute("data-pad"));
  var index = new Uint8Array(128);
  for (var a = 0; a < alphabet.length; a++) index[alphabet.charCodeAt(a)] = a;
  var text = el.textContent.replace(/\\s+/g, "");
  var n = text.length / 5, bytes = new Uint8Array(n * 4);
  for (var i = 0, j = 0; i < n; i++) {
    var v = 0;
    for (var k = 0; k < 5; k++) v = v * 85 + index[text.charCodeAt(j++)];
    bytes[4 * i] = (v / 16777216) & 255;
    bytes[4 * i + 1] = (v >>> 16) & 255;
    bytes[4 * i + 2] = (v >>> 8) & 255;
    bytes[4 * i + 3] = v & 255;
  }
  var stream = new Blob([bytes.subarray(0, bytes.length - pad)]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  new Response(stream).text().then(function (source) {
    var script = document.createElement("script");
    script.textContent = source;
    document.head.appendChild(script);
    queued.forEach(function (args) { window.Plotly.newPlot.apply(window.Plotly, args); });
  });
})();
"""


def build_report(*, study: Study, fit: Fit, generated_by: Any = None) -> str:
    """The report as one self-contained HTML string."""
    candidates = []
    for row in dashboards.decision_matrix(fit)["rows"]:
        data = dashboards.pair_data(study, fit, row["arm"])
        if data is None:
            continue
        figures = pair_figures(data)
        for dim in data["dimensions"]:
            dim["charts"] = [
                {
                    "label": label,
                    "html": mark_safe(
                        charts.figure_html(fig, div_id=f"r-{dim['key']}-{row['arm']}-{name}")
                    ),
                }
                for name, (fig, label) in figures[dim["key"]].items()
            ]
            del dim["delta_draws"]
        candidates.append(data)
    health = dashboards.fit_health(
        fit, {d["key"]: d["title"] for d in fit.summary.get("dimensions", [])}
    )
    context = {
        "study": study,
        "fit": fit,
        "matrix": dashboards.decision_matrix(fit),
        "health": health,
        "advice": dashboards.fit_advice(fit, health),
        "progress": dashboards.label_progress(study),
        "candidates": candidates,
        # Every change of the plan after grading started (calibration.replans).
        "replans": list(study.replans.order_by("number")),
        "bins": json.dumps(fit.bins, indent=1, sort_keys=True),
        "generated_at": timezone.now(),
        "generated_by": getattr(generated_by, "username", ""),
        "plotly_js_gzip": plotly_js_packed()[0],
        "plotly_js_pad": plotly_js_packed()[1],
        "b85_alphabet": B85_ALPHABET,
        "plotly_loader": mark_safe(_PLOTLY_LOADER),
        "css": mark_safe(_REPORT_CSS),
    }
    return render_to_string("calibration/report.html", context)


_REPORT_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;
max-width:1100px;margin:0 auto;padding:1.5rem;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:top}
.muted{color:#57606a}.verdict-go{color:#1a7f37;font-weight:700}
.verdict-no-go{color:#cf222e;font-weight:700}.verdict-undecided{color:#9a6700;font-weight:700}
.cell-go{background:#dafbe1}.cell-no-go{background:#ffebe9}.cell-undecided{background:#fff8c5}
.recommendation{padding:.4rem 1rem;border-radius:8px;border:2px solid #d0d7de;border-left-width:8px}
.rec-label{font-size:.8rem;text-transform:uppercase;color:#57606a;margin:.2rem 0}
.rec-text{font-size:1.1rem;font-weight:600;margin:.2rem 0}
.rec-go{border-color:#1a7f37}.rec-no-go{border-color:#cf222e}.rec-undecided{border-color:#9a6700}
.cell .verdict,.cell .delta,.cell .prob{display:block}caption{text-align:left;color:#57606a}
.warn{border:2px solid #cf222e;background:#ffebe9;padding:.6rem .9rem;border-radius:8px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:.8rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
pre{background:#f6f8fa;padding:.6rem;overflow:auto}
"""


# ---------------------------------------------------------------------------------------
# Posterior draws as netCDF


def draws_dataset(*, study: Study, fit: Fit) -> Any:
    """An ``xarray.Dataset`` of the fit's stored draws.

    Per dimension ``d``: ``theta_<d>`` with dims ``(draw, arm, region)`` (P(pass)) and
    ``confusion_<d>`` with dims ``(draw, arm, y, bin_<d>)`` (P(judge bin | human class);
    ``y`` is fail/pass). Judge bins differ between dimensions, hence one bin dimension per
    dimension; their cut points are in the attribute ``bins`` (JSON) with the other
    reproducibility attributes: seed, counts hash, model version, fit id.
    """
    import xarray as xr

    from calibration import services

    draws = services.load_draws(fit)
    variables: dict[str, Any] = {}
    coords: dict[str, Any] = {"y": ["fail", "pass"]}
    for key, df in draws.items():
        name = key.replace("-", "_")
        coords.setdefault("arm", list(df.arms))
        coords.setdefault("region", list(df.regions))
        coords[f"bin_{name}"] = np.arange(df.n_bins)
        coords.setdefault("draw", np.arange(df.n_draws))
        variables[f"theta_{name}"] = xr.DataArray(
            np.asarray(df.theta, dtype=np.float32),
            dims=("draw", "arm", "region"),
            attrs={"long_name": f"P(pass) on {key}", "dimension": key},
        )
        variables[f"confusion_{name}"] = xr.DataArray(
            np.asarray(df.confusion, dtype=np.float32),
            dims=("draw", "arm", "y", f"bin_{name}"),
            attrs={"long_name": f"P(judge bin | human class) on {key}", "dimension": key},
        )
    regions = {g["key"]: g["traffic_share"] for g in fit.summary.get("regions", [])}
    ds = xr.Dataset(variables, coords=coords)
    ds["traffic_share"] = xr.DataArray(
        np.array([regions.get(r, np.nan) for r in coords.get("region", [])], dtype=np.float64),
        dims=("region",),
    )
    ds.attrs = {
        "title": f"Baton posterior draws: {study.name}",
        "study": study.slug,
        "fit_id": int(fit.pk),
        "seed": int(fit.seed),
        "counts_hash": fit.counts_hash,
        "model_version": fit.model_version,
        "bins": json.dumps(fit.bins, sort_keys=True),
        "n_labels": int(fit.n_labels),
        "n_responses": int(fit.n_responses),
        "incumbent": fit.summary.get("incumbent", {}).get("arm", ""),
        "confidence": float(fit.summary.get("confidence", study.confidence)),
        "margins": json.dumps({d["key"]: d["margin"] for d in fit.summary.get("dimensions", [])}),
        "finished_at": fit.finished_at.isoformat() if fit.finished_at else "",
        "trustworthy": int(fit.trustworthy),
    }
    return ds


def draws_netcdf(*, study: Study, fit: Fit) -> bytes:
    """:func:`draws_dataset` as netCDF-3 bytes (scipy's writer: no netCDF4/HDF5 needed)."""
    return bytes(draws_dataset(study=study, fit=fit).to_netcdf(engine="scipy"))
