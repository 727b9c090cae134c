r"""Where the next human grade tells most about the decision (pure numpy on posterior draws).

Notation
--------
Per dimension ``d`` a fit leaves ``S`` posterior draws of the pass rate
``θ_s[m, r]`` (arm ``m``, 0 the incumbent; region ``r``) and of the calibration curve
``p_s[m, r, k] = P(y = 1 | cell)`` over the fit's columns ``k`` (the bin combinations of
every dimension, :mod:`calibration.bayes.curve`). With traffic shares ``w_r`` the decision
quantity of candidate ``c`` on dimension ``d`` is

.. math::

    Δ_{c,s} = \sum_r w_r θ_s[c, r] - \sum_r w_r θ_s[0, r].

A *cell* is ``(m, r, j_1, …, j_D)``: an arm, a region and the judge bin of every dimension.
Responses in one cell are exchangeable for the model, so cells are scored and a response is
then drawn at random inside the chosen cell.

Value of one more grade
-----------------------
A grade on a response of cell ``c`` reveals ``y_d`` for every dimension. For dimension ``d``,
``p_s`` is the curve at the cell (for fits of the older confusion model, Bayes' rule
``θπ_{1j} / (θπ_{1j} + (1 − θ)π_{0j})`` on the dimension's own bin ``j``) and
``\bar p = \sum_s u_s p_s``, with ``u`` the current (normalised) draw weights. Observing
``y`` turns the weights into ``u^y_s ∝ u_s p_s^y (1 − p_s)^{1−y}`` (importance reweighting),
and the expected reduction of the variance of ``Δ`` is

.. math::

    \operatorname{Var}_u(Δ) - \sum_y P(y \mid j) \operatorname{Var}_{u^y}(Δ)
        = \sum_y P(y \mid j)\,(E_{u^y}Δ - E_uΔ)^2
        = \frac{\operatorname{Cov}_u(Δ, p)^2}{\bar p (1 - \bar p)}.

The first equality is the law of total variance, which holds *exactly* for the weighted draws
because ``u = \bar p u^1 + (1 - \bar p) u^0``; the closed form on the right is what is
computed (never negative, one matrix product for every cell). The score of a cell is this
quantity summed over the dimensions the grade covers and over the **undecided** ``Δ`` that
involve the cell's arm (every candidate's ``Δ`` for an incumbent cell, the candidate's own
``Δ`` otherwise). Settled verdicts (go or no-go already reached) contribute nothing, so
settled cells stop attracting labels.

Restricting to the ``Δ`` that involve the arm is exact for the calibration curve, whose arms
share no parameter: a label on candidate 1 cannot move candidate 2's ``Δ``, and any sample
covariance between them is Monte Carlo noise that would otherwise steer the labels.

Criteria
--------
``"standardised"`` (the default) is the expected drop in ``Var(Δ)`` per unit of the cell's
own Bernoulli variance, scaled to a fair coin's:

.. math:: \frac{1}{4}\,\frac{\operatorname{Cov}_u(Δ, p)^2}{\bigl(\bar p (1 - \bar p)\bigr)^2}.

It keeps what the design says about ``Δ`` (the cell's weight in it, how many labels the
cell and its neighbours in the curve already have, which verdicts are open) and drops what
the cell's own grades say about its pass rate. For one cell with ``n`` labels and a
conjugate posterior, ``Cov = w Var(p)`` and ``Var(p) = \bar p(1 - \bar p)/(n + a + b + 1)``,
so the score is ``w² / (4 (n + a + b + 1)²)``: it does not depend on the grades at all. In
the calibration curve a cell's grades still reach its score, but only through the
parameters it shares with other cells (the learnt scales of the region and bin effects).

Why not the plain variance drop: with it, a cell whose estimate drifts away from ½ by chance
looks better known, gets fewer labels, and keeps its drift; one that drifts towards ½ gets
more, and is corrected. That is the bias adaptive sampling gives estimates at a fixed truth
(posterior means pushed away from ½). It mostly cancels between two models graded alike
(+0.04–0.07 sd), but not when the judge is worse for the candidate (its judge-pass cell
nearer ½): the candidate's pass rate is then over-estimated: the posterior mean of ``Δ`` sat
0.09–0.20 posterior sd above the truth at the looks of a 300-grade study
(``bench/adaptive_bias.py``), and in the app's loop with the curve 0.04–0.37 sd
(``bench/adversarial.py``); those studies gave 17 wrong gos in 300 (5.7%, the target is at
most 5%), and 14 in 300 with this criterion. The price is the labels the plain criterion
saves by sending more of them where the pass rate is nearer ½: for an interval as narrow at
300 grades, 13–16% more grades with the flattering judges, 23% with a good judge alike for
both models, 7% with a weak one (the same simulation).

``"variance"`` is that plain expected drop in ``Var(Δ)``, ``Cov_u(Δ, p)² / (p̄(1 − p̄))``:
smooth, always positive while a verdict is open; kept for comparison.
``"wrong_verdict"`` is the expected drop in the probability of a wrong verdict if one decided
now by the more likely side, ``L = min(P, 1 - P)`` with ``P = P(Δ > -δ_d)``:
``L - Σ_y P(y|j) min(P_y, 1 - P_y)`` (non-negative since ``min`` is concave). It
concentrates labels on verdicts close to the margin but is noisier on few draws.

Between fits
------------
:func:`reweight` multiplies the draw weights by the likelihood of each label that came in
since the fit, ``p_s`` or ``1 − p_s`` at its cell (the model's likelihood of the new label),
so consecutive picks already account for them. Weights are kept as logs;
:func:`effective_sample_size` tells when they have collapsed and a refit is needed.

Choosing
--------
:func:`choose_cell` mixes a uniform pick over *responses* (share ``ε``) with the arg-max cell
(ties broken at random), and returns the total probability of the chosen response under that
mixture, for design-based estimators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration.bayes.decision import delta_draws as arm_delta_draws
from calibration.bayes.decision import sample_skewness, sequential_sides, skew_adjusted_z
from calibration.bayes.decision import verdict as one_look_verdict

__all__ = [
    "ESS_REFIT_FRACTION",
    "SELECTION_DRAWS",
    "CellChoice",
    "DimensionDraws",
    "Selector",
    "choose_cell",
    "delta_draws",
    "dimension_scores",
    "effective_sample_size",
    "normalised_weights",
    "pass_given_bin",
    "reweight",
    "score_cells",
    "verdicts",
]

Criterion = Literal["standardised", "variance", "wrong_verdict"]

#: Draws the selector keeps from a fit: as many as a stored fit holds
#: (``calibration.bayes.posterior.DRAWS_STORED``), so a replay's selector, which gets the fit
#: before storage, works as the app's does. Its work per pick grows with draws × cells (every
#: arm × region × bin combination, thousands in a large study); a score only ranks cells,
#: and verdicts are read from the fit's summary, over every draw.
SELECTION_DRAWS = 1000

#: Below this share of the stored draws' count, the reweighted draws are too few to trust:
#: the caller should refit (scores are still computed, but from a handful of draws).
ESS_REFIT_FRACTION = 0.25

GO, NO_GO, UNDECIDED = "go", "no-go", "undecided"


@dataclass(frozen=True, eq=False)
class DimensionDraws:
    """Posterior draws of one dimension, as a fit leaves them.

    Attributes
    ----------
    theta
        ``(S, M, R)`` P(pass) per draw, arm (0 the incumbent) and region.
    cells
        ``(S, M, R, K)`` P(pass | cell) per draw: the calibration curve over the fit's
        columns ``K`` (the study's bin combinations for the curve model,
        :meth:`~calibration.bayes.posterior.DimensionFit.pass_by_cell`).
    confusion
        Instead of ``cells``, for fits of the older confusion model: ``(S, M, 2, J)``
        P(judge bin j | true class y); the columns are then the dimension's own bins.
    margin
        Non-inferiority margin ``δ_d`` (0.02 = 2 points).
    """

    theta: NDArray[np.float64] = field(repr=False)
    confusion: NDArray[np.float64] | None = field(default=None, repr=False)
    margin: float = 0.02
    cells: NDArray[np.float64] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        theta = np.asarray(self.theta, dtype=np.float64)
        if theta.ndim != 3:
            raise ValueError("theta must be (draws, arms, regions)")
        s, m, r = theta.shape
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "margin", float(self.margin))
        if self.cells is not None:
            cells = np.asarray(self.cells, dtype=np.float64)
            if cells.ndim != 4 or cells.shape[:3] != (s, m, r):
                raise ValueError(f"cells must be ({s}, {m}, {r}, K), got {cells.shape}")
            object.__setattr__(self, "cells", cells)
        elif self.confusion is not None:
            conf = np.asarray(self.confusion, dtype=np.float64)
            if conf.ndim != 4 or conf.shape[:3] != (s, m, 2):
                raise ValueError(f"confusion must be ({s}, {m}, 2, J), got {conf.shape}")
            object.__setattr__(self, "confusion", conf)
        else:
            raise ValueError("give the curve's cells or the judge's confusion")

    @classmethod
    def from_fit(
        cls, fit: Any, *, margin: float, max_draws: int | None = SELECTION_DRAWS
    ) -> DimensionDraws:
        """Wrap a :class:`~calibration.bayes.posterior.DimensionFit`, keeping at most
        ``max_draws`` of its draws (:meth:`~calibration.bayes.posterior.DimensionFit.thinned`;
        None keeps all)."""
        if max_draws is not None:
            fit = fit.thinned(max_draws)
        return cls(theta=np.asarray(fit.theta), cells=fit.pass_by_cell(), margin=margin)

    @property
    def n_draws(self) -> int:
        return int(self.theta.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, R, K)``: arms, regions, columns."""
        _, m, r = self.theta.shape
        k = self.cells.shape[-1] if self.cells is not None else self.confusion.shape[-1]  # type: ignore[union-attr]
        return (m, r, int(k))

    @cached_property
    def pass_by_cell(self) -> NDArray[np.float64]:
        """``(S, M·R·K)`` P(pass | cell) per draw, flattened over the cells.

        Computed once per set of draws (it does not depend on the weights) and shared by
        the score tables, whose rebuild it would otherwise dominate, and :func:`reweight`.
        """
        m, r, k = self.shape
        if self.cells is not None:
            return self.cells.reshape(self.n_draws, m * r * k)
        assert self.confusion is not None
        return pass_given_bin(self.theta, self.confusion).reshape(self.n_draws, m * r * k)


def normalised_weights(log_weights: ArrayLike | None, n_draws: int) -> NDArray[np.float64]:
    """Draw weights ``u_s = exp(ℓ_s) / Σ exp(ℓ)`` (uniform when ``log_weights`` is None)."""
    if log_weights is None:
        return np.full(n_draws, 1.0 / n_draws)
    lw = np.asarray(log_weights, dtype=np.float64)
    if lw.shape != (n_draws,):
        raise ValueError(f"log_weights must have shape ({n_draws},)")
    u = np.exp(lw - lw.max())
    return np.asarray(u / u.sum(), dtype=np.float64)


def effective_sample_size(log_weights: ArrayLike) -> float:
    """Kish's effective sample size ``(Σ u)² / Σ u²`` of importance weights given as logs."""
    lw = np.asarray(log_weights, dtype=np.float64)
    u = np.exp(lw - lw.max())
    return float(u.sum() ** 2 / (u**2).sum())


def delta_draws(theta: ArrayLike, traffic: ArrayLike) -> NDArray[np.float64]:
    """``Δ_{s,c} = Σ_r w_r θ_s[c, r] − Σ_r w_r θ_s[0, r]`` for candidates ``c = 1..M-1``.

    Every candidate's :func:`calibration.bayes.decision.delta_draws` (the summary's ``Δ``,
    to the last bit), one column each.

    Parameters
    ----------
    theta
        ``(S, M, R)`` draws.
    traffic
        ``(R,)`` traffic shares (normalised here).

    Returns
    -------
    numpy.ndarray
        ``(S, M - 1)``; column ``c - 1`` is candidate ``c``.
    """
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim != 3:
        raise ValueError("theta must be (draws, arms, regions)")
    columns = [arm_delta_draws(th, traffic, c) for c in range(1, th.shape[1])]
    if not columns:
        return np.empty((th.shape[0], 0))
    return np.stack(columns, axis=1)


def verdicts(
    delta: ArrayLike,
    *,
    margin: float,
    confidence: float,
    log_weights: ArrayLike | None = None,
    required_z: float | None = None,
) -> NDArray[np.str_]:
    """Verdict per candidate from (weighted) draws of ``Δ``.

    **go** when ``P(Δ > −δ) ≥ confidence``, **no-go** when ``P(Δ < −δ) ≥ confidence``,
    else **undecided** (:func:`calibration.bayes.decision.verdict` on the weighted
    probabilities). With ``required_z`` (the boundary ``b_n`` of the sequential rule,
    :func:`calibration.bayes.decision.required_z`) the rule the verdicts follow instead,
    :func:`calibration.bayes.decision.sequential_sides` on the weighted
    ``z = (E_u[Δ] + δ) / sd_u(Δ)``, corrected for the weighted draws' skewness as the
    fit's verdicts are (:func:`calibration.bayes.decision.skew_adjusted_z`): go when
    ``z ≥ b_n``, no-go when ``z ≤ −b_n``.

    Parameters
    ----------
    delta
        ``(S, C)`` draws.
    margin, confidence
        ``δ`` and the required posterior probability.
    log_weights
        Optional ``(S,)`` log importance weights.
    required_z
        Optional boundary of the sequential rule (``inf``: nothing is settled).
    """
    d = np.asarray(delta, dtype=np.float64)
    u = normalised_weights(log_weights, d.shape[0])
    out = np.full(d.shape[1], UNDECIDED, dtype="<U9")
    if required_z is not None:
        mean = u @ d
        sd = np.sqrt(np.clip(u @ (d - mean) ** 2, 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, (mean + margin) / sd, np.sign(mean + margin) * np.inf)
        z = skew_adjusted_z(z, sample_skewness(d, u))
        go, nogo = sequential_sides(z, required_z)
        out[go] = GO
        out[nogo] = NO_GO
        return out
    p_ok = u @ (d > -margin)
    p_bad = u @ (d < -margin)
    out[:] = [
        one_look_verdict(float(a), float(b), confidence) for a, b in zip(p_ok, p_bad, strict=True)
    ]
    return out


def pass_given_bin(theta: ArrayLike, confusion: ArrayLike) -> NDArray[np.float64]:
    """``P(y = 1 | j, θ_s, π_s) = θ π_{1j} / (θ π_{1j} + (1 − θ) π_{0j})``.

    Parameters
    ----------
    theta
        ``(S, M, R)``.
    confusion
        ``(S, M, 2, J)``.

    Returns
    -------
    numpy.ndarray
        ``(S, M, R, J)``.
    """
    th = np.asarray(theta, dtype=np.float64)[..., None]  # (S, M, R, 1)
    conf = np.asarray(confusion, dtype=np.float64)
    pos = th * conf[:, :, None, 1, :]  # (S, M, R, J)
    total = (1.0 - th) * conf[:, :, None, 0, :]
    total += pos
    # A bin neither class can produce carries no information: 1/2 by convention.
    out = np.full_like(pos, 0.5)
    np.divide(pos, total, out=out, where=total > 0)
    return out


def _involves(n_arms: int) -> NDArray[np.bool_]:
    """``(M, C)``: does arm ``m``'s θ enter candidate ``c``'s Δ (incumbent: all)."""
    inv = np.zeros((n_arms, n_arms - 1), dtype=bool)
    inv[0, :] = True
    inv[np.arange(1, n_arms), np.arange(n_arms - 1)] = True
    return inv


def dimension_scores(
    draws: DimensionDraws,
    *,
    traffic: ArrayLike,
    confidence: float,
    log_weights: ArrayLike | None = None,
    undecided: ArrayLike | None = None,
    criterion: Criterion = "standardised",
    required_z: float | None = None,
) -> NDArray[np.float64]:
    r"""Value of one grade on dimension ``d`` for every ``(arm, region, judge bin)``.

    Parameters
    ----------
    draws
        The dimension's posterior draws and margin.
    traffic
        ``(R,)`` traffic shares.
    confidence
        Posterior probability that settles a verdict.
    log_weights
        ``(S,)`` log importance weights (labels since the fit); uniform when None.
    undecided
        Optional ``(C,)`` bool mask of the candidates whose verdict the caller holds open
        (e.g. from the fit summary); it is combined (and) with the verdicts of the weighted
        draws, so a verdict settled by either is not scored.
    criterion
        ``"standardised"`` (default), ``"variance"`` or ``"wrong_verdict"``, see the
        module docstring.
    required_z
        Boundary of the sequential rule at the current label count (see :func:`verdicts`);
        the caller that reads verdicts at every fit passes it, so that a verdict stops
        attracting labels exactly when the displayed verdict settles.

    Returns
    -------
    numpy.ndarray
        ``(M, R, J)`` table ``T[m, r, j] = Σ_{c open, involving m} score_c(m, r, j)`` with,
        for the default criterion, ``score_c = Cov_u(Δ_c, p)² / (4 (p̄(1 − p̄))²)``.
    """
    m, r, j = draws.shape
    s = draws.n_draws
    u = normalised_weights(log_weights, s)
    delta = delta_draws(draws.theta, traffic)  # (S, C)
    open_ = verdicts(
        delta,
        margin=draws.margin,
        confidence=confidence,
        log_weights=log_weights,
        required_z=required_z,
    )
    open_mask = open_ == UNDECIDED
    if undecided is not None:
        open_mask &= np.asarray(undecided, dtype=bool)
    if not open_mask.any():
        return np.zeros((m, r, j))

    # One matrix product over the draws gives Σ u p and Σ u p x (x: Δ or the go indicator)
    # for every cell: no (S, K) temporary, and one pass over p, which at thousands of cells
    # costs more than everything else here.
    p = draws.pass_by_cell  # (S, K), K = M·R·J
    if criterion in ("standardised", "variance"):
        # Centred, Σ u p (Δ − E Δ) is the covariance itself, with no cancellation.
        x = delta - (u @ delta)[None, :]  # (S, C)
    elif criterion == "wrong_verdict":
        x = (delta > -draws.margin).astype(np.float64)  # (S, C)
    else:
        raise ValueError(f"unknown criterion {criterion!r}")
    sums = np.vstack([u, (u[:, None] * x).T]) @ p  # (1 + C, K)
    p_bar = sums[0]  # (K,) P(y = 1 | j) under the current weights
    upx = sums[1:].T  # (K, C): Σ u p x
    var_y = p_bar * (1.0 - p_bar)
    safe = np.where(var_y > 1e-12, var_y, np.inf)  # a certain y tells nothing

    if criterion == "standardised":
        per = 0.25 * upx**2 / safe[:, None] ** 2  # Cov_u(Δ, p)² / (4 (p̄(1 − p̄))²)
    elif criterion == "variance":
        per = upx**2 / safe[:, None]  # Cov_u(Δ, p)² / (p̄(1 − p̄))
    else:
        p_ok = u @ x
        a = upx  # (K, C): Σ u p g
        with np.errstate(invalid="ignore", divide="ignore"):
            p1 = np.where(p_bar[:, None] > 0, a / p_bar[:, None], p_ok)
            p0 = np.where(p_bar[:, None] < 1, (p_ok[None, :] - a) / (1.0 - p_bar[:, None]), p_ok)
        before = np.minimum(p_ok, 1.0 - p_ok)[None, :]
        after = p_bar[:, None] * np.minimum(p1, 1.0 - p1) + (1.0 - p_bar[:, None]) * np.minimum(
            p0, 1.0 - p0
        )
        per = np.clip(before - after, 0.0, None)
        per[var_y <= 1e-12] = 0.0

    mask = _involves(m) & open_mask[None, :]  # (M, C)
    per = per.reshape(m, r, j, m - 1)
    return np.asarray(np.einsum("mrjc,mc->mrj", per, mask.astype(np.float64)), dtype=np.float64)


def score_cells(
    tables: Sequence[ArrayLike],
    *,
    arm: ArrayLike,
    region: ArrayLike,
    bins: ArrayLike,
) -> NDArray[np.float64]:
    """Score of each cell: ``Σ_d T_d[m, r, j_d]``.

    Parameters
    ----------
    tables
        One ``(M, R, J_d)`` table per dimension (:func:`dimension_scores`).
    arm, region
        ``(N,)`` indices of each cell.
    bins
        ``(N, D)`` judge bin of each dimension; ``-1`` means no judge score on that
        dimension, which then contributes nothing to the cell's score.
    """
    a = np.asarray(arm, dtype=np.int64)
    g = np.asarray(region, dtype=np.int64)
    b = np.asarray(bins, dtype=np.int64).reshape(a.size, len(tables))
    total = np.zeros(a.size)
    for d, table in enumerate(tables):
        t = np.asarray(table, dtype=np.float64)
        jd = b[:, d]
        ok = jd >= 0
        total[ok] += t[a[ok], g[ok], jd[ok]]
    return total


def reweight(
    log_weights: ArrayLike | None,
    draws: DimensionDraws,
    *,
    arm: ArrayLike,
    region: ArrayLike,
    bin: ArrayLike,
    y: ArrayLike,
) -> NDArray[np.float64]:
    r"""Log-weights after labels that came in since the fit (one dimension).

    .. math:: ℓ'_s = ℓ_s + \sum_{i} \log P(y_i \mid j_i, θ_s[m_i, r_i], π_s[m_i])

    Parameters
    ----------
    log_weights
        ``(S,)`` current log-weights (None: the fit's own, all zero).
    draws
        The dimension's draws.
    arm, region, bin, y
        ``(L,)`` one entry per new label: its cell and class (``y < 0`` entries are
        ignored, e.g. a grade that skipped this dimension).

    Returns
    -------
    numpy.ndarray
        ``(S,)`` new log-weights, shifted so that their maximum is 0. A label in a bin
        that neither class can reach under some draw has likelihood ½ under it
        (:func:`pass_given_bin`'s convention), not a NaN that would spoil every weight.
    """
    s = draws.n_draws
    lw = np.zeros(s) if log_weights is None else np.array(log_weights, dtype=np.float64)
    yy = np.asarray(y, dtype=np.int64).ravel()
    keep = yy >= 0
    if keep.any():
        a = np.asarray(arm, dtype=np.int64).ravel()[keep]
        g = np.asarray(region, dtype=np.int64).ravel()[keep]
        b = np.asarray(bin, dtype=np.int64).ravel()[keep]
        yy = yy[keep]
        m, r, j = draws.shape
        p = draws.pass_by_cell.reshape(s, m, r, j)[:, a, g, b]  # (S, L)
        lik = np.where(yy[None, :] == 1, p, 1.0 - p)
        lw = lw + np.log(np.clip(lik, 1e-300, None)).sum(axis=1)
    return lw - lw.max()


class CellChoice(NamedTuple):
    """The chosen cell, how it was chosen, and the chosen *response*'s probability."""

    cell: int
    policy: str  # "active" or "explore" (Assignment.Policy values)
    probability: float


def choose_cell(
    scores: ArrayLike,
    n_available: ArrayLike,
    exploration_share: float,
    rng: np.random.Generator,
) -> CellChoice:
    r"""Pick a cell; a response is then drawn uniformly inside it.

    With probability ``ε`` (``exploration_share``) a response is drawn uniformly among all
    ``N = Σ_c n_c`` available ones (so its cell with probability ``n_c / N``); otherwise a
    cell is drawn uniformly among the ``G`` cells of maximal score (available ones only).
    The recorded probability of the chosen response ``i`` in cell ``c`` is the mixture

    .. math:: P(i) = \frac{ε}{N} + (1 - ε)\frac{1[c ∈ \text{argmax}]}{|G|\,n_c},

    which sums to 1 over responses and is ``≥ ε/N > 0`` for every response when ``ε > 0``.
    When no cell has a positive score (every verdict settled) the greedy part is uniform too,
    and ``P(i) = 1/N``.

    Parameters
    ----------
    scores
        ``(K,)`` cell scores.
    n_available
        ``(K,)`` responses that can still be given out in each cell.
    exploration_share
        ``ε ∈ [0, 1]``.
    rng
        Source of randomness.
    """
    sc = np.asarray(scores, dtype=np.float64)
    n = np.asarray(n_available, dtype=np.int64)
    if sc.shape != n.shape:
        raise ValueError("scores and n_available must have the same shape")
    eps = float(exploration_share)
    if not 0.0 <= eps <= 1.0:
        raise ValueError("exploration_share must be in [0, 1]")
    total = int(n.sum())
    if total <= 0:
        raise ValueError("no response is available")
    avail = n > 0
    best = sc[avail].max()
    if not np.isfinite(best) or best <= 0.0:
        index = int(rng.choice(n.size, p=n / total))
        return CellChoice(index, "explore", 1.0 / total)
    # Ties within floating-point noise are ties.
    greedy = np.flatnonzero(avail & (sc >= best * (1.0 - 1e-9)))
    if rng.random() < eps:
        index = int(rng.choice(n.size, p=n / total))
        policy = "explore"
    else:
        index = int(greedy[rng.integers(greedy.size)])
        policy = "active"
    in_greedy = index in set(greedy.tolist())
    prob = eps / total + ((1.0 - eps) / (greedy.size * n[index]) if in_greedy else 0.0)
    return CellChoice(index, policy, float(prob))


@dataclass
class Selector:
    """The selection state between two fits: draws, their log-weights, the study's rule.

    Parameters
    ----------
    dimensions
        One :class:`DimensionDraws` per dimension, in dimension order (the order of the
        bins in a cell).
    traffic
        ``(R,)`` traffic shares.
    confidence
        Posterior probability that settles a verdict.
    undecided
        Optional ``(C, D)`` bool mask of the verdicts held open by the caller.
    criterion
        See :func:`dimension_scores`.
    required_z
        Boundary of the sequential rule at the label count of this state (see
        :func:`verdicts`); None: the one-look rule on ``confidence``.
    """

    dimensions: Sequence[DimensionDraws]
    traffic: NDArray[np.float64]
    confidence: float
    undecided: NDArray[np.bool_] | None = None
    criterion: Criterion = "standardised"
    required_z: float | None = None
    log_weights: list[NDArray[np.float64]] = field(default_factory=list)
    n_observed: int = 0

    def __post_init__(self) -> None:
        self.traffic = np.asarray(self.traffic, dtype=np.float64)
        if not self.log_weights:
            self.log_weights = [np.zeros(d.n_draws) for d in self.dimensions]
        if self.undecided is not None:
            self.undecided = np.asarray(self.undecided, dtype=bool)
        self._tables: list[NDArray[np.float64]] | None = None

    def observe(self, *, arm: ArrayLike, region: ArrayLike, bins: ArrayLike, y: ArrayLike) -> None:
        """Fold in new labels: ``bins`` and ``y`` are ``(L, D)`` (``y = -1``: not graded)."""
        a = np.asarray(arm, dtype=np.int64).ravel()
        n_dims = len(self.dimensions)
        b = np.asarray(bins, dtype=np.int64).reshape(a.size, n_dims)
        yy = np.asarray(y, dtype=np.int64).reshape(a.size, n_dims)
        for d, draws in enumerate(self.dimensions):
            self.log_weights[d] = reweight(
                self.log_weights[d], draws, arm=a, region=region, bin=b[:, d], y=yy[:, d]
            )
        self.n_observed += int(a.size)
        self._tables = None

    def effective_sample_sizes(self) -> list[float]:
        return [effective_sample_size(lw) for lw in self.log_weights]

    @property
    def needs_refit(self) -> bool:
        """True when some dimension's weighted draws fell below ``ESS_REFIT_FRACTION·S``."""
        return any(
            ess < ESS_REFIT_FRACTION * d.n_draws
            for ess, d in zip(self.effective_sample_sizes(), self.dimensions, strict=True)
        )

    def tables(self) -> list[NDArray[np.float64]]:
        """Per-dimension ``(M, R, J_d)`` score tables under the current weights (cached)."""
        if self._tables is None:
            self._tables = [
                dimension_scores(
                    draws,
                    traffic=self.traffic,
                    confidence=self.confidence,
                    log_weights=lw,
                    undecided=None if self.undecided is None else self.undecided[:, d],
                    criterion=self.criterion,
                    required_z=self.required_z,
                )
                for d, (draws, lw) in enumerate(zip(self.dimensions, self.log_weights, strict=True))
            ]
        return self._tables

    def scores(self, *, arm: ArrayLike, region: ArrayLike, bins: ArrayLike) -> NDArray[np.float64]:
        """Scores of the given cells (see :func:`score_cells`)."""
        return score_cells(self.tables(), arm=arm, region=region, bins=bins)

    def verdicts(self) -> NDArray[np.str_]:
        """``(C, D)`` verdicts of the weighted draws."""
        cols = [
            verdicts(
                delta_draws(draws.theta, self.traffic),
                margin=draws.margin,
                confidence=self.confidence,
                log_weights=lw,
                required_z=self.required_z,
            )
            for draws, lw in zip(self.dimensions, self.log_weights, strict=True)
        ]
        return np.stack(cols, axis=1)
