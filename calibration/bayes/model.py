r"""The calibration model for one dimension of one study.

Notation (one dimension; arms ``m = 0..M-1`` with 0 the incumbent, regions ``r``, judge bins
``j = 0..J-1``, true class ``y ∈ {0 fail, 1 pass}``):

.. math::

    \operatorname{logit}\theta_{mr} &= \mu_m + \sigma z_{mr}, \qquad
        \mu_m \sim N(0, 1.5^2),\ \sigma \sim N^+(0, 1),\ z_{mr} \sim N(0, 1) \\
    \pi_{m y j} &= P(j \mid y, m) \quad\text{(judge confusion, one per arm)} \\
    c_{mr\cdot} &\sim \operatorname{Multinomial}\bigl(n_{mr},\
        (1-\theta_{mr})\pi_{m0\cdot} + \theta_{mr}\pi_{m1\cdot}\bigr)
        \quad\text{(judge-only counts)} \\
    h_{mr\cdot\cdot} &\sim \operatorname{Multinomial}\bigl(k_{mr},\
        [(1-\theta_{mr})\pi_{m0j},\ \theta_{mr}\pi_{m1j}]_{y,j}\bigr)
        \quad\text{(human-labelled counts over the 2J joint cells)}

The likelihood is on counts, so its cost does not depend on the number of responses.

Binary judge (J = 2), reparameterised
-------------------------------------
Write ``f_m = P(j=1 | y=0)`` (false-positive rate) and ``t_m = P(j=1 | y=1)``
(sensitivity). The judge is better than chance, ``t_m > f_m``. The prior (what the model
*means*) is

.. math::

    A_m = \operatorname{logit} f_m \sim N(a_0, s_a^2), \qquad
    G_m = \operatorname{logit}\frac{t_m - f_m}{1 - f_m} \sim N(g_0, s_g^2),

i.e. ``t = f + (1-f)·sigmoid(G)``, partially pooled across arms around the dimension-level
``(a_0, g_0)`` with ``a_0 ~ N(-1.5, 1.5²)``, ``g_0 ~ N(1.5, 1.5²)``,
``s_a = s_g = ARM_POOLING_SD = 0.5``. Arms are never forced to share one confusion matrix.
The pooling scales are fixed rather than learnt: with two to a handful of arms the data say
almost nothing about them, and a half-normal hyper-prior on them made a funnel that gave
~100 divergences per fit (measured, 3 arms × 6 regions, 300 labels per arm). A scale of
0.5 on the logit scale lets an arm's sensitivity move by about ±0.1 around 0.85 before the
prior pushes back, while 300 labels per arm still dominate it.

With many judge-only responses the judge-positive rate ``q_{mr} = f_m + θ_{mr}(t_m - f_m)``
is pinned by the data while ``(θ, f, t)`` can slide along a thin curved ridge, and NUTS in
the ``(z, A, G)`` coordinates mixes badly (DESIGN.md: ESS 8 at 12M items). So we *sample*
in coordinates where the data-pinned direction is a coordinate axis:

.. math::

    \lambda_{mr} = \operatorname{logit} q_{mr},\qquad
    f_m = \min_r q_{mr}\cdot\operatorname{sigmoid}(\alpha_m),\qquad
    t_m = \max_r q_{mr} + (1 - \max_r q_{mr})\operatorname{sigmoid}(\beta_m),\qquad
    \theta_{mr} = \frac{q_{mr} - f_m}{t_m - f_m}.

This maps ``(λ, α, β) ∈ ℝ^{R+2}`` one-to-one onto the whole original support
``{θ ∈ (0,1)^R, 0 < f < t < 1}`` (so it is the *same* model, not an approximation), and the
judge-only likelihood depends on ``λ`` alone. The prior density is carried over with the
log-Jacobian of ``(λ, α, β) ↦ (L = logit θ, A, G)``, added as a ``pm.Potential``. The map
is block-triangular in three steps, giving

.. math::

    \log|J| = \sum_r \log q_r(1-q_r) + \log\frac{\partial f}{\partial\alpha}
        + \log\frac{\partial t}{\partial\beta} - R\log(t-f)
        - \sum_r\log\theta_r(1-\theta_r) - \log f(1-f) - \log v(1-v)(1-f),

with ``v = (t-f)/(1-f)``, ``∂f/∂α = min q·s(α)s(-α)`` and
``∂t/∂β = (1-max q)·s(β)s(-β)``. The region effects are therefore in the centred form
``L_{mr} ~ N(μ_m, σ²)``, which is the right form when the cells are informed by judge-only
data. With a single region the hierarchy is dropped (``L ~ N(0, 1.5²)``): one member per
arm cannot inform ``σ`` and the centred form is then a funnel. ``min``/``max`` make the
density only piecewise smooth where two regions swap rank; no divergences were seen with
6 regions (``bench/bayes_coverage.py``, ``bench/bayes_fit_time.py``).

Which coordinates, by the size of the cells
-------------------------------------------
The coordinates above suit cells that hold many judge-only responses, where each cell's
judge-positive rate is pinned and the region effects are well informed (the centred form).
With few responses per cell the region effects are weakly informed against their scale σ,
and the centred form couples σ with each arm's sensitivity (lowering ``t`` spreads the
``θ`` of the arm's regions): the sampler then mixed badly. Measured on one simulated
refusal dimension (pass rate ≈ 0.88, 3 arms × 6 regions, 10k responses, so ~550 per cell,
300 labels per arm): 20 of 20 seeds failed the diagnostics (bulk ESS 36–180, σ's the
lowest, 15–65 s of sampling). So below :data:`NONCENTRED_BELOW` judge-only responses in
the median cell the binary model samples in the plain non-centred coordinates of its prior,
``z``, ``A``, ``G`` (``logit θ = μ + σz``): the same model, other coordinates. On the same
dimension: min bulk ESS 1004–1177 in 1.4–1.6 s at 10k (3 seeds); the two were alike at 30k
(non-centred 1118–1354, judge-rate 1429–1854); at 100k the judge-rate coordinates were
faster (1.3 s against 2.2 s). The judge-rate coordinates are what makes millions of
responses mix (DESIGN.md: ESS 8 at 12M in the plain ones).

Binned judge (J > 2)
--------------------
Ordered logit: ``P(j ≤ k | y, m) = sigmoid(κ_{mk} - y·δ_m)`` with ``δ_m > 0``: the pass row
is the fail row shifted towards higher bins (monotone likelihood ratio), so the judge is
better than chance and the rows are stochastically ordered, with ``J`` parameters per arm.
Cut points ``κ_m ~ N(κ_0, s²)`` (ordered) around ordered dimension-level cut points
``κ_0 ~ N(0, 2²)``; ``log δ_m ~ N(d_0, s²)``, ``d_0 ~ N(0.5, 1)``; ``s = ARM_POOLING_SD``,
fixed as in the binary model (the earlier learnt half-normal scales made funnels: 31–204
divergences per fit). Prevalence is centred, ``logit θ_{mr} ~ N(μ_m, σ²)``: every cell is
informed by its judge-only counts, where the non-centred form mixed badly.

Identification, and what it means at large counts: with ``R`` regions the judge-only bin
profiles of an arm pin ``2(J-2) + R`` numbers (the line in the simplex on which the cells'
profiles lie, and each cell's place on it). The ordered logit has ``J + R`` parameters per
arm, so for ``J = 3`` one direction is left to the labels and the prior (a thin ridge at
millions of responses, like the binary model's), and for ``J ≥ 4`` the functional form
identifies θ from judge-only data alone. Sampling uses nutpie's low-rank mass-matrix
adaptation (:func:`calibration.bayes.fit.adaptation_for`). At millions of responses the
chains of both ``J = 3`` and ``J = 5`` agree (R-hat ≤ 1.022, at most 1 divergence) but
mix slowly: 2 × 2000 draws gave a min bulk ESS of 219–494 for ``J = 3`` and 233–1013 for
``J = 5``, so most ``J = 3`` fits and about half the ``J = 5`` fits fell short of
``ESS_MIN``. ``Fitter.fit`` then samples extra chains of the same compiled model (its
"ESS top-up", never beyond 3× the draws, and never when R-hat or divergences fail),
which took the share of fits that pass from 4/30 to 21/30 (``J = 3``) and from 17/30 to
28/30 (``J = 5``), for about twice the sampling time of the fits it tops up
(``bench/bayes_ordinal.py --studies 30 --sizes 5000000``; its committed JSON, 10 studies
per size, has the first 10 of these: 2/10 → 7/10 and 8/10 → 10/10). The rest fail on
R-hat 1.010–1.020 with enough ESS, which more chains of the same length do not fix.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from calibration.bayes.data import CellCounts

# The version string lives in the light module (reading draws needs no PyMC); bump it there.
from calibration.bayes.posterior import MODEL_VERSION

__all__ = [
    "MODEL_VERSION",
    "NONCENTRED_BELOW",
    "binary_coordinates",
    "create_calibration_model",
    "model_key",
]

#: Prior sd (logit scale) of each arm's judge parameters around the dimension-level mean.
ARM_POOLING_SD = 0.5

#: Below this many judge-only responses in the median (arm, region) cell, the binary model
#: samples in non-centred coordinates (module docstring, "Which coordinates").
NONCENTRED_BELOW = 2000


def binary_coordinates(counts: CellCounts) -> str:
    """``"noncentred"`` or ``"judge_rate"``: the sampling coordinates of a binary model."""
    per_cell = np.asarray(counts.judge_only).sum(axis=-1)
    return "noncentred" if float(np.median(per_cell)) < NONCENTRED_BELOW else "judge_rate"


def model_key(counts: CellCounts) -> tuple[int, int, int, str]:
    """What a compiled model depends on: the shape ``(M, R, J)`` and the coordinates."""
    m, r, j = counts.shape
    return m, r, j, binary_coordinates(counts) if j == 2 else "ordinal"


def _coords(counts: CellCounts) -> dict[str, list[str] | list[int]]:
    return {
        "arm": list(counts.arms),
        "region": list(counts.regions),
        "y": [0, 1],
        "bin": list(range(counts.n_bins)),
    }


def _log_sigmoid(x: pt.TensorVariable) -> pt.TensorVariable:
    return -pt.softplus(-x)


def _count_data(counts: CellCounts) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """The two count tables as swappable ``pm.Data`` (inside the model's context)."""
    judge_only = pm.Data("judge_only", counts.judge_only, dims=("arm", "region", "bin"))
    labelled = pm.Data("labelled", counts.labelled, dims=("arm", "region", "y", "bin"))
    return judge_only, labelled


def _binary_judge(fpr: pt.TensorVariable, tpr: pt.TensorVariable) -> pt.TensorVariable:
    """Sensitivity, specificity and the ``(arm, y, bin)`` confusion of a binary judge."""
    pm.Deterministic("sensitivity", tpr, dims="arm")
    pm.Deterministic("specificity", 1.0 - fpr, dims="arm")
    return pm.Deterministic(
        "confusion",
        pt.stack(
            [pt.stack([1.0 - fpr, fpr], axis=-1), pt.stack([1.0 - tpr, tpr], axis=-1)], axis=1
        ),
        dims=("arm", "y", "bin"),
    )


def _likelihood(
    theta: pt.TensorVariable,
    confusion: pt.TensorVariable,
    judge_only: pt.TensorVariable,
    labelled: pt.TensorVariable,
    *,
    m: int,
    r: int,
    j: int,
) -> None:
    """Multinomial likelihoods of both count tables (shared by both parameterisations)."""
    th = theta[:, :, None]  # (M, R, 1)
    pi0 = confusion[:, None, 0, :]  # (M, 1, J)
    pi1 = confusion[:, None, 1, :]
    p_judge = (1.0 - th) * pi0 + th * pi1  # (M, R, J)
    pm.Multinomial(
        "judge_only_obs",
        n=judge_only.sum(axis=-1),
        p=p_judge,
        observed=judge_only,
        dims=("arm", "region", "bin"),
    )
    p_joint = pt.stack([(1.0 - th) * pi0, th * pi1], axis=2).reshape((m, r, 2 * j))
    pm.Multinomial(
        "labelled_obs",
        n=labelled.sum(axis=(-2, -1)),
        p=p_joint,
        observed=labelled.reshape((m, r, 2 * j)),
    )


def _binary_model(counts: CellCounts) -> pm.Model:
    m, r, j = counts.shape
    with pm.Model(coords=_coords(counts)) as model:
        judge_only, labelled = _count_data(counts)

        # Hyper-priors (ordinary random variables).
        if r > 1:
            mu = pm.Normal("mu", 0.0, 1.5, dims="arm")
            sigma = pm.HalfNormal("sigma", 1.0)
            theta_prior = pm.Normal.dist(mu[:, None], sigma)
        else:
            # One region: the region hierarchy has a single member per arm, so (μ, σ) are
            # not identified and the centred form is a funnel (measured: 5–77 divergences
            # per replay cell on HANNA/SummEval with one region). Use logit θ ~ N(0, 1.5²).
            theta_prior = pm.Normal.dist(0.0, 1.5)
        a0 = pm.Normal("fpr_logit_mean", -1.5, 1.5)
        g0 = pm.Normal("gap_logit_mean", 1.5, 1.5)
        s_a = s_g = ARM_POOLING_SD

        # Sampling coordinates: flat here, their density comes from the Potentials below.
        lam = pm.Flat("judge_pos_logit", dims=("arm", "region"))
        alpha = pm.Flat("fpr_raw", dims="arm")
        beta = pm.Flat("tpr_raw", dims="arm")

        q = pm.math.sigmoid(lam)
        log_q = _log_sigmoid(lam)
        log1m_q = _log_sigmoid(-lam)
        q_min = q.min(axis=1)
        q_max = q.max(axis=1)
        fpr = q_min * pm.math.sigmoid(alpha)
        tpr = q_max + (1.0 - q_max) * pm.math.sigmoid(beta)
        span = tpr - fpr
        # θ and 1-θ from differences that stay positive by construction.
        theta = pm.Deterministic(
            "theta", (q - fpr[:, None]) / span[:, None], dims=("arm", "region")
        )
        log_theta = pt.log(q - fpr[:, None]) - pt.log(span)[:, None]
        log1m_theta = pt.log(tpr[:, None] - q) - pt.log(span)[:, None]
        # v = (t - f) / (1 - f) and 1 - v = (1 - t) / (1 - f), on the log scale.
        log_fpr = pt.log(q_min) + _log_sigmoid(alpha)
        log1m_fpr = pt.log1p(-fpr)
        log_gap = pt.log(span) - log1m_fpr
        log1m_gap = pt.log(1.0 - tpr) - log1m_fpr

        pm.Deterministic("judge_pos_rate", q, dims=("arm", "region"))
        confusion = _binary_judge(fpr, tpr)

        # Prior of the model in its natural coordinates (L, A, G) ...
        logit_theta = log_theta - log1m_theta
        logit_fpr = log_fpr - log1m_fpr
        logit_gap = log_gap - log1m_gap
        prior = (
            pm.logp(theta_prior, logit_theta).sum()
            + pm.logp(pm.Normal.dist(a0, s_a), logit_fpr).sum()
            + pm.logp(pm.Normal.dist(g0, s_g), logit_gap).sum()
        )
        # ... carried to (λ, α, β) with log|∂(L, A, G)/∂(λ, α, β)| (module docstring).
        log_jac = (
            (log_q + log1m_q).sum()
            + (pt.log(q_min) + _log_sigmoid(alpha) + _log_sigmoid(-alpha)).sum()
            + (pt.log1p(-q_max) + _log_sigmoid(beta) + _log_sigmoid(-beta)).sum()
            - r * pt.log(span).sum()
            - (log_theta + log1m_theta).sum()
            - (log_fpr + log1m_fpr).sum()
            - (log_gap + log1m_gap + log1m_fpr).sum()
        )
        pm.Potential("prior_reparam", prior + log_jac)

        _likelihood(theta, confusion, judge_only, labelled, m=m, r=r, j=j)
    return model


def _binary_model_noncentred(counts: CellCounts) -> pm.Model:
    """The binary model in the non-centred coordinates of its prior (few responses per cell)."""
    m, r, j = counts.shape
    with pm.Model(coords=_coords(counts)) as model:
        judge_only, labelled = _count_data(counts)
        if r > 1:
            mu = pm.Normal("mu", 0.0, 1.5, dims="arm")
            sigma = pm.HalfNormal("sigma", 1.0)
            z = pm.Normal("z", 0.0, 1.0, dims=("arm", "region"))
            logit_theta = mu[:, None] + sigma * z
        else:
            # One region: no hierarchy, as in the judge-rate coordinates.
            logit_theta = pm.Normal("theta_logit", 0.0, 1.5, dims=("arm", "region"))
        theta = pm.Deterministic("theta", pm.math.sigmoid(logit_theta), dims=("arm", "region"))
        a0 = pm.Normal("fpr_logit_mean", -1.5, 1.5)
        g0 = pm.Normal("gap_logit_mean", 1.5, 1.5)
        fpr_logit = pm.Normal("fpr_logit", a0, ARM_POOLING_SD, dims="arm")
        gap_logit = pm.Normal("gap_logit", g0, ARM_POOLING_SD, dims="arm")
        fpr = pm.math.sigmoid(fpr_logit)
        tpr = fpr + (1.0 - fpr) * pm.math.sigmoid(gap_logit)
        confusion = _binary_judge(fpr, tpr)
        pm.Deterministic(
            "judge_pos_rate", fpr[:, None] + theta * (tpr - fpr)[:, None], dims=("arm", "region")
        )
        _likelihood(theta, confusion, judge_only, labelled, m=m, r=r, j=j)
    return model


def _ordinal_model(counts: CellCounts) -> pm.Model:
    m, r, j = counts.shape
    with pm.Model(coords={**_coords(counts), "cut": list(range(j - 1))}) as model:
        judge_only, labelled = _count_data(counts)

        if r > 1:
            mu = pm.Normal("mu", 0.0, 1.5, dims="arm")
            sigma = pm.HalfNormal("sigma", 1.0)
            # Centred: every cell is informed by its judge-only counts (module docstring).
            logit_theta = pm.Normal("theta_logit", mu[:, None], sigma, dims=("arm", "region"))
        else:
            # One region: as in the binary model, no hierarchy over a single member.
            logit_theta = pm.Normal("theta_logit", 0.0, 1.5, dims=("arm", "region"))
        theta = pm.Deterministic("theta", pm.math.sigmoid(logit_theta), dims=("arm", "region"))

        # Cut points: ordered per arm, around ordered dimension-level cut points, with the
        # same fixed pooling scale as the binary judge (a learnt scale made a funnel).
        init_cuts = np.linspace(-1.0, 1.0, j - 1)
        kappa0 = pm.Normal(
            "cut_mean",
            0.0,
            2.0,
            dims="cut",
            transform=pm.distributions.transforms.ordered,
            initval=init_cuts,
        )
        kappa = pm.Normal(
            "cuts",
            kappa0,
            ARM_POOLING_SD,
            dims=("arm", "cut"),
            transform=pm.distributions.transforms.ordered,
            initval=np.tile(init_cuts, (m, 1)),
        )
        # Location shift of the pass row, > 0: the judge is better than chance.
        d0 = pm.Normal("shift_log_mean", 0.5, 1.0)
        log_shift = pm.Normal("shift_log", d0, ARM_POOLING_SD, dims="arm")
        shift = pm.Deterministic("shift", pt.exp(log_shift), dims="arm")

        eta = pt.stack([pt.zeros_like(shift), shift], axis=1)  # (M, 2)
        cdf = pm.math.sigmoid(kappa[:, None, :] - eta[:, :, None])  # (M, 2, J-1)
        ones = pt.ones((m, 2, 1))
        zeros = pt.zeros((m, 2, 1))
        cdf_full = pt.concatenate([zeros, cdf, ones], axis=-1)
        confusion = pm.Deterministic(
            "confusion", cdf_full[..., 1:] - cdf_full[..., :-1], dims=("arm", "y", "bin")
        )
        _likelihood(theta, confusion, judge_only, labelled, m=m, r=r, j=j)
    return model


def create_calibration_model(counts: CellCounts) -> pm.Model:
    """Build the PyMC calibration model for one dimension.

    Parameters
    ----------
    counts
        Per-cell counts; ``counts.n_bins`` selects the binary (``J = 2``) or the
        ordered-logit (``J > 2``) judge model, and for a binary judge the median cell's
        judge-only count selects its sampling coordinates (:func:`binary_coordinates`;
        :func:`model_key` names the compiled model). See the module docstring.

    Returns
    -------
    pymc.Model
        With ``pm.Data`` containers ``judge_only`` ``(arm, region, bin)`` and ``labelled``
        ``(arm, region, y, bin)`` (swap them with ``pm.set_data`` or nutpie's
        ``with_data`` without recompiling), and deterministics ``theta`` ``(arm, region)``
        = P(pass) and ``confusion`` ``(arm, y, bin)`` = P(judge bin | true class).
    """
    if counts.n_bins < 2:
        raise ValueError("the judge must have at least two bins")
    if counts.n_bins == 2:
        if binary_coordinates(counts) == "noncentred":
            return _binary_model_noncentred(counts)
        return _binary_model(counts)
    return _ordinal_model(counts)
