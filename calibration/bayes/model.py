r"""The calibration model of one dimension: a calibration curve per arm, post-stratified.

What the model must survive (DESIGN.md) decides its form. The judge is the thing we do not
trust, so nothing here assumes that it treats the arms alike, the regions alike, or that
one dimension's judge bin says nothing about another's human grade:

* **arms unpooled**: every parameter carries the arm's index, with no shared hyper-prior;
  a judge that flatters the candidate is calibrated on the candidate's labels alone;
* **regions learnt**: the curve moves by region, overall and bin by bin, with scales learnt
  per arm (a judge near chance in one language is found where labels exist there);
* **the whole selection cell**: the curve of dimension ``d`` is a function of the arm, the
  region and the bins of *every* dimension, exactly what selection conditions on, so the
  labels it picks are missing at random for each dimension's model;
* **no functional-form identification**: only labelled responses enter the likelihood;
  judge-only counts are post-stratification weights (:mod:`calibration.bayes.curve`), so
  binned and continuous judges at millions of responses need nothing special, and the cost
  of a fit does not grow with the number of responses.

The curve (notation of :mod:`calibration.bayes.curve`):

.. math::

    \operatorname{logit} p_{mrk} &= a_m + β_m x_{ℓ(k)} + u_{m,ℓ(k)} + g_{mr} + h_{mr,ℓ(k)}
        + \sum_{e≠d} o_{m,o_e(k)} \\
    a_m &\sim N(0, 2^2), \quad β_m \sim N(0, 2^2) \\
    u_{mℓ} &= τ^u_m z, \quad g_{mr} = τ^g_m z, \quad h_{mrℓ} = τ^h_m z,
        \quad o_{mq} = τ^o_m z, \qquad z \sim N(0, 1),\ τ \sim N^+(0, 1) \\
    s_{mrk} &\sim \operatorname{Binomial}(n_{mrk}, p_{mrk})
        \quad\text{(labelled responses of the cell, on dimension } d\text{)}

Terms drop out where they cannot exist: ``u`` needs ``J ≥ 3`` (two bins are a trend), ``g``
and ``h`` two regions, ``o`` another dimension. All effects are non-centred: the labels are
few and the hierarchy is informed only by them, the regime where non-centred coordinates
mix well.

``θ`` (per arm and region, the pass rate of the study's responses) is *not* a parameter:
it is post-stratified from the curve's draws after sampling
(:func:`calibration.bayes.curve.post_stratify`), and so is the judge's confusion shown on
dashboards (:func:`calibration.bayes.curve.expected_confusion`).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from calibration.bayes.curve import PARAMS, CurveDesign
from calibration.bayes.data import JointCells

# The version string lives in the light module (reading draws needs no PyMC); bump it there.
from calibration.bayes.posterior import MODEL_VERSION

__all__ = ["MODEL_VERSION", "create_calibration_model", "model_key"]

#: Prior sd of the intercept and of the judge trend (logit scale): wide, so that a few
#: labels decide how informative the judge is.
EFFECT_SD = 2.0
#: Half-normal scale of the learnt deviation scales τ.
SCALE_SD = 1.0


def model_key(cells: JointCells, design: CurveDesign) -> tuple[int, ...]:
    """What a compiled model depends on: the shapes and which terms exist."""
    m, r, k = cells.shape
    return (m, r, k, design.n_levels, design.n_bins, design.n_other, design.other.shape[1])


def create_calibration_model(cells: JointCells, design: CurveDesign) -> pm.Model:
    """Build the PyMC model of dimension ``design.dimension`` of ``cells``.

    Returns
    -------
    pymc.Model
        With ``pm.Data`` containers ``labelled`` and ``passes`` ``(M, R, K)``, ``own``
        ``(K,)`` and ``other`` ``(K, D-1)`` (swap them with nutpie's ``with_data`` without
        recompiling, for any study of the same :func:`model_key`) and the deterministics of
        :data:`calibration.bayes.curve.PARAMS`.
    """
    m, r, k = cells.shape
    d = design.dimension
    n_lev, n_oth = design.n_levels, design.n_other
    coords = {
        "arm": list(cells.arms),
        "region": list(cells.regions),
        "level": list(range(n_lev)),
        "other_level": list(range(n_oth)),
    }
    with pm.Model(coords=coords) as model:
        labelled = pm.Data("labelled", cells.labelled[d])
        passes = pm.Data("passes", cells.passes[d])
        own = pm.Data("own", design.own)
        # Only a model with other dimensions has their levels (an unused pm.Data is not
        # part of the compiled graph, and nutpie refuses to swap it).
        other = pm.Data("other", design.other) if design.other.shape[1] else None
        x = pt.as_tensor_variable(design.own_x)

        a = pm.Normal("intercept", 0.0, EFFECT_SD, dims="arm")
        beta = pm.Normal("slope", 0.0, EFFECT_SD, dims="arm")
        bin_effect = beta[:, None] * x[None, :]
        if design.n_bins >= 3:
            tau_u = pm.HalfNormal("tau_bin", SCALE_SD, dims="arm")
            z_u = pm.Normal("z_bin", 0.0, 1.0, dims=("arm", "level"))
            bin_effect = bin_effect + tau_u[:, None] * z_u
        bin_effect = pm.Deterministic("bin_effect", bin_effect, dims=("arm", "level"))

        if r >= 2:
            tau_g = pm.HalfNormal("tau_region", SCALE_SD, dims="arm")
            tau_h = pm.HalfNormal("tau_region_bin", SCALE_SD, dims="arm")
            z_g = pm.Normal("z_region", 0.0, 1.0, dims=("arm", "region"))
            z_h = pm.Normal("z_region_bin", 0.0, 1.0, dims=("arm", "region", "level"))
            region_effect = tau_g[:, None] * z_g
            region_bin = tau_h[:, None, None] * z_h
        else:
            region_effect = pt.zeros((m, r))
            region_bin = pt.zeros((m, r, n_lev))
        region_effect = pm.Deterministic("region_effect", region_effect, dims=("arm", "region"))
        region_bin = pm.Deterministic(
            "region_bin_effect", region_bin, dims=("arm", "region", "level")
        )

        if n_oth:
            tau_o = pm.HalfNormal("tau_other", SCALE_SD, dims="arm")
            z_o = pm.Normal("z_other", 0.0, 1.0, dims=("arm", "other_level"))
            other_effect = tau_o[:, None] * z_o
        else:
            other_effect = pt.zeros((m, 0))
        other_effect = pm.Deterministic("other_effect", other_effect, dims=("arm", "other_level"))

        eta = a[:, None, None] + region_effect[:, :, None] + region_bin[:, :, own]
        eta = eta + bin_effect[:, None, own]
        if other is not None:
            eta = eta + other_effect[:, other].sum(axis=-1)[:, None, :]
        pm.Binomial("passes_obs", n=labelled, logit_p=eta, observed=passes)
    return model


def numpy_params(posterior: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`~calibration.bayes.curve.PARAMS` of a ``(chain, draw, ...)`` posterior,
    chains concatenated."""
    out = {}
    for name in PARAMS:
        arr = np.asarray(posterior[name])
        out[name] = arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])
    return out
