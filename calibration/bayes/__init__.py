"""Pure numpy/PyMC calibration of a cheap judge against a few human grades.

Nothing in this package imports Django: it can be imported, tested and benchmarked on its
own (``tests/bayes/test_no_django.py`` guards that).

Modules
-------
data
    Binning of judge scores and aggregation of responses into per-cell counts
    (:class:`~calibration.bayes.data.CellCounts`).
model
    :func:`~calibration.bayes.model.create_calibration_model`, the PyMC model for one
    dimension (prevalence per arm and region, judge confusion per arm).
fit
    :class:`~calibration.bayes.fit.Fitter` (compiled-model cache, data swapping, nutpie
    sampling) and :class:`~calibration.bayes.fit.DimensionFit` (draws + diagnostics).
decision
    Non-inferiority summaries and verdicts from posterior draws.
simulate
    Simulated studies with known truth for tests and benchmarks.
"""

from __future__ import annotations
