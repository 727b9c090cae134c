r"""Design-based estimate of ``Δ`` from the audit sample: the model-free check.

A share of every study's grades (``Study.audit_share``, 10% by default) goes to responses
drawn *uniformly over all the study's responses*, whatever the selector would have chosen
(``annotate.grading.queue``, policy ``audit``). Within each (arm, region) stratum those responses
are a simple random sample, so an estimate built on them alone needs no model: it is
unbiased whatever the judge does, which is exactly what the calibration model cannot
promise when the judge treats the arms or regions differently (review, §1–2 and §7).

Which estimator, and why: PPI++ with a power-tuned λ per stratum
-----------------------------------------------------------------
For stratum ``(m, r)`` with ``N`` responses, all of them scored by the judge
(``f_i``: the judge's bin scaled to ``[0, 1]``), and ``n`` audit grades ``y_i`` (the share
of the response's annotators who gave a pass):

.. math::

    \hat θ_{mr}(λ) = λ\,\bar f_N + \frac1n \sum_{i ≤ n} (y_i − λ f_i),\qquad
    \widehat{\operatorname{Var}} = \frac{s^2_{y − λ f}}{n} + λ^2 \frac{s^2_f}{N},

with ``λ = \widehat{\operatorname{Cov}}(y, f) / ((1 + n/N)\, s^2_f)``, the variance-minimising
value (Angelopoulos et al. 2023, "PPI++"), clipped to ``[0, 1]``. Any fixed ``λ`` gives an
unbiased estimate (``E[\bar f_n] = \bar f_N`` under uniform sampling), so a bad judge only
costs width; ``λ = 0`` is the plain sample mean (the Hájek estimator of a stratum with equal
propensities), and PPI++ is never much wider than it and narrower whenever the judge
predicts the grades. Hájek alone would throw away the judge scores of every response,
which are free here. Inverse-propensity weighting is not needed: inside the audit sample
every response of a stratum has the same propensity (recorded on the assignment), and
post-stratification by traffic share re-weights the strata. (Inverse-propensity PPI++ on
the *active* labels was 3–4× wider than the model: useless as a guardrail.)

Per arm, ``\hat θ_m = Σ_r w_r \hat θ_{mr}`` and ``\hat Δ = \hat θ_c − \hat θ_{inc}``, with
the strata's variances added (independent samples), and a normal 95% interval.

Thin strata: the arm's regions pooled
-------------------------------------
A 10% audit of a few hundred grades leaves a small region with 0 or 1 audit grades in an
arm more often than not, and a stratum of fewer than :data:`MIN_PER_STRATUM` grades has no
variance estimate. Holding every go until each small region has two audit grades cost most
right gos at a 300-label budget (``bench/adversarial.py``, ``audit_identical_go``: 5 of 7
model gos never shown). When a region with traffic is thin, that arm's regions are pooled
instead, still without a model: every audited response ``i`` of the arm gets the weight
``a_i = w_{r(i)} / N_{r(i)}`` (its region's traffic per response; inclusion is uniform over
the arm, so this is the Hájek estimator of the traffic-weighted pass rate), and with
``ã_i = a_i / Σ_j a_j``

.. math::

    \hat θ_m(λ) = λ \bar F_w + Σ_i ã_i (y_i − λ f_i),\qquad
    \bar F_w = Σ_r w_r \bar f_{N_r},\qquad
    \widehat{\operatorname{Var}} = \frac{n}{n-1} Σ_i ã_i^2 (e_i − \bar e_ã)^2
        + λ^2 Σ_r w_r^2 \frac{s^2_{f,r}}{N_r},

``e_i = y_i − λ f_i``, ``λ`` the weighted ``Cov(y, f) / Var(f)`` clipped to ``[0, 1]``
(the linearised variance of a ratio estimator). A region with no audit grade then counts
only through its judge mean ``\bar f_{N_r}``: its residual ``y − λf`` is taken to average
like the other regions'. That is the one assumption of the pooled form, and the price of a
go that can be checked at all (with 20 audit grades over regions 20 points apart and a
flattering judge, the pooled estimates were biased by −1.8 points for an sd of 15.7,
coverage 92%: ``tests/bayes/test_audit.py``); the stratified form is used whenever every
region has its two grades. An arm with fewer than :data:`MIN_PER_STRATUM` audit grades in
all leaves no estimate.

The agreement rule
------------------
Let ``Δ_M`` (posterior mean, sd ``s_M``) be the model's and ``\hat Δ_A`` (standard error
``s_A``) the audit's. If both estimate the same ``Δ``, ``Δ_M − \hat Δ_A`` has mean 0 and a
standard deviation of at most ``\sqrt{s_M^2 + s_A^2}`` (the audit grades are also in the
model, so the two are positively correlated and the true spread is smaller: the test is
conservative about crying wolf, and a held verdict is real evidence of a biased model).
They **agree** when

.. math::

    |Δ_M − \hat Δ_A| < z_{0.975} \sqrt{s_M^2 + s_A^2}.

A go stands only when they agree; otherwise the verdict is **held** ("the model and the
audit disagree"), and also held when the audit has too few grades to say (a go cannot
be checked). A no-go is not held: the audit is a guard against wrong gos.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import sqrt
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MIN_PER_STRATUM",
    "AuditEstimate",
    "Stratum",
    "agree",
    "audit_delta",
    "pooled_estimate",
    "stratum_estimate",
]

#: Audit grades a stratum with traffic needs before the audit gives an estimate.
MIN_PER_STRATUM = 2
Z975 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Stratum:
    """One (arm, region): the audit grades with their judge scores, and every judge score.

    ``y`` and ``f`` are the audited responses' grades (pass share in ``[0, 1]``) and judge
    scores (scaled to ``[0, 1]``); ``f_sum``, ``f_sq_sum`` and ``n_all`` summarise the judge
    scores of *all* the stratum's responses.
    """

    y: ArrayLike
    f: ArrayLike
    f_sum: float
    f_sq_sum: float
    n_all: int


@dataclass(frozen=True)
class AuditEstimate:
    """The audit's ``Δ``: estimate, standard error, 95% interval and how many grades."""

    mean: float
    se: float
    lower: float
    upper: float
    n: int
    #: ``"stratified"``, or ``"pooled"`` when an arm had a thin region (module docstring).
    method: str = "stratified"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _floored(var: float, y: np.ndarray, n_eff: float) -> float:
    """All-equal grades (common in a small sample) give a zero sample variance: floor it
    at the binomial variance with half a pass added, ``p̃(1 − p̃)/n_eff``,
    ``p̃ = (Σy + ½)/(n + 1)`` (``n_eff``: the effective sample size of weighted grades)."""
    if not np.all(y == y[0]):
        return var
    p = (float(y.sum()) + 0.5) / (y.size + 1)
    return max(var, p * (1.0 - p) / n_eff)


def stratum_estimate(s: Stratum) -> tuple[float, float] | None:
    """PPI++ mean and variance of one stratum (module docstring); None if too few grades."""
    y = np.asarray(s.y, dtype=np.float64).ravel()
    f = np.asarray(s.f, dtype=np.float64).ravel()
    n, big_n = y.size, int(s.n_all)
    if n < MIN_PER_STRATUM or big_n < 1:
        return None
    f_mean_all = s.f_sum / big_n
    f_var_all = max(s.f_sq_sum / big_n - f_mean_all**2, 0.0) * big_n / max(big_n - 1, 1)
    f_var = float(f.var(ddof=1))
    lam = 0.0
    if f_var > 0:
        cov = float(np.cov(y, f, ddof=1)[0, 1])
        lam = min(max(cov / ((1.0 + n / big_n) * f_var), 0.0), 1.0)
    resid = y - lam * f
    mean = lam * f_mean_all + float(resid.mean())
    var = float(resid.var(ddof=1)) / n + lam**2 * f_var_all / big_n
    return mean, _floored(var, y, n)


def pooled_estimate(strata: list[Stratum], weights: ArrayLike) -> tuple[float, float] | None:
    """Hájek-weighted PPI++ over an arm's regions pooled (module docstring, *Thin strata*):
    mean and variance of the arm's traffic-weighted pass rate; None if too few grades."""
    w = np.asarray(weights, dtype=np.float64)
    ys, fs, ws = [], [], []
    f_bar = f_var = 0.0
    for wr, s in zip(w, strata, strict=True):
        if wr == 0:
            continue
        big_n = int(s.n_all)
        if big_n < 1:
            return None
        y = np.asarray(s.y, dtype=np.float64).ravel()
        ys.append(y)
        fs.append(np.asarray(s.f, dtype=np.float64).ravel())
        ws.append(np.full(y.size, wr / big_n))
        mean_r = s.f_sum / big_n
        f_bar += wr * mean_r
        f_var += wr**2 * max(s.f_sq_sum / big_n - mean_r**2, 0.0) / max(big_n - 1, 1)
    y, f, a = np.concatenate(ys), np.concatenate(fs), np.concatenate(ws)
    n = y.size
    if n < MIN_PER_STRATUM:
        return None
    a = a / a.sum()
    y_w, f_w = float(a @ y), float(a @ f)
    var_f = float(a @ (f - f_w) ** 2)
    lam = 0.0
    if var_f > 0:
        lam = min(max(float(a @ ((y - y_w) * (f - f_w))) / var_f, 0.0), 1.0)
    e = y - lam * f
    e_w = float(a @ e)
    mean = lam * f_bar + e_w
    var = n / (n - 1) * float((a**2) @ (e - e_w) ** 2) + lam**2 * f_var
    return mean, _floored(var, y, 1.0 / float(a @ a))


def _arm_estimate(strata: list[Stratum], w: np.ndarray) -> tuple[float, float, bool] | None:
    """An arm's traffic-weighted pass rate and its variance, stratified when every region
    with traffic has its grades, else pooled; the flag says which (True: pooled)."""
    mean = var = 0.0
    for wr, s in zip(w, strata, strict=True):
        if wr == 0:
            continue
        est = stratum_estimate(s)
        if est is None:
            pooled = pooled_estimate(strata, w)
            return None if pooled is None else (*pooled, True)
        mean += wr * est[0]
        var += wr**2 * est[1]
    return mean, var, False


def audit_delta(
    candidate: list[Stratum], incumbent: list[Stratum], weights: ArrayLike
) -> AuditEstimate | None:
    """``\\hat Δ`` post-stratified over regions (one :class:`Stratum` per region, in order);
    an arm with a thin region is estimated with its regions pooled (module docstring)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    if len(candidate) != w.size or len(incumbent) != w.size:
        raise ValueError("one stratum per region and arm")
    cand, inc = _arm_estimate(candidate, w), _arm_estimate(incumbent, w)
    if cand is None or inc is None:
        return None
    n = sum(int(np.asarray(s.y).size) for s in (*candidate, *incumbent))
    mean, se = cand[0] - inc[0], sqrt(cand[1] + inc[1])
    return AuditEstimate(
        mean=mean,
        se=se,
        lower=mean - Z975 * se,
        upper=mean + Z975 * se,
        n=n,
        method="pooled" if cand[2] or inc[2] else "stratified",
    )


def agree(model_mean: float, model_sd: float, audit: AuditEstimate) -> bool:
    """``|Δ_M − Δ_A| < z_{0.975} √(s_M² + s_A²)`` (module docstring, *The agreement rule*)."""
    return bool(abs(model_mean - audit.mean) < Z975 * sqrt(model_sd**2 + audit.se**2))
