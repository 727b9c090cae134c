r"""The calibration curve of one dimension, in numpy: its design, its cells, post-stratification.

The model (:mod:`calibration.bayes.model`) and everything that reads its draws (selection,
dashboards, reports) share these functions, so the formula is written once for numpy here
and once for PyTensor in the model; ``tests/bayes/test_model.py`` checks the two agree.

Notation
--------
A cell is ``(arm m, region r, k)``, ``k`` a combination of the judge bins of *every*
dimension (:class:`~calibration.bayes.data.JointCells`). For dimension ``d``, ``ℓ(k)`` is
the level of ``d``'s own bin in ``k`` (``J_d`` levels, one more for "no score"), and
``o_e(k)`` the level of every other dimension ``e``, numbered into one vector of
``L_o = Σ_{e≠d} levels_e`` entries. The calibration curve is

.. math::

    \operatorname{logit} p_{mrk} = a_m + b_{m,ℓ(k)} + g_{mr} + h_{mr,ℓ(k)}
        + \sum_{e ≠ d} o_{m, o_e(k)},

* ``a_m`` the arm's intercept, ``b_{m,ℓ} = β_m x_ℓ + u_{mℓ}`` its judge-bin effect (a trend
  ``β`` over the bin's position ``x_ℓ ∈ [-1, 1]`` plus deviations ``u`` for ``J ≥ 3``),
* ``g_{mr}`` and ``h_{mr,ℓ}`` how the curve moves by region, overall and bin by bin (the
  judge may be worse in one language),
* ``o_{m,·}`` the other dimensions' bins (a wrong answer also gets a low style score).

Every parameter carries the arm's index and no prior ties one arm's parameters to
another's: the verdict never borrows the judge's calibration from one model for another.

Post-stratification
-------------------
With ``T_{mrk}`` responses in a cell, ``n_{mrk}`` of them labelled on ``d`` and ``s_{mrk}``
of those passing, the pass rate of arm ``m`` in region ``r`` over the responses the study
holds is

.. math:: θ_{mr} = \Bigl(\sum_k s_{mrk} + \sum_k Y_{mrk}\Bigr) \big/ \sum_k T_{mrk},
    \qquad Y_{mrk} \sim \operatorname{Binomial}(T_{mrk} - n_{mrk},\ p_{mrk}):

labelled responses count exactly, only the unlabelled are predicted, with their binomial
noise (so with few responses the interval is that of the finite set, and with millions the
noise vanishes). Judge-only counts enter as the weights ``T`` only: nothing identifies
``p`` from them through a functional form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PARAMS",
    "CurveDesign",
    "curve_logit",
    "design_for",
    "expected_confusion",
    "post_stratify",
]

#: The stored parameter draws of a curve, with their shapes after the draw axis ``S``.
PARAMS = {
    "intercept": "(M,)",
    "bin_effect": "(M, L)",
    "region_effect": "(M, R)",
    "region_bin_effect": "(M, R, L)",
    "other_effect": "(M, L_o)",
}


@dataclass(frozen=True, eq=False)
class CurveDesign:
    """Where each combination ``k`` sits in dimension ``d``'s curve.

    Attributes
    ----------
    dimension
        ``d``, the index of the dimension in the study.
    own
        ``(K,)`` level of ``d``'s bin in each combination.
    own_x
        ``(L,)`` position of each level in ``[-1, 1]`` (``0`` for "no score").
    n_bins
        ``J_d``: levels ``0..J_d-1`` are bins; a level ``J_d`` (when ``L = J_d + 1``) means
        "no score".
    other
        ``(K, D - 1)`` level of each other dimension, numbered into ``0..L_o-1``.
    n_other
        ``L_o``.
    """

    dimension: int
    own: NDArray[np.int64]
    own_x: NDArray[np.float64]
    n_bins: int
    other: NDArray[np.int64]
    n_other: int

    @property
    def n_levels(self) -> int:
        return int(self.own_x.size)


def design_for(
    levels: NDArray[np.int64], n_levels: tuple[int, ...], n_bins: tuple[int, ...], d: int
) -> CurveDesign:
    """The design of dimension ``d`` from the ``(K, D)`` levels of the combinations.

    ``levels`` is :meth:`~calibration.bayes.data.JointCells.level_index`, ``n_levels`` its
    :meth:`~calibration.bayes.data.JointCells.levels`.
    """
    lev = np.asarray(levels, dtype=np.int64)
    j = int(n_bins[d])
    x = np.zeros(n_levels[d])
    x[:j] = np.linspace(-1.0, 1.0, j)
    others = [e for e in range(len(n_levels)) if e != d]
    offsets = np.cumsum([0] + [n_levels[e] for e in others])
    other = (
        np.stack([lev[:, e] + offsets[i] for i, e in enumerate(others)], axis=1)
        if others
        else np.zeros((lev.shape[0], 0), dtype=np.int64)
    )
    return CurveDesign(
        dimension=d,
        own=lev[:, d].copy(),
        own_x=x,
        n_bins=j,
        other=other.astype(np.int64),
        n_other=int(offsets[-1]),
    )


def curve_logit(
    params: dict[str, NDArray[np.floating]], design: CurveDesign
) -> NDArray[np.float64]:
    """``logit p`` of every cell for every draw: ``(S, M, R, K)``.

    ``params`` holds :data:`PARAMS` with a leading draw axis.
    """
    a = np.asarray(params["intercept"], dtype=np.float64)  # (S, M)
    b = np.asarray(params["bin_effect"], dtype=np.float64)  # (S, M, L)
    g = np.asarray(params["region_effect"], dtype=np.float64)  # (S, M, R)
    h = np.asarray(params["region_bin_effect"], dtype=np.float64)  # (S, M, R, L)
    o = np.asarray(params["other_effect"], dtype=np.float64)  # (S, M, L_o)
    eta = a[:, :, None, None] + g[:, :, :, None] + h[:, :, :, design.own]
    eta += b[:, :, None, design.own]
    if design.other.shape[1]:
        eta += o[:, :, design.other].sum(axis=-1)[:, :, None, :]
    return eta


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def post_stratify(
    p: NDArray[np.float64],
    *,
    totals: NDArray[np.int64],
    labelled: NDArray[np.int64],
    passes: NDArray[np.int64],
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """``θ`` draws ``(S, M, R)`` from the curve ``p`` ``(S, M, R, K)`` (module docstring).

    An ``(arm, region)`` without responses gets the pass rate the arm's curve gives its
    own mix of cells over all regions, shifted to that region.
    """
    t = np.asarray(totals, dtype=np.int64)
    unl = t - np.asarray(labelled, dtype=np.int64)
    predicted = rng.binomial(np.broadcast_to(unl, p.shape), np.clip(p, 0.0, 1.0))
    n = t.sum(axis=-1).astype(np.float64)  # (M, R)
    known = np.asarray(passes, dtype=np.float64).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = (known[None] + predicted.sum(axis=-1)) / n[None]
    empty = n <= 0
    if empty.any():
        mix = t.sum(axis=1).astype(np.float64)  # (M, K) the arm's cells over all regions
        mix /= np.clip(mix.sum(axis=-1, keepdims=True), 1.0, None)
        fallback = np.einsum("smrk,mk->smr", p, mix)
        theta = np.where(empty[None], fallback, theta)
    return np.asarray(theta, dtype=np.float64)


def expected_confusion(
    p: NDArray[np.float64],
    design: CurveDesign,
    *,
    totals: NDArray[np.int64],
    labelled: NDArray[np.int64],
    passes: NDArray[np.int64],
) -> NDArray[np.float64]:
    r"""``P(judge bin j | human class y, arm m)`` per draw, ``(S, M, 2, J)``.

    Read off the post-stratified expected counts of each class in each cell,
    ``E[\#pass] = s + (T - n) p`` and ``E[\#fail] = (n - s) + (T - n)(1 - p)``, summed over
    the regions and the cells whose own bin is ``j`` (responses without a score on the
    dimension are left out). What dashboards show as the judge's sensitivity and
    specificity per model; the verdict never uses it.
    """
    t = np.asarray(totals, dtype=np.float64)
    n = np.asarray(labelled, dtype=np.float64)
    s = np.asarray(passes, dtype=np.float64)
    unl = t - n
    e_pass = s[None] + unl[None] * p  # (S, M, R, K)
    e_fail = (n - s)[None] + unl[None] * (1.0 - p)
    j = design.n_bins
    onehot = np.zeros((design.own.size, j))
    scored = design.own < j
    onehot[np.flatnonzero(scored), design.own[scored]] = 1.0
    by_bin = np.stack([e_fail.sum(axis=2) @ onehot, e_pass.sum(axis=2) @ onehot], axis=2)
    total = by_bin.sum(axis=-1, keepdims=True)
    out = np.full_like(by_bin, 1.0 / j)
    np.divide(by_bin, total, out=out, where=total > 0)
    return out


def pass_probability(
    params: dict[str, NDArray[np.floating]], design: CurveDesign
) -> NDArray[np.float64]:
    """``p`` ``(S, M, R, K)``: the curve itself."""
    return _sigmoid(curve_logit(params, design))


#: The judge "treats the models differently" only when the 95% interval of the difference
#: lies wholly above this (5 points of the judge's pass rate among the responses of one
#: human class).
JUDGE_BAND = 0.05


def judge_pass_difference(
    confusion: NDArray[np.floating], *, candidate: int, incumbent: int = 0
) -> NDArray[np.float64]:
    r"""Draws of ``|P(j ≥ cut | y, c) − P(j ≥ cut | y, inc)|`` for ``y`` = fail, pass: ``(S, 2)``.

    How much more (or less) often the judge passes one model's failures (``y = 0``, one
    minus the specificity) and passes (``y = 1``, the sensitivity) than the other's, at the
    judge's pass cut ``J // 2`` (the cut the pages and the naive Δ use). For a binary judge
    this is the total variation between the two models' bin distributions. For more bins it
    is not: the total variation sums an absolute difference per bin, so with a few dozen
    failures per model its posterior sits well above zero when the judge is the same for
    both (mean 0.18 over five bins in ``bench/adversarial.py``'s ``binned_5M``), and a claim
    built on it would be a false alarm.
    """
    conf = np.asarray(confusion, dtype=np.float64)
    cut = conf.shape[-1] // 2
    passed = conf[..., cut:].sum(axis=-1)  # (S, M, 2)
    return np.abs(passed[:, candidate] - passed[:, incumbent])


def judge_difference(
    confusion: NDArray[np.floating],
    *,
    candidate: int,
    incumbent: int = 0,
    band: float = JUDGE_BAND,
) -> dict[str, object]:
    r"""How differently the judge treats two models, with an interval.

    For each human class ``y``, the difference in the judge's pass rate at its pass cut
    between the two models (:func:`judge_pass_difference`; for a binary judge the
    difference in specificity (``y = 0``) or sensitivity (``y = 1``)), from post-stratified
    draws (:func:`expected_confusion`), which the calibration curve gives per arm without
    pooling. ``differs`` is true when the 95% interval of either lies wholly above ``band``
    (:data:`JUDGE_BAND`).
    """
    diff = judge_pass_difference(confusion, candidate=candidate, incumbent=incumbent)
    lo, hi = np.quantile(diff, [0.025, 0.975], axis=0)
    mean = diff.mean(axis=0)
    out: dict[str, object] = {}
    for y, name in ((0, "fail"), (1, "pass")):
        out[name] = {"mean": float(mean[y]), "lower": float(lo[y]), "upper": float(hi[y])}
    out["differs"] = bool((lo > band).any())
    return out
