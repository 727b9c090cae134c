r"""Inter-annotator agreement, pure numpy: Krippendorff's α and Cohen's κ.

Krippendorff's α (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability") works on
a reliability matrix of coders × units with missing values, any number of coders per unit:

.. math::

    \alpha = 1 - \frac{D_o}{D_e},\qquad
    D_o = \frac{1}{n}\sum_{c,k} o_{ck}\,\delta^2_{ck},\qquad
    D_e = \frac{1}{n(n-1)}\sum_{c,k} n_c n_k\,\delta^2_{ck},

where the coincidence matrix ``o_{ck} = Σ_u (number of c–k pairs in unit u) / (m_u − 1)``
counts only units with ``m_u ≥ 2`` values, ``n_c = Σ_k o_ck`` and ``n = Σ_c n_c``. The
difference function ``δ²`` depends on the level of measurement: nominal ``[c ≠ k]``, ordinal
``(Σ_{g=c}^{k} n_g − (n_c + n_k)/2)²``, interval ``(c − k)²``.

Cohen's κ for two raters on the items both graded: ``κ = (p_o − p_e) / (1 − p_e)`` with
``p_e`` from the two raters' marginals.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cohen_kappa", "krippendorff_alpha", "percent_agreement"]

Level = Literal["nominal", "ordinal", "interval"]


def _delta2(values: np.ndarray, n_c: np.ndarray, level: Level) -> np.ndarray:
    v = values.astype(np.float64)
    if level == "nominal":
        return (v[:, None] != v[None, :]).astype(np.float64)
    if level == "interval":
        return (v[:, None] - v[None, :]) ** 2
    if level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i = np.arange(len(v))
        lo = np.minimum(i[:, None], i[None, :])
        hi = np.maximum(i[:, None], i[None, :])
        between = cum[hi + 1] - cum[lo]  # Σ_{g=lo}^{hi} n_g
        return (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    raise ValueError(f"unknown level {level!r}")


def krippendorff_alpha(data: ArrayLike, *, level: Level = "nominal") -> float:
    """Krippendorff's α of a ``(coders, units)`` matrix; ``NaN`` marks a missing value.

    Units with fewer than two values are not pairable and are ignored. Returns ``NaN`` when
    fewer than two pairable values exist, and ``1.0`` when all pairable values are equal
    (no expected disagreement, none observed).
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError("data must be a (coders, units) matrix")
    present = ~np.isnan(x)
    m = present.sum(axis=0)
    pairable = m >= 2
    x, present, m = x[:, pairable], present[:, pairable], m[pairable]
    if m.sum() < 2:
        return float("nan")
    values = np.unique(x[present])
    idx = np.searchsorted(values, np.where(present, x, values[0]))
    # counts[u, c]: how many coders gave value c to unit u.
    counts = np.zeros((x.shape[1], len(values)))
    for coder in range(x.shape[0]):
        rows = np.flatnonzero(present[coder])
        np.add.at(counts, (rows, idx[coder, rows]), 1.0)
    w = 1.0 / (m - 1.0)
    o = (counts * w[:, None]).T @ counts
    o -= np.diag((counts * w[:, None]).sum(axis=0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    d2 = _delta2(values, n_c, level)
    d_o = float((o * d2).sum() / n)
    d_e = float((np.outer(n_c, n_c) * d2).sum() / (n * (n - 1.0)))
    if d_e == 0.0:
        return 1.0 if d_o == 0.0 else float("nan")
    return 1.0 - d_o / d_e


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's κ of two raters' labels of the same items (``NaN`` entries are dropped).

    Returns ``NaN`` with no common item, and ``1.0`` when both raters used one and the
    same category throughout (``p_e = 1``, perfect agreement).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("a and b must have the same shape")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size == 0:
        return float("nan")
    cats = np.unique(np.concatenate([x, y]))
    ix, iy = np.searchsorted(cats, x), np.searchsorted(cats, y)
    p_o = float(np.mean(ix == iy))
    pa = np.bincount(ix, minlength=len(cats)) / x.size
    pb = np.bincount(iy, minlength=len(cats)) / x.size
    p_e = float(pa @ pb)
    if p_e >= 1.0:
        return 1.0 if p_o == 1.0 else float("nan")
    return (p_o - p_e) / (1.0 - p_e)


def percent_agreement(a: ArrayLike, b: ArrayLike) -> float:
    """Share of common items on which two raters agree (``NaN`` entries dropped)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    return float(np.mean(x[keep] == y[keep])) if keep.any() else float("nan")
