"""Do once, in one thread, what the first requests of a fresh worker would otherwise race on.

gunicorn runs gthread workers (8 threads) without ``--preload``: each worker loads the app
itself, and its first requests arrive together. Some first uses are not thread-safe:

- **Lazy imports seen half done.** The report, the charts and the draws download import
  xarray (which imports pandas) on first use. Meanwhile plotly checks for pandas with
  ``sys.modules.get("pandas")``, without importing it, and so finds a module another
  thread is still executing: ``AttributeError: partially initialized module 'pandas' has
  no attribute 'Series'`` (20-24 of ~35 concurrent renders failed).
- **drf-spectacular's extensions.** Each extension resolves its target class on first
  match and writes ``None`` there when the import fails; a second thread that read the
  string a moment before calls ``None.startswith`` (2-7 of 8 first ``/api/schema/`` failed).

``warm_up`` imports those modules, draws a figure of each trace type the app uses, writes a
netCDF file with xarray's scipy engine and generates the OpenAPI schema, before the worker
accepts a request (``config/wsgi.py`` calls it after loading the app; about a second). A
step that fails is logged and skipped: a worker without warm-up still serves, as before.
Set ``BATON_WARMUP=0`` to skip it (e.g. for a management command importing the WSGI app).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)


def _imports() -> None:
    import pandas  # noqa: F401  before anyone asks sys.modules for it
    import scipy.special  # noqa: F401  dashboards.required_n
    import xarray  # noqa: F401

    import calibration.bayes.decision  # noqa: F401
    import calibration.bayes.posterior  # noqa: F401
    import calibration.report  # noqa: F401
    import calibration.selection  # noqa: F401
    import calibration.services  # noqa: F401


def _charts() -> None:
    from calibration import charts

    rng = np.random.default_rng(0)
    figures = [
        charts.delta_density(rng.normal(0, 0.02, 200), margin=0.02, title="warm-up"),
        charts.judge_rates(["a", "b"], np.full((2, 3), 0.8), np.full((2, 3), 0.2), title="warm-up"),
    ]
    for fig in figures:
        charts.figure_spec(fig)
        charts.figure_html(fig, div_id="warm-up")


def _netcdf() -> None:
    import xarray as xr

    xr.Dataset({"x": ("draw", np.zeros(2, dtype=np.float32))}).to_netcdf(engine="scipy")


def _schema() -> None:
    from drf_spectacular.generators import SchemaGenerator

    SchemaGenerator().get_schema(request=None, public=True)


STEPS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("imports", _imports),
    ("charts", _charts),
    ("netcdf", _netcdf),
    ("openapi schema", _schema),
)


def warm_up() -> dict[str, float | str]:
    """Run every step; return seconds per step (or the error of a step that failed)."""
    done: dict[str, float | str] = {}
    for name, step in STEPS:
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 — a cold worker is better than none
            logger.warning("warm-up step %s failed: %s: %s", name, type(exc).__name__, exc)
            done[name] = f"{type(exc).__name__}: {exc}"
        else:
            done[name] = round(time.perf_counter() - started, 3)
    logger.info("warm-up done: %s", done)
    return done
