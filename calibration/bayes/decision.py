r"""Non-inferiority decision from posterior draws.

For candidate ``c``, dimension ``d`` and traffic shares ``w_r`` (summing to 1):

.. math::

    \Delta_{cd} = \sum_r w_r\,\theta_{c d r} - \sum_r w_r\,\theta_{\mathrm{inc}, d r},
    \qquad \Delta_{cdr} = \theta_{cdr} - \theta_{\mathrm{inc},dr}.

With margin ``δ_d`` and required confidence ``γ`` the verdict for ``(c, d)`` is **go** when
``P(Δ > −δ_d) ≥ γ``, **no-go** when ``P(Δ < −δ_d) ≥ γ`` and **undecided** otherwise; the same
rule is applied per region. A candidate is a **go** when every dimension is a go, a **no-go**
when any dimension is a no-go, and **undecided** otherwise. A go also needs every fit to have
passed its convergence checks (``DimensionFit.ok``); otherwise it is reported undecided, since
the draws cannot be trusted.

Looking more than once: the sequential rule
-------------------------------------------
The app refits as grades come in (every ``refit_every`` grades) and shows the verdict of
every fit; a study stops asking for grades at the first fit whose verdicts are all settled.
Checking ``P(Δ > −δ) ≥ γ`` at every fit and stopping at the first go is *optional
stopping*: at ``Δ = −δ`` each look has a ``1 − γ`` chance of a wrong go, and the chances add
up over looks (``bench/label_efficiency.py``, boundary part: the one-look rule at every fit
gave a wrong go in about twice ``1 − γ`` of the simulated studies). So whenever a verdict is
read after ``n`` of a label budget of ``N`` graded responses, the app uses the
**sequential rule**, an alpha-spending boundary of O'Brien–Fleming type for continuous
monitoring:

.. math::

    z_n = \frac{E[Δ] + δ}{\operatorname{sd}(Δ)},\qquad
    b_n = z_{1-(1-γ)/2}\,\sqrt{\max(N / n,\ 1)},

**go** when ``z_n ≥ b_n``, **no-go** when ``z_n ≤ −b_n``, **undecided** otherwise
(γ = 0.95: ``b_N = 1.96`` at the budget, ``3.92`` at a quarter of it, ``6.2`` at a tenth).

Why it holds the error at ``1 − γ`` however often one looks: with the posterior close to
normal, ``z_n √(I_n)`` is a Brownian motion ``W`` in the information ``I_n`` (the posterior
precision of ``Δ``) when ``Δ = −δ``, and the go boundary is ``W(I_n) ≥ b_n √(I_n)``. If the
information per label does not grow as labels accumulate (``I_n / n ≥ I_N / N``, true for a
concave ``I``: active selection spends its most informative grades first, and the judge-only
data give information before any grade), then ``b_n √(I_n) ≥ z_{1-α/2} √(I_N)`` and, by the
reflection principle, ``P(\sup_{I ≤ I_N} W(I) ≥ z_{1-α/2} √(I_N)) = α = 1 − γ``: any number
of looks at any label counts up to the budget, including a refit after every grade, has a
wrong-go rate at most ``1 − γ``. Early verdicts need overwhelming evidence, which also
guards against the over-confident posteriors of the first hundred grades. The price is
labels: a verdict that the one-look rule would have reached early now waits, and at the
budget the rule asks ``P(Δ > −δ) ≈ 1 − (1 − γ)/2`` rather than ``γ``.

Information per candidate, not labels per study
-----------------------------------------------
The argument needs ``I_n / I_N`` to be at most the fraction the boundary uses. With several
candidates, study-wide ``n / N`` breaks it: while labels go to candidate 1, candidate 2's
information hardly grows, then grows fast (labels diverted between candidates gave 4.6–7.3%
wrong go at Δ = −δ). So the boundary of candidate ``c`` uses its own information fraction
(:func:`information_fraction`). ``Δ_c`` is a difference of two arms; with ``n_inc`` and
``n_c`` graded responses on them and a per-label variance ``σ²`` on each arm, its precision
is ``1/(σ²/n_inc + σ²/n_c) = e/σ²`` with the *effective labels*
``e = n_inc n_c / (n_inc + n_c)``. The study's budget caps ``n_inc + n_c ≤ N``, and ``e`` is
largest, ``N/4``, when the two arms split it evenly, so

.. math::

    t_c = \frac{e}{N/4} = \frac{4\, n_{inc}\, n_c}{N (n_{inc} + n_c)} \le 1,
    \qquad b = z_{1-α/2} / \sqrt{t_c}.

Let ``I_max`` be the information (posterior precision) of ``Δ_c`` at the budget with an even
split, judge-only information included, and ``c = z_{1-α/2}``. The go boundary in the
Brownian scale is ``W(I_n) ≥ b √I_n = c √(I_n / t_c)``. Two conditions make it safe:
(i) ``I_n ≤ I_max`` at every look (``n_inc + n_c ≤ N``) and (ii) ``I_n / t_c ≥ I_max``,
which holds whenever information is a concave function of ``e`` with ``I(0) ≥ 0``: linear in
the labels, plus judge-only information before any grade, plus the diminishing returns of
active selection. Then a go at any look means ``W`` reached the *constant* level
``c √I_max`` on ``[0, I_max]``, which has probability ``α`` by reflection, **whatever order
the labels come in and to whichever arm**. (The one approximation: information is taken to
depend on the arms' labels through ``e`` only, i.e. similar per-label variance on both
arms.) With two arms graded evenly ``t_c = n/N``, today's rule. The price with ``M > 2``
arms: an even split ``N/M`` per arm ends at ``t_c = 2/M``, so the last look asks
``b = 1.96 √(M/2)`` (2.40 for three arms); a re-plan (below) can move the budget.

Grades past the budget never flip a verdict: the reflection bound covers ``I ≤ I_N`` only,
so the verdict of the first fit at or past the budget is final
(:func:`calibration.services.build_summary` keeps it).

Re-plans: the conditional error principle
------------------------------------------
The budget, margins, confidence and audit share are frozen once grading starts; changing
them is a *re-plan*. Changing the budget after looking at the data is the gaming the rule
must survive (lowering it to the current count once ``z ≥ 1.96`` gave 11–18% wrong go), so a
re-plan keeps the **conditional** wrong-go probability of the design in force (Müller and
Schäfer 2001: any data-dependent change that does not raise it keeps the overall error).
Write a design side (go; the no-go side is the mirror with ``−z``) as a constant level in
the normalised Brownian scale ``w(t) = z √t``:

.. math::

    \text{go when } w(t) \ge B,\qquad B = w_a + q \sqrt{1 - t_a},

with anchor ``(t_a, w_a)`` and quantile ``q`` (the original plan: ``t_a = w_a = 0``,
``q = z_{1-α/2}``). At a re-plan at ``(t_0, w_0 = z_0 √t_0)``, with no go yet (``w_0 < B``,
``t_0 < 1``), the chance under ``Δ = −δ`` of a go before the old budget is, by reflection from
the current point,

.. math::

    A = 2\left(1 - Φ\!\left(\frac{B - w_0}{\sqrt{1 - t_0}}\right)\right).

The new plan (budget ``N'``, confidence ``γ'``) rescales information: ``t' = t · N/N'`` and
``w' = w √(N/N')``. It starts from the current point, ``t_a' = t_0 N/N'``,
``w_a' = z_0 √t_a'``, with ``A' = \min(1, A · α'/α)`` and ``q' = z_{1 - A'/2}``: the chance of a
go from here to the new budget is again, by reflection, exactly ``A'``, so the overall wrong
go is ``E[A'] ≤ α'`` (and across a chain of re-plans, at most the last confidence's
``1 − γ'``). Lowering the budget to the current count (``t_a' = 1``) leaves no information
to spend: the boundary is ``w_0`` itself and the verdict cannot change. A new margin
recomputes ``z_0`` at that margin; that is exact when the margin is not chosen by looking at
``Δ`` (the re-plan form says so), since each margin's test is then a fixed design.
Implemented in :class:`Design` and :func:`replan_design`.

``z_n`` is used rather than the share of draws past the margin because ``b_n`` can ask
for tail probabilities (``Φ(6) ≈ 1 − 10^{-9}``) that a few thousand draws cannot resolve:
"every draw past the margin" only says ``z ≳ 3``. Without ``labels``/``budget``
(:func:`summarise_delta`, :func:`summarise`) the one-look rule above applies: right for a
single, pre-planned look, wrong for a dashboard.

The skew of the posterior: never more lenient than the normal tail
------------------------------------------------------------------
``z_n`` reads the posterior as normal. It is not, where a pass rate is near 1: the draws of
``Δ`` are skewed (the tail towards the bound is short, the other long), and the tail
beyond the margin is then heavier on one side than ``Φ(−z)`` says. When the judge
flatters the candidate the skew is one-sided: the candidate's judge-pass cell, its
largest and noisiest, sits nearer ½ than the incumbent's, and ``Δ``'s draws come out
left-skewed (over 240 ``flatter_50`` studies in ``bench/adversarial.py``, sample skewness
with a median of −0.09 to −0.14 by look and a 10th percentile of −0.21 to −0.43). A go
then needs more than ``z ≥ b``: at ``b = 1.96`` and skewness −0.2 the posterior's own tail
below the margin is about 3.0% by the expansion below, not 2.5%. Uncorrected, the errors
``(E[Δ] − Δ)/sd`` had mean +0.17 to +0.36 sd and an upper tail of 4–11% (2.5% nominal) at
the looks from 60 to 260 grades of 60 such studies, and the rule gave 5 wrong gos in 60.

So ``z`` (:func:`standardised_distance`, :func:`skew_adjusted_z`) is the probit of the
posterior's tail at the margin, extrapolated from its first three moments by the
Cornish–Fisher expansion: with ``g = γ/6`` (``γ`` the draws' skewness) the standardised
``Δ`` has quantiles ``u + g(u² − 1)`` at normal quantile ``u``; the margin sits at
``x = −z_n``, so ``P(Δ ≤ −δ) ≈ Φ(u)`` with ``u`` the root of ``g u² + u − (g + x) = 0``
that tends to ``x`` as ``g → 0``, and ``z = −u``. The correction is only ever applied
towards zero (``|z| ≤ |z_n|``): on the side where the skew thins the tail the expansion
would loosen the rule, and far in a thin tail it has no root at all. The boundaries are
unchanged; a verdict simply needs the evidence its own posterior shows, never less than
the normal reading asks for. ``γ`` is clipped to ``[−1, 1]`` (a few thousand draws give it
within ±0.05).

Everything returned is plain dataclasses of floats/strings (``to_dict()`` is JSON-ready).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from math import sqrt
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration.bayes.audit import AuditEstimate, agree
from calibration.bayes.curve import judge_difference, judge_pass_difference
from calibration.bayes.data import CellCounts
from calibration.bayes.fit import DimensionFit

__all__ = [
    "CandidateSummary",
    "Design",
    "DeltaSummary",
    "DimensionSummary",
    "HELD",
    "JudgeSummary",
    "StudySummary",
    "audited_verdict",
    "combine_verdicts",
    "delta_draws",
    "delta_draws_by_region",
    "information_fraction",
    "judge_summary",
    "naive_judge_delta",
    "replan_cell",
    "replan_design",
    "required_probability",
    "required_probability_at",
    "required_z",
    "required_z_at",
    "sample_skewness",
    "selector_boundary",
    "sequential_sides",
    "sequential_verdict",
    "skew_adjusted_z",
    "standardised_distance",
    "strictest_open_boundary",
    "summarise",
    "summarise_delta",
    "verdict",
]

Verdict = Literal["go", "no-go", "undecided", "held"]

#: A go the audit sample does not confirm (calibration.bayes.audit, *The agreement rule*).
HELD: Verdict = "held"

#: Two judges "treat arms differently" when a confusion row moves by more than this
#: (total-variation distance; for a binary judge, a change of sensitivity or specificity).
JUDGE_DIFF_TOL = 0.05


def _weights(weights: ArrayLike, n_regions: int) -> NDArray[np.float64]:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_regions,):
        raise ValueError(f"weights must have shape ({n_regions},)")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    return w / w.sum()


def delta_draws(
    theta: ArrayLike, weights: ArrayLike, candidate: int, incumbent: int = 0
) -> NDArray[np.float64]:
    """Draws of ``Δ = Σ_r w_r θ[c, r] − Σ_r w_r θ[inc, r]``.

    Parameters
    ----------
    theta
        ``(S, M, R)`` posterior draws of ``P(pass)``.
    weights
        ``(R,)`` traffic shares (normalised here).
    candidate, incumbent
        Arm indices.

    Returns
    -------
    numpy.ndarray
        ``(S,)``.
    """
    th = np.asarray(theta, dtype=np.float64)
    w = _weights(weights, th.shape[2])
    return np.asarray((th[:, candidate, :] - th[:, incumbent, :]) @ w, dtype=np.float64)


def delta_draws_by_region(
    theta: ArrayLike, candidate: int, incumbent: int = 0
) -> NDArray[np.float64]:
    """Draws of ``Δ_r = θ[c, r] − θ[inc, r]``, shape ``(S, R)``."""
    th = np.asarray(theta, dtype=np.float64)
    return np.asarray(th[:, candidate, :] - th[:, incumbent, :], dtype=np.float64)


def verdict(p_noninferior: float, p_inferior: float, confidence: float) -> Verdict:
    """The decision rule: go / no-go / undecided (module docstring)."""
    if p_noninferior >= confidence:
        return "go"
    if p_inferior >= confidence:
        return "no-go"
    return "undecided"


def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence!r}")


def required_z(labels: int, budget: int, confidence: float) -> float:
    """Boundary ``b_n = z_{1-(1-γ)/2} √(max(N/n, 1))`` of the sequential rule.

    The two-arm, study-wide form of :func:`required_z_at` (fraction ``n/N``); the app's
    verdicts use each candidate's own fraction (:func:`information_fraction`).

    Parameters
    ----------
    labels
        ``n``: graded responses the fit saw (``0`` gives ``inf``: no verdict before any grade).
    budget
        ``N``: the study's label budget (graded responses), ``≥ 1``.
    confidence
        ``γ`` in ``(0.5, 1)``.
    """
    _check_confidence(confidence)
    if budget < 1:
        raise ValueError(f"label budget must be at least 1, got {budget!r}")
    if labels < 0:
        raise ValueError(f"labels must be non-negative, got {labels!r}")
    return required_z_at(labels / budget, confidence)


def required_probability(labels: int, budget: int, confidence: float) -> float:
    """``Φ(b_n)``: the posterior probability the sequential rule asks for (for selectors)."""
    b = required_z(labels, budget, confidence)
    return 1.0 if b == float("inf") else NormalDist().cdf(b)


def _critical(confidence: float) -> float:
    _check_confidence(confidence)
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def information_fraction(n_incumbent: int, n_candidate: int, budget: int) -> float:
    """``t_c = 4 n_inc n_c / (N (n_inc + n_c))``: candidate ``c``'s information fraction.

    The precision of ``Δ_c`` from ``n_inc`` and ``n_c`` graded responses on the two arms,
    over its largest value within the budget ``N`` (module docstring). ``0`` when either
    arm has no grade; at most 1 while ``n_inc + n_c ≤ N``, and capped at 1 beyond.
    """
    if budget < 1:
        raise ValueError(f"label budget must be at least 1, got {budget!r}")
    if n_incumbent < 0 or n_candidate < 0:
        raise ValueError("label counts must be non-negative")
    if n_incumbent == 0 or n_candidate == 0:
        return 0.0
    e = n_incumbent * n_candidate / (n_incumbent + n_candidate)
    return min(4.0 * e / budget, 1.0)


def required_z_at(fraction: float, confidence: float) -> float:
    """Boundary ``b = z_{1-(1-γ)/2} / √t`` at information fraction ``t`` (``inf`` at 0).

    The original plan's boundary: :meth:`Design.required_z` of ``Design.initial(γ)``.
    """
    return Design.initial(confidence).required_z(fraction)


def required_probability_at(fraction: float, confidence: float) -> float:
    """``Φ(b)`` at information fraction ``t``: what ``P(Δ > −δ)`` must reach for a go now.

    This is the bar the dashboard shows ("needs 99.6% at 3% of the budget").
    """
    b = required_z_at(fraction, confidence)
    return 1.0 if b == float("inf") else NormalDist().cdf(b)


@dataclass(frozen=True)
class Design:
    """One side of the boundary in the normalised Brownian scale ``w(t) = z √t``.

    Go (for the no-go side: ``−z``) when ``w(t) ≥ level = w_a + q √(1 − t_a)``, i.e.
    ``z ≥ level / √t``; see the module docstring, *Re-plans*. The original plan is
    ``Design.initial(γ)``; each re-plan gives a new one through :func:`replan_design`.
    """

    q: float
    t_anchor: float = 0.0
    w_anchor: float = 0.0

    @classmethod
    def initial(cls, confidence: float) -> Design:
        return cls(q=_critical(confidence))

    @property
    def level(self) -> float:
        return self.w_anchor + self.q * sqrt(max(1.0 - self.t_anchor, 0.0))

    def required_z(self, fraction: float) -> float:
        """``b = level / √t`` (``inf`` at ``t = 0``; ``t`` capped at 1: the budget is final)."""
        if fraction <= 0:
            return float("inf")
        if self.q == float("inf"):
            return float("inf")
        return self.level / sqrt(min(fraction, 1.0))

    def conditional_error(self, *, fraction: float, z: float) -> float:
        """``A``: the chance under the null of a crossing from ``(t, z)`` before ``t = 1``."""
        t = min(max(fraction, 0.0), 1.0)
        w = z * sqrt(t)
        if self.q == float("inf"):
            return 0.0
        if w >= self.level:
            return 1.0
        if t >= 1.0:
            return 0.0
        return 2.0 * (1.0 - NormalDist().cdf((self.level - w) / sqrt(1.0 - t)))

    def to_list(self) -> list[float]:
        return [self.q, self.t_anchor, self.w_anchor]

    @classmethod
    def from_list(cls, v: list[float]) -> Design:
        return cls(q=float(v[0]), t_anchor=float(v[1]), w_anchor=float(v[2]))


def replan_design(
    design: Design,
    *,
    fraction: float,
    z: float,
    old_budget: int,
    new_budget: int,
    old_confidence: float,
    new_confidence: float,
    labels: int | None = None,
) -> Design:
    """The design after a re-plan that keeps the conditional wrong-go probability.

    ``fraction`` and ``z`` are where the verdict stands now under the old plan (``z`` at the
    margin in force after the re-plan). Module docstring, *Re-plans*, for the derivation.

    ``labels``: graded responses now. When they reach the new budget the queue is closed
    and no information is left to spend, whatever the fraction says: an undecided verdict
    is frozen. (With a candidate's own fraction, ``t · N/N'`` stays below 1 when its two
    arms are graded unevenly; the boundary then sat within the Monte Carlo noise of the
    current ``z`` on both sides, and the refit the re-plan triggers, on the same grades,
    decided the verdict by that noise: a go or even a no-go at ``z`` ≈ 2.2 in
    ``bench/adversarial.py``, ``game_lower_budget``.)
    """
    _check_confidence(old_confidence)
    _check_confidence(new_confidence)
    if old_budget < 1 or new_budget < 1:
        raise ValueError("label budgets must be at least 1")
    a = design.conditional_error(fraction=fraction, z=z)
    a = min(1.0, a * (1.0 - new_confidence) / (1.0 - old_confidence))
    t_new = min(max(fraction, 0.0), 1.0) * old_budget / new_budget
    t_new = min(t_new, 1.0)
    w_new = z * sqrt(t_new)
    if a >= 1.0:  # already past the boundary: the go stands
        return Design(q=0.0, t_anchor=t_new, w_anchor=w_new)
    closed = labels is not None and labels >= new_budget
    if a <= 0.0 or t_new >= 1.0 or closed:  # nothing to spend, or no information to spend it on
        return Design(q=float("inf"), t_anchor=t_new, w_anchor=w_new)
    return Design(q=NormalDist().inv_cdf(1.0 - a / 2.0), t_anchor=t_new, w_anchor=w_new)


def replan_cell(
    go: Design,
    nogo: Design,
    *,
    cell: Mapping[str, Any] | None,
    fit_budget: int | None,
    budget: int,
    new_budget: int,
    confidence: float,
    new_confidence: float,
    new_margin: float,
    fallback_fraction: float,
    labels: int | None = None,
) -> tuple[Design, Design, dict[str, float]]:
    """New (go, no-go) designs of one (candidate, dimension) at a re-plan, and what was spent.

    ``cell`` is the verdict of the latest fit as a summary stores it (``mean``, ``sd`` or the
    95% ``lower``/``upper``, ``fraction`` of the budget ``fit_budget`` it ran under). Its
    fraction, rescaled to the current ``budget``, and ``z = (mean + δ') / sd`` at the new
    margin (corrected for the stored ``skew``, :func:`skew_adjusted_z`) anchor the new
    boundary (module docstring, *Re-plans*). Without a fit no posterior was ever shown, so
    the re-plan starts from ``z = 0`` at ``fallback_fraction`` (the graded counts'
    :func:`information_fraction`). ``labels`` (graded responses now) freezes the verdict
    when the new budget is already reached (:func:`replan_design`). Used by
    :func:`calibration.replans.replan` (the app) and :func:`calibration.bayes.replay.run_loop`.
    """
    sd = (cell or {}).get("sd")
    if cell and not sd and cell.get("upper") is not None:
        sd = (cell["upper"] - cell["lower"]) / 3.92  # a summary without sd
    if cell and cell.get("fraction") is not None and sd:
        # The fit's fraction is of the budget it ran under.
        t = float(cell["fraction"]) * (fit_budget or budget)
        t = min(t / budget, 1.0)
        z = (float(cell["mean"]) + new_margin) / float(sd)
        z = float(skew_adjusted_z(z, float(cell.get("skew") or 0.0)))
    else:
        t, z = fallback_fraction, 0.0
    new_go, new_nogo = (
        replan_design(
            side,
            z=sign * z,
            fraction=t,
            old_budget=budget,
            new_budget=new_budget,
            old_confidence=confidence,
            new_confidence=new_confidence,
            labels=labels,
        )
        for side, sign in ((go, 1.0), (nogo, -1.0))
    )
    spent = {
        "go": go.conditional_error(fraction=t, z=z),
        "no-go": nogo.conditional_error(fraction=t, z=-z),
        "fraction": t,
        "z": z,
    }
    return new_go, new_nogo, spent


#: Largest skewness magnitude :func:`skew_adjusted_z` takes from draws.
SKEW_CLIP = 1.0


def skew_adjusted_z(z: ArrayLike, skew: ArrayLike) -> NDArray[np.float64]:
    """``z`` corrected for the posterior's skewness, only ever towards zero.

    ``z = (E[Δ] + δ) / sd(Δ)`` (the normal reading) and ``skew`` the skewness of the draws
    of ``Δ``; returns the probit of the Cornish–Fisher tail beyond the margin where that is
    nearer zero than ``z``, else ``z`` (module docstring, *The skew of the posterior*).
    Infinite and NaN ``z`` pass through. Broadcasts.
    """
    zz = np.asarray(z, dtype=np.float64)
    g = np.clip(np.nan_to_num(np.asarray(skew, dtype=np.float64)), -SKEW_CLIP, SKEW_CLIP) / 6.0
    g, zz = np.broadcast_arrays(g, zz)
    x = -zz
    finite = np.isfinite(zz)
    disc = 1.0 + 4.0 * g * (g + np.where(finite, x, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        # The root of g u² + u − (g + x) = 0 that tends to x as g → 0, written so that it
        # stays exact at g = 0 and accurate near it: u = 2(g + x) / (1 + √disc).
        u = 2.0 * (g + x) / (1.0 + np.sqrt(np.where(disc > 0, disc, np.nan)))
    adjusted = np.where(~finite | ~(disc > 0), zz, -u)
    # Towards zero and no further: near z = 0 (no verdict there) the root may cross it.
    adjusted = np.where(adjusted * zz < 0, 0.0, adjusted)
    out = np.where(np.abs(adjusted) < np.abs(zz), adjusted, zz)
    return np.asarray(out, dtype=np.float64)


def sample_skewness(draws: ArrayLike, weights: ArrayLike | None = None) -> NDArray[np.float64]:
    """Skewness of draws along axis 0, optionally with normalised weights ``(S,)``.

    ``0`` where the draws do not vary.
    """
    d = np.asarray(draws, dtype=np.float64)
    if weights is None:
        u = np.full(d.shape[0], 1.0 / d.shape[0])
    else:
        u = np.asarray(weights, dtype=np.float64)
    mean = np.tensordot(u, d, axes=1)
    c = d - mean
    m2 = np.tensordot(u, c * c, axes=1)
    m3 = np.tensordot(u, c * c * c, axes=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(m2 > 0, m3 / np.power(np.where(m2 > 0, m2, 1.0), 1.5), 0.0)
    return np.asarray(g, dtype=np.float64)


def standardised_distance(draws: ArrayLike, *, margin: float) -> float:
    """``z``: ``(E[Δ] + δ) / sd(Δ)`` from draws, corrected for their skewness towards zero.

    :func:`skew_adjusted_z` (module docstring, *The skew of the posterior*); ``±inf`` when
    the draws do not vary.
    """
    d = np.asarray(draws, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("no draws")
    num = float(d.mean()) + margin
    sd = float(d.std())
    if sd > 0:
        return float(skew_adjusted_z(num / sd, sample_skewness(d)))
    return float("inf") if num > 0 else (float("-inf") if num < 0 else 0.0)


def sequential_sides(
    z: ArrayLike, required: float, required_nogo: float | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The sequential rule on an array of ``z``: the (go, no-go) masks.

    Go where ``z ≥ b``, no-go where ``z ≤ −b`` and not go (module docstring); a NaN ``z``
    is neither. ``required_nogo``: the no-go side's own boundary after a re-plan (default
    ``b``). :func:`sequential_verdict` is the same rule for one ``z``; the selector's open
    verdicts (:func:`calibration.bayes.select.verdicts`) and the dashboard's forecast
    (:func:`calibration.dashboards.forecast_labels`) apply it to many.
    """
    zz = np.asarray(z, dtype=np.float64)
    go = zz >= required
    nogo = ~go & (zz <= -(required if required_nogo is None else required_nogo))
    return go, nogo


def sequential_verdict(z: float, required: float, required_nogo: float | None = None) -> Verdict:
    """The sequential rule: go when ``z ≥ b``, no-go when ``z ≤ −b`` (module docstring).

    ``required_nogo``: the no-go side's own boundary after a re-plan (default ``b``).
    """
    go, nogo = sequential_sides(z, required, required_nogo)
    if go:
        return "go"
    if nogo:
        return "no-go"
    return "undecided"


@dataclass(frozen=True)
class DeltaSummary:
    """Posterior summary of one ``Δ``: mean, 95% equal-tailed interval, probabilities.

    ``z`` is the standardised distance to the margin; ``required_z`` the boundary ``b_n`` of
    the sequential rule when it decided the verdict (None: the one-look rule did),
    ``required_p = Φ(b_n)`` the probability it asks for now, at information fraction
    ``fraction``; ``sd`` the posterior standard deviation of ``Δ`` and ``skew`` the
    skewness of its draws (``z`` is corrected for it, :func:`skew_adjusted_z`).
    """

    mean: float
    lower: float
    upper: float
    p_noninferior: float  # P(Δ > −δ)
    p_inferior: float  # P(Δ < −δ)
    verdict: Verdict
    z: float = 0.0
    required_z: float | None = None
    required_p: float | None = None
    fraction: float | None = None
    sd: float = 0.0
    required_z_nogo: float | None = None
    skew: float = 0.0


def strictest_open_boundary(cells: Iterable[Mapping[str, Any]]) -> float | None:
    """The largest boundary (go or no-go side) over the cells whose verdict is still open.

    ``cells`` are per-(candidate, dimension) rows carrying ``verdict``, ``fraction`` and
    ``required_z`` (and ``required_z_nogo`` after a re-plan), as the fit summary and the
    replay record hold them. ``inf`` when an open cell has no boundary yet (stored as None);
    None when no cell is open or the rows predate per-candidate boundaries. The selector
    takes one boundary: the strictest, so that a verdict shown open never looks settled to it
    (the study-wide ``n/N`` is laxer than a candidate's own fraction).
    """
    open_cells = [c for c in cells if "fraction" in c and c.get("verdict") not in ("go", "no-go")]
    if not open_cells:
        return None
    values = [c.get(k) for c in open_cells for k in ("required_z", "required_z_nogo") if k in c]
    if any(v is None for v in values):
        return float("inf")
    return max(float(v) for v in values if v is not None)


def selector_boundary(
    cells: Iterable[Mapping[str, Any]], *, labels: int, budget: int, confidence: float
) -> float:
    """The one boundary the selector settles verdicts by after a fit.

    The strictest over the verdicts left open (:func:`strictest_open_boundary`), else the
    study-wide ``n/N`` one (:func:`required_z` at ``labels`` graded responses). Used by
    :func:`calibration.selection.selector_for` (the app) and the replay's loop.
    """
    bound = strictest_open_boundary(cells)
    return bound if bound is not None else required_z(labels, budget, confidence)


def summarise_delta(
    draws: ArrayLike,
    *,
    margin: float,
    confidence: float,
    labels: int | None = None,
    budget: int | None = None,
    fraction: float | None = None,
    design: tuple[Design, Design] | None = None,
) -> DeltaSummary:
    """Summarise ``Δ`` draws against the margin ``δ ≥ 0``.

    With ``labels`` and ``budget`` (fraction ``n/N``), or an information ``fraction``
    (:func:`information_fraction`), the verdict follows the sequential rule (module
    docstring), which every repeated look (the app, the replay) must use; ``design`` gives
    the (go, no-go) boundaries after re-plans (default: the original plan). Without any, the
    one-look rule ``P(Δ > −δ) ≥ γ``.
    """
    if (labels is None) != (budget is None):
        raise ValueError("give both labels and budget (sequential rule) or neither")
    if fraction is None and labels is not None and budget is not None:
        if budget < 1:
            raise ValueError(f"label budget must be at least 1, got {budget!r}")
        if labels < 0:
            raise ValueError(f"labels must be non-negative, got {labels!r}")
        fraction = labels / budget
    d = np.asarray(draws, dtype=np.float64).ravel()
    lo, hi = np.quantile(d, [0.025, 0.975])
    p_ok = float(np.mean(d > -margin))
    p_bad = float(np.mean(d < -margin))
    z = standardised_distance(d, margin=margin)
    b = b_nogo = p_req = None
    if fraction is None:
        v = verdict(p_ok, p_bad, confidence)
    else:
        go_side, nogo_side = design or (Design.initial(confidence), Design.initial(confidence))
        b, b_nogo = go_side.required_z(fraction), nogo_side.required_z(fraction)
        p_req = 1.0 if b == float("inf") else NormalDist().cdf(b)
        v = sequential_verdict(z, b, b_nogo)
    return DeltaSummary(
        mean=float(d.mean()),
        lower=float(lo),
        upper=float(hi),
        p_noninferior=p_ok,
        p_inferior=p_bad,
        verdict=v,
        z=z,
        required_z=b,
        required_p=p_req,
        fraction=fraction,
        sd=float(d.std()),
        required_z_nogo=b_nogo,
        skew=float(sample_skewness(d)),
    )


@dataclass(frozen=True)
class JudgeSummary:
    """How the judge behaves on each arm, and whether it treats the candidate differently.

    ``confusion_mean[arm][y][bin]`` is the posterior mean of ``P(bin | y)``. For a binary
    judge ``sensitivity``/``specificity`` hold ``{arm: [mean, lower, upper]}``.
    ``p_differs`` is ``P(max_y D_y > tol)`` where ``D_y`` is the difference between the
    candidate's and the incumbent's judge pass rate (at the pass cut ``J // 2``) among
    responses of human class ``y`` (:func:`calibration.bayes.curve.judge_pass_difference`);
    for a binary judge this is ``P(|se_c − se_inc| > tol or |sp_c − sp_inc| > tol)``.
    ``differs`` is the claim the app makes in words: the 95% interval of ``D_y`` for some
    class lies wholly above ``tol`` (:func:`calibration.bayes.curve.judge_difference`);
    ``difference`` holds those intervals (``{"fail"|"pass": {mean, lower, upper}}``). A
    probability mixes the size of a difference with the width of the posterior, so only
    the interval decides what is said.
    """

    confusion_mean: dict[str, list[list[float]]]
    sensitivity: dict[str, list[float]] | None
    specificity: dict[str, list[float]] | None
    p_differs: float
    tol: float
    differs: bool = False
    difference: dict[str, dict[str, float]] | None = None


def judge_summary(
    fit: DimensionFit, candidate: int, incumbent: int = 0, *, tol: float = JUDGE_DIFF_TOL
) -> JudgeSummary:
    """Judge behaviour per arm and ``P(judge differs between candidate and incumbent)``."""
    conf = np.asarray(fit.confusion, dtype=np.float64)  # (S, M, 2, J)
    diff_draws = judge_pass_difference(conf, candidate=candidate, incumbent=incumbent)
    p_differs = float(np.mean(diff_draws.max(axis=-1) > tol))
    mean = conf.mean(axis=0)
    arms = (fit.arms[incumbent], fit.arms[candidate])
    idx = (incumbent, candidate)
    se = sp = None
    if fit.n_bins == 2:

        def _ci(x: NDArray[np.float64]) -> list[float]:
            lo, hi = np.quantile(x, [0.025, 0.975])
            return [float(x.mean()), float(lo), float(hi)]

        se = {a: _ci(conf[:, i, 1, 1]) for a, i in zip(arms, idx, strict=True)}
        sp = {a: _ci(conf[:, i, 0, 0]) for a, i in zip(arms, idx, strict=True)}
    diff = judge_difference(conf, candidate=candidate, incumbent=incumbent, band=tol)
    return JudgeSummary(
        confusion_mean={a: mean[i].tolist() for a, i in zip(arms, idx, strict=True)},
        sensitivity=se,
        specificity=sp,
        p_differs=p_differs,
        tol=tol,
        differs=bool(diff["differs"]),
        difference={k: diff[k] for k in ("fail", "pass")},  # type: ignore[misc]
    )


def naive_judge_delta(
    counts: CellCounts,
    weights: ArrayLike,
    candidate: int,
    incumbent: int = 0,
    *,
    pass_bin: int | None = None,
) -> float:
    """``Δ`` you would report by trusting the judge: pass = judge bin ≥ ``pass_bin``.

    Uses every response (labelled or not); per-region judge pass rates are weighted by the
    traffic shares. ``pass_bin`` defaults to ``J // 2`` (bin 1 of a binary judge). Regions
    with no responses count as 0.
    """
    j = counts.n_bins
    cut = j // 2 if pass_bin is None else int(pass_bin)
    totals = counts.judge_bin_totals().astype(np.float64)  # (M, R, J)
    n = totals.sum(axis=-1)
    rate = np.divide(totals[..., cut:].sum(axis=-1), n, out=np.zeros_like(n), where=n > 0)
    w = _weights(weights, len(counts.regions))
    return float((rate[candidate] - rate[incumbent]) @ w)


@dataclass(frozen=True)
class DimensionSummary:
    """Decision summary of one (candidate, dimension)."""

    dimension: str
    candidate: str
    incumbent: str
    margin: float
    overall: DeltaSummary
    regions: dict[str, DeltaSummary]
    judge: JudgeSummary
    naive_judge_delta: float | None
    fit_ok: bool
    diagnostics: dict[str, float]
    audit: AuditEstimate | None = None
    audit_agrees: bool | None = None


@dataclass(frozen=True)
class CandidateSummary:
    candidate: str
    verdict: Verdict
    dimensions: dict[str, DimensionSummary] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySummary:
    incumbent: str
    confidence: float
    candidates: dict[str, CandidateSummary]

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts/lists/floats/strings, ready for ``json.dumps``."""
        return asdict(self)


def combine_verdicts(verdicts: list[Verdict], all_ok: bool) -> Verdict:
    """A candidate's verdict from its dimensions' (intersection-union, module docstring)."""
    return _combine(verdicts, all_ok)


def _combine(verdicts: list[Verdict], all_ok: bool) -> Verdict:
    if any(v == "no-go" for v in verdicts):
        return "no-go"
    if verdicts and all(v == "go" for v in verdicts):
        return "go" if all_ok else "undecided"
    if verdicts and all(v in ("go", HELD) for v in verdicts):
        return HELD if all_ok else "undecided"
    return "undecided"


def audited_verdict(
    model: Verdict, *, mean: float, sd: float, audit: AuditEstimate | None
) -> tuple[Verdict, bool | None]:
    """The verdict once the audit has been consulted, and whether the two agree.

    A go stands only if the audit's ``Δ`` agrees with the model's
    (:func:`calibration.bayes.audit.agree`); otherwise, or without an audit estimate (too
    few audit grades to check the go), it is **held**. Other verdicts are unchanged.
    """
    agrees = None if audit is None else agree(mean, sd, audit)
    if model == "go" and not agrees:
        return HELD, agrees
    return model, agrees


def summarise(
    fits: Mapping[str, DimensionFit],
    *,
    weights: ArrayLike,
    margins: Mapping[str, float] | float,
    confidence: float = 0.95,
    counts: Mapping[str, CellCounts] | None = None,
    incumbent: int = 0,
    judge_tol: float = JUDGE_DIFF_TOL,
    labels: int | None = None,
    budget: int | None = None,
    arm_labels: Mapping[str, int] | None = None,
    designs: Mapping[tuple[str, str], tuple[Design, Design]] | None = None,
    audits: Mapping[tuple[str, str], AuditEstimate | None] | None = None,
) -> StudySummary:
    """Verdicts and summaries for every candidate and dimension of a study.

    Parameters
    ----------
    fits
        ``{dimension: DimensionFit}``; all fits share arms and regions.
    weights
        ``(R,)`` traffic shares of the regions.
    margins
        Non-inferiority margin ``δ_d`` per dimension (or one for all), on the pass-rate
        scale (0.02 = two percentage points).
    confidence
        Required posterior probability ``γ``.
    counts
        Optional ``{dimension: CellCounts}`` to report the naive judge-only ``Δ``.
    incumbent
        Index of the incumbent arm (0 by convention).
    judge_tol
        Tolerance of :func:`judge_summary`.
    labels, budget
        Graded responses the fits saw and the study's label budget: verdicts then follow
        the sequential rule (module docstring). The app always passes both.
    arm_labels
        Graded responses per arm key: each candidate's boundary then uses its own
        information fraction (:func:`information_fraction`) instead of ``labels / budget``.
    designs
        ``{(candidate, dimension): (go, no-go)}`` boundaries after re-plans (default: the
        original plan); per-region verdicts always use the original plan's boundary.
    audits
        ``{(candidate, dimension): audit estimate or None}``: a go then needs the audit to
        agree (:func:`audited_verdict`). None (not an empty mapping) skips the check.
    """
    if not fits:
        raise ValueError("no fits to summarise")
    first = next(iter(fits.values()))
    arms = first.arms
    for name, fit in fits.items():
        if fit.arms != arms or fit.regions != first.regions:
            raise ValueError(f"fit {name!r} has different arms or regions")
    candidates: dict[str, CandidateSummary] = {}
    for c, cand in enumerate(arms):
        if c == incumbent:
            continue
        dims: dict[str, DimensionSummary] = {}
        fraction: float | None = None
        if budget is not None and arm_labels is not None:
            fraction = information_fraction(
                arm_labels.get(arms[incumbent], 0), arm_labels.get(cand, 0), budget
            )
        elif budget is not None and labels is not None:
            fraction = labels / budget
        for dim, fit in fits.items():
            margin = float(margins if isinstance(margins, int | float) else margins[dim])
            d = delta_draws(fit.theta, weights, c, incumbent)
            d_r = delta_draws_by_region(fit.theta, c, incumbent)
            naive = None
            if counts is not None and dim in counts:
                naive = naive_judge_delta(counts[dim], weights, c, incumbent)
            overall = summarise_delta(
                d,
                margin=margin,
                confidence=confidence,
                fraction=fraction,
                design=(designs or {}).get((cand, dim)),
            )
            audit = agrees = None
            if audits is not None:
                audit = audits.get((cand, dim))
                v, agrees = audited_verdict(
                    overall.verdict, mean=overall.mean, sd=overall.sd, audit=audit
                )
                overall = replace(overall, verdict=v)
            dims[dim] = DimensionSummary(
                dimension=dim,
                candidate=cand,
                incumbent=arms[incumbent],
                margin=margin,
                audit=audit,
                audit_agrees=agrees,
                overall=overall,
                regions={
                    reg: summarise_delta(
                        d_r[:, i], margin=margin, confidence=confidence, fraction=fraction
                    )
                    for i, reg in enumerate(fit.regions)
                },
                judge=judge_summary(fit, c, incumbent, tol=judge_tol),
                naive_judge_delta=naive,
                fit_ok=fit.ok,
                diagnostics=dict(fit.diagnostics),
            )
        cand_verdict = _combine(
            [s.overall.verdict for s in dims.values()], all(s.fit_ok for s in dims.values())
        )
        candidates[cand] = CandidateSummary(candidate=cand, verdict=cand_verdict, dimensions=dims)
    return StudySummary(incumbent=arms[incumbent], confidence=confidence, candidates=candidates)
