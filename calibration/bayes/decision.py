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

``z_n`` is used rather than the share of draws past the margin because ``b_n`` can ask
for tail probabilities (``Φ(6) ≈ 1 − 10^{-9}``) that a few thousand draws cannot resolve:
"every draw past the margin" only says ``z ≳ 3``. Without ``labels``/``budget``
(:func:`summarise_delta`, :func:`summarise`) the one-look rule above applies: right for a
single, pre-planned look, wrong for a dashboard.

Everything returned is plain dataclasses of floats/strings (``to_dict()`` is JSON-ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from math import sqrt
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration.bayes.curve import judge_difference
from calibration.bayes.data import CellCounts
from calibration.bayes.fit import DimensionFit

__all__ = [
    "CandidateSummary",
    "DeltaSummary",
    "DimensionSummary",
    "JudgeSummary",
    "StudySummary",
    "delta_draws",
    "delta_draws_by_region",
    "judge_summary",
    "naive_judge_delta",
    "required_probability",
    "required_z",
    "sequential_verdict",
    "standardised_distance",
    "summarise",
    "summarise_delta",
    "verdict",
]

Verdict = Literal["go", "no-go", "undecided"]

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
    if labels == 0:
        return float("inf")
    c = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    return c * sqrt(max(budget / labels, 1.0))


def required_probability(labels: int, budget: int, confidence: float) -> float:
    """``Φ(b_n)``: the posterior probability the sequential rule asks for (for selectors)."""
    b = required_z(labels, budget, confidence)
    return 1.0 if b == float("inf") else NormalDist().cdf(b)


def standardised_distance(draws: ArrayLike, *, margin: float) -> float:
    """``z = (E[Δ] + δ) / sd(Δ)`` from draws (``±inf`` when the draws do not vary)."""
    d = np.asarray(draws, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("no draws")
    num = float(d.mean()) + margin
    sd = float(d.std())
    if sd > 0:
        return num / sd
    return float("inf") if num > 0 else (float("-inf") if num < 0 else 0.0)


def sequential_verdict(z: float, required: float) -> Verdict:
    """The sequential rule: go when ``z ≥ b``, no-go when ``z ≤ −b`` (module docstring)."""
    if z >= required:
        return "go"
    if z <= -required:
        return "no-go"
    return "undecided"


@dataclass(frozen=True)
class DeltaSummary:
    """Posterior summary of one ``Δ``: mean, 95% equal-tailed interval, probabilities.

    ``z`` is the standardised distance to the margin; ``required_z`` the boundary ``b_n`` of
    the sequential rule when it decided the verdict (None: the one-look rule did).
    """

    mean: float
    lower: float
    upper: float
    p_noninferior: float  # P(Δ > −δ)
    p_inferior: float  # P(Δ < −δ)
    verdict: Verdict
    z: float = 0.0
    required_z: float | None = None


def summarise_delta(
    draws: ArrayLike,
    *,
    margin: float,
    confidence: float,
    labels: int | None = None,
    budget: int | None = None,
) -> DeltaSummary:
    """Summarise ``Δ`` draws against the margin ``δ ≥ 0``.

    With ``labels`` and ``budget`` the verdict follows the sequential rule (module
    docstring), which every repeated look (the app, the replay) must use; without them the
    one-look rule ``P(Δ > −δ) ≥ γ``.
    """
    if (labels is None) != (budget is None):
        raise ValueError("give both labels and budget (sequential rule) or neither")
    d = np.asarray(draws, dtype=np.float64).ravel()
    lo, hi = np.quantile(d, [0.025, 0.975])
    p_ok = float(np.mean(d > -margin))
    p_bad = float(np.mean(d < -margin))
    z = standardised_distance(d, margin=margin)
    if labels is None or budget is None:
        b = None
        v = verdict(p_ok, p_bad, confidence)
    else:
        b = required_z(labels, budget, confidence)
        v = sequential_verdict(z, b)
    return DeltaSummary(
        mean=float(d.mean()),
        lower=float(lo),
        upper=float(hi),
        p_noninferior=p_ok,
        p_inferior=p_bad,
        verdict=v,
        z=z,
        required_z=b,
    )


@dataclass(frozen=True)
class JudgeSummary:
    """How the judge behaves on each arm, and whether it treats the candidate differently.

    ``confusion_mean[arm][y][bin]`` is the posterior mean of ``P(bin | y)``. For a binary
    judge ``sensitivity``/``specificity`` hold ``{arm: [mean, lower, upper]}``.
    ``p_differs`` is ``P(max_y TV(π_c[y], π_inc[y]) > tol)`` where ``TV`` is the total
    variation distance between the candidate's and the incumbent's confusion rows; for a
    binary judge this is exactly ``P(|se_c − se_inc| > tol or |sp_c − sp_inc| > tol)``.
    ``differs`` is the claim the app makes in words: the 95% interval of ``TV`` for some
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
    tv = 0.5 * np.abs(conf[:, candidate] - conf[:, incumbent]).sum(axis=-1)  # (S, 2)
    p_differs = float(np.mean(tv.max(axis=-1) > tol))
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


def _combine(verdicts: list[Verdict], all_ok: bool) -> Verdict:
    if any(v == "no-go" for v in verdicts):
        return "no-go"
    if verdicts and all(v == "go" for v in verdicts):
        return "go" if all_ok else "undecided"
    return "undecided"


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
        for dim, fit in fits.items():
            margin = float(margins if isinstance(margins, int | float) else margins[dim])
            d = delta_draws(fit.theta, weights, c, incumbent)
            d_r = delta_draws_by_region(fit.theta, c, incumbent)
            naive = None
            if counts is not None and dim in counts:
                naive = naive_judge_delta(counts[dim], weights, c, incumbent)
            dims[dim] = DimensionSummary(
                dimension=dim,
                candidate=cand,
                incumbent=arms[incumbent],
                margin=margin,
                overall=summarise_delta(
                    d, margin=margin, confidence=confidence, labels=labels, budget=budget
                ),
                regions={
                    reg: summarise_delta(
                        d_r[:, i],
                        margin=margin,
                        confidence=confidence,
                        labels=labels,
                        budget=budget,
                    )
                    for i, reg in enumerate(fit.regions)
                },
                judge=judge_summary(fit, c, incumbent, tol=judge_tol),
                naive_judge_delta=naive,
                fit_ok=fit.ok,
                diagnostics=dict(fit.diagnostics),
            )
        overall = _combine(
            [s.overall.verdict for s in dims.values()], all(s.fit_ok for s in dims.values())
        )
        candidates[cand] = CandidateSummary(candidate=cand, verdict=overall, dimensions=dims)
    return StudySummary(incumbent=arms[incumbent], confidence=confidence, candidates=candidates)
