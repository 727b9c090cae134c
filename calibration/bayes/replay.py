r"""Replay a study on data whose human labels are known: the selection loop, in-process.

The human labels of a flat table are hidden; the loop asks for them one at a time with the
app's own rule (:mod:`calibration.bayes.select` on real :class:`~calibration.bayes.fit.Fitter`
draws, refitting every ``batch`` labels and reweighting the draws in between), the hidden
labels answer, and after every fit it records the labels used, ``Δ`` (mean, 95% interval,
verdict) per (candidate, dimension), the judge's difference between the two models, and an
audit: PPI++ on the picks drawn uniformly (:func:`audit_delta`). At the end it reports the
``Δ`` that *all* human labels give. No database: ``manage.py replay`` only parses
arguments (:mod:`calibration.management.commands.replay`), and the benchmarks call
:func:`run_loop` directly.

What a pick is
--------------
Exactly as in the app: before the first fit, uniform over the responses not yet graded
(policy ``uniform``, probability ``1/N_available``); after it, with ``policy="active"``,
:func:`~calibration.bayes.select.choose_cell` (exploration share uniform over responses, the
rest to the best cell) and a response drawn uniformly in the cell; with
``policy="uniform"``, uniform throughout. A grade answers every dimension the table has a
human label for. The draws are refitted every ``batch`` labels, and also early when the
reweighted draws' effective sample size falls below
:data:`~calibration.bayes.select.ESS_REFIT_FRACTION` of the draws (``refit_on_collapse``),
which is what the app's "refit needed" would trigger.

The audit and what the app shows
--------------------------------
As in the app's queue, before each pick, with probability ``audit_share`` (10% by
default) the pick is an *audit* pick drawn uniformly over all the responses
(:func:`run_loop`). Each fit's row carries the model's ``verdict`` (the sequential rule at
the candidate's own information fraction, under any re-plan's boundaries), the audit's
``Δ`` (:func:`audit_sample_estimates`: :mod:`calibration.bayes.audit` on the audit sample)
and ``audited_verdict``, the verdict the app shows
(:func:`calibration.bayes.decision.audited_verdict`: a go the audit does not confirm is
``held``). Past the budget the first fit at or past it keeps its verdicts, and a re-plan
moves the boundaries with :func:`calibration.bayes.decision.replan_cell`, as the app does.

PPI++ on the same labels
------------------------
For candidate ``c`` and dimension ``d``, each arm ``a ∈ {inc, c}`` is estimated on its own
with ``ppi_py.ppi_mean_ci(Y, Ŷ, Ŷ_all, alpha=0.05, w=…, w_unlabeled=…)`` where ``Y`` are the
arm's human pass/fail labels collected so far, ``Ŷ`` the judge's *raw* score on those
responses and ``Ŷ_all`` the judge score of every response of the arm (the labelled ones
included, the usual choice when the labelled set is a subsample of the pool). Weights:

* traffic: a response of region ``r`` in arm ``a`` carries ``ω = w_r / (N_{a,r}/N_a)`` so
  that the arm's pool is reweighted to the traffic shares (``ω = 1`` with one region);
* selection: a labelled response additionally carries ``1/p_t``, ``p_t`` the logged
  probability of the pick that brought it (inverse-probability weighting). ``ppi_py``
  rescales ``w`` to mean 1, so the rectifier term is the Hájek (ratio) estimator
  ``Σ ω_i (Y_i − λŶ_i)/p_i / Σ ω_i/p_i``; its variance is ppi_py's (with-replacement,
  Hansen–Hurwitz) approximation, which ignores that picks are without replacement and
  adaptive, so the interval is approximate under active selection.

``λ`` is ppi_py's power-tuned value (PPI++), per arm. The two arms are independent samples,
so ``Δ̂ = θ̂_c − θ̂_inc`` with standard error ``√(se_c² + se_inc²)``, each ``se`` read off its
95% interval as ``(hi − lo)/(2·1.96)``; the reported interval is ``Δ̂ ± 1.96·se``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibration.bayes.audit import AuditEstimate, Stratum
from calibration.bayes.audit import audit_delta as audit_sample_delta
from calibration.bayes.curve import judge_difference
from calibration.bayes.data import (
    JointCells,
    bin_scores,
    joint_cells_from_arrays,
    quantile_cuts,
)
from calibration.bayes.decision import (
    Design,
    audited_verdict,
    delta_draws,
    information_fraction,
    replan_cell,
    selector_boundary,
    summarise_delta,
)
from calibration.bayes.select import DimensionDraws, Selector, choose_cell
from calibration.bayes.summaries import is_settled

__all__ = [
    "BatchRecord",
    "LoopResult",
    "Population",
    "all_labels_delta",
    "audit_delta",
    "audit_sample_estimates",
    "human_only_delta",
    "load_table",
    "population_from_table",
    "ppi_delta",
    "replay_report",
    "run_loop",
]

Z95 = 1.959963984540054


@dataclass(frozen=True, eq=False)
class Population:
    """Every response of a replayed study, with its hidden human labels.

    Attributes
    ----------
    arms
        System names, index 0 the incumbent.
    regions
        Region names; ``traffic`` their shares (sum 1).
    dimensions
        Dimension names; ``margins`` their non-inferiority margins; ``n_bins`` the judge
        bins of each.
    arm, region
        ``(N,)`` indices.
    bins
        ``(N, D)`` judge bin per dimension (``-1``: no judge score on that dimension).
    truth
        ``(N, D)`` hidden human pass (1) / fail (0) (``-1``: no human label).
    score
        ``(N, D)`` raw judge score (NaN when missing), used by PPI++.
    cuts, items
        The judge cut points per dimension and the item id of each response (from a table).
    """

    arms: tuple[str, ...]
    regions: tuple[str, ...]
    traffic: NDArray[np.float64]
    dimensions: tuple[str, ...]
    margins: tuple[float, ...]
    n_bins: tuple[int, ...]
    arm: NDArray[np.int64] = field(repr=False)
    region: NDArray[np.int64] = field(repr=False)
    bins: NDArray[np.int64] = field(repr=False)
    truth: NDArray[np.int64] = field(repr=False)
    score: NDArray[np.float64] = field(repr=False)
    cuts: tuple[list[float], ...] = ()
    items: tuple[str, ...] = field(default=(), repr=False)

    @property
    def size(self) -> int:
        return int(self.arm.size)

    def cells(self, labelled: NDArray[np.bool_]) -> JointCells:
        """The model's counts when the responses ``labelled`` have been graded."""
        human = np.where(labelled[:, None] & (self.truth >= 0), self.truth, -1)
        return joint_cells_from_arrays(
            arms=self.arms,
            regions=self.regions,
            n_bins=self.n_bins,
            arm_idx=self.arm,
            region_idx=self.region,
            bins=self.bins,
            human=human,
        )

    @classmethod
    def from_simulated(cls, study: Any, *, margin: float = 0.02) -> Population:
        """One-dimension population from :class:`calibration.bayes.simulate.SimulatedStudy`."""
        return cls(
            arms=tuple(study.arms),
            regions=tuple(study.regions),
            traffic=np.asarray(study.weights, dtype=np.float64),
            dimensions=("sim",),
            margins=(float(margin),),
            n_bins=(2,),
            arm=np.asarray(study.arm_idx, dtype=np.int64),
            region=np.asarray(study.region_idx, dtype=np.int64),
            bins=np.asarray(study.judge_bin, dtype=np.int64)[:, None],
            truth=np.asarray(study.truth, dtype=np.int64)[:, None],
            score=np.asarray(study.judge_bin, dtype=np.float64)[:, None],
        )


# ---------------------------------------------------------------------------------------
# Reading a flat table


def load_table(path: str | Path) -> Any:
    """Read a flat CSV or CSV.GZ table (pandas DataFrame; compression from the suffix)."""
    import pandas as pd

    return pd.read_csv(path)


def population_from_table(
    table: Any,
    *,
    incumbent: str,
    candidates: Sequence[str],
    judge: str,
    pass_threshold: float,
    dimensions: Sequence[str] | None = None,
    judge_bins: int = 2,
    judge_threshold: float | None = None,
    margin: float = 0.02,
    traffic: dict[str, float] | None = None,
) -> Population:
    """Build a :class:`Population` from a flat table (format: docs/replay.md).

    Required columns: ``item_id, system, dimension, human_label, judge, judge_score``;
    optional ``region`` (default one region ``all``); other columns are ignored. One
    response is one ``item_id``; rows of other judges or systems are dropped.

    Parameters
    ----------
    pass_threshold
        ``human_label ≥ pass_threshold`` is a pass.
    judge_bins, judge_threshold
        Judge scores are cut into ``judge_bins`` quantile bins per dimension (over the
        replayed systems), or at ``judge_threshold`` into two bins (``score ≥ threshold`` is
        bin 1) when it is given.
    traffic
        Region shares; by default each region's share of the distinct prompts (or items).
    """
    required = {"item_id", "system", "dimension", "human_label", "judge", "judge_score"}
    missing = required - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks column(s) {sorted(missing)}")
    systems = [incumbent, *candidates]
    if len(set(systems)) != len(systems):
        raise ValueError("the incumbent and candidates must be different systems")
    df = table[(table["judge"] == judge) & table["system"].isin(systems)].copy()
    if df.empty:
        raise ValueError(f"no rows for judge {judge!r} and systems {systems}")
    for s in systems:
        if not (df["system"] == s).any():
            raise ValueError(f"no rows for system {s!r} with judge {judge!r}")
    dims = list(dimensions) if dimensions else sorted(df["dimension"].unique())
    for d in dims:
        if not (df["dimension"] == d).any():
            raise ValueError(f"no rows for dimension {d!r}")
    df = df[df["dimension"].isin(dims)]
    if "region" not in df.columns:
        df["region"] = "all"
    df["region"] = df["region"].fillna("all").astype(str)

    items = df.drop_duplicates("item_id")[["item_id", "system", "region"]]
    items = items.assign(arm=items["system"].map({s: i for i, s in enumerate(systems)}))
    items = items.sort_values(["arm", "item_id"], kind="stable").reset_index(drop=True)
    regions = sorted(items["region"].unique())
    item_index = {k: i for i, k in enumerate(items["item_id"])}
    n, n_dims = len(items), len(dims)

    score = np.full((n, n_dims), np.nan)
    human = np.full((n, n_dims), np.nan)
    first = df.drop_duplicates(["item_id", "dimension"])
    rows = first["item_id"].map(item_index).to_numpy()
    cols = first["dimension"].map({d: i for i, d in enumerate(dims)}).to_numpy()
    score[rows, cols] = first["judge_score"].to_numpy(dtype=np.float64)
    human[rows, cols] = first["human_label"].to_numpy(dtype=np.float64)

    bins = np.full((n, n_dims), -1, dtype=np.int64)
    n_bins, all_cuts = [], []
    for d in range(n_dims):
        ok = ~np.isnan(score[:, d])
        if judge_threshold is not None:
            cuts = np.array([float(judge_threshold)])
        else:
            cuts = quantile_cuts(score[ok, d], judge_bins)
        if cuts.size == 0:
            raise ValueError(f"dimension {dims[d]!r}: the judge gives a single value")
        bins[ok, d] = bin_scores(score[ok, d], cuts)
        n_bins.append(int(cuts.size + 1))
        all_cuts.append([float(c) for c in cuts])
    truth = np.where(np.isnan(human), -1, (human >= pass_threshold).astype(np.int64))

    if traffic is None:
        key = "prompt_id" if "prompt_id" in df.columns else "item_id"
        per_region = df.drop_duplicates(key).groupby("region")[key].nunique()
        shares = np.array([float(per_region.get(r, 0)) for r in regions])
    else:
        unknown = set(traffic) - set(regions)
        if unknown:
            raise ValueError(f"traffic given for unknown region(s) {sorted(unknown)}")
        shares = np.array([float(traffic.get(r, 0.0)) for r in regions])
    if shares.sum() <= 0:
        raise ValueError("traffic shares must not all be zero")

    return Population(
        arms=tuple(systems),
        regions=tuple(regions),
        traffic=shares / shares.sum(),
        dimensions=tuple(dims),
        margins=tuple(float(margin) for _ in dims),
        n_bins=tuple(n_bins),
        arm=items["arm"].to_numpy(dtype=np.int64),
        region=items["region"].map({r: i for i, r in enumerate(regions)}).to_numpy(np.int64),
        bins=bins,
        truth=truth.astype(np.int64),
        score=score,
        cuts=tuple(all_cuts),
        items=tuple(str(i) for i in items["item_id"]),
    )


# ---------------------------------------------------------------------------------------
# Reference and frequentist estimates


def all_labels_delta(pop: Population) -> NDArray[np.float64]:
    """``(C, D)`` ``Δ`` that every human label gives: ``Σ_r w_r (ȳ_{c,r} − ȳ_{inc,r})``.

    ``ȳ_{a,r}`` is the pass rate of the human-labelled responses of arm ``a`` in region
    ``r``; a region with no labels in an arm contributes with its share renormalised away.
    """
    m, r, n_dims = len(pop.arms), len(pop.regions), len(pop.dimensions)
    out = np.full((m - 1, n_dims), np.nan)
    for d in range(n_dims):
        ok = pop.truth[:, d] >= 0
        cell = pop.arm[ok] * r + pop.region[ok]
        n = np.bincount(cell, minlength=m * r).reshape(m, r).astype(np.float64)
        k = np.bincount(cell, weights=pop.truth[ok, d], minlength=m * r).reshape(m, r)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = k / n
        level = np.array(
            [
                np.nansum(rate[a] * pop.traffic) / pop.traffic[~np.isnan(rate[a])].sum()
                for a in range(m)
            ]
        )
        out[:, d] = level[1:] - level[0]
    return out


def _arm_weights(pop: Population, a: int, ok: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Traffic reweighting ``ω = w_r / (N_{a,r} / N_a)`` for the responses ``ok`` of arm a."""
    in_arm = ok & (pop.arm == a)
    share = np.bincount(pop.region[in_arm], minlength=len(pop.regions)).astype(np.float64)
    share /= max(share.sum(), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_region = np.where(share > 0, pop.traffic / share, 0.0)
    return np.asarray(per_region[pop.region], dtype=np.float64)


def _arm_ci(
    pop: Population,
    a: int,
    d: int,
    labelled: NDArray[np.int64],
    prob: NDArray[np.float64],
    *,
    lam: float | None,
) -> tuple[float, float] | None:
    """(estimate, standard error) of arm ``a``'s traffic-weighted pass rate on ``d``."""
    from ppi_py import ppi_mean_ci

    has_score = ~np.isnan(pop.score[:, d])
    omega = _arm_weights(pop, a, has_score)
    sel = (pop.arm[labelled] == a) & (pop.truth[labelled, d] >= 0) & has_score[labelled]
    idx, p = labelled[sel], prob[sel]
    if idx.size < 2:
        return None
    pool = np.flatnonzero(has_score & (pop.arm == a))
    y = pop.truth[idx, d].astype(np.float64)
    yhat = pop.score[idx, d]
    w = omega[idx] / p
    lo, hi = ppi_mean_ci(
        y,
        yhat,
        pop.score[pool, d],
        alpha=0.05,
        lam=lam,
        w=w,
        w_unlabeled=omega[pool],
    )
    lo, hi = float(np.ravel(lo)[0]), float(np.ravel(hi)[0])
    return (lo + hi) / 2.0, (hi - lo) / (2.0 * Z95)


def _delta_ci(
    pop: Population,
    c: int,
    d: int,
    labelled: Sequence[int],
    prob: Sequence[float],
    *,
    lam: float | None,
) -> dict[str, float] | None:
    lab = np.asarray(labelled, dtype=np.int64)
    pr = np.asarray(prob, dtype=np.float64)
    inc = _arm_ci(pop, 0, d, lab, pr, lam=lam)
    cand = _arm_ci(pop, c, d, lab, pr, lam=lam)
    if inc is None or cand is None:
        return None
    est = cand[0] - inc[0]
    se = float(np.hypot(cand[1], inc[1]))
    if not np.isfinite(se):
        return None
    return {"mean": est, "lower": est - Z95 * se, "upper": est + Z95 * se}


def ppi_delta(
    pop: Population, c: int, d: int, labelled: Sequence[int], prob: Sequence[float]
) -> dict[str, float] | None:
    """PPI++ estimate and 95% interval of ``Δ`` for candidate ``c`` (module docstring)."""
    return _delta_ci(pop, c, d, labelled, prob, lam=None)


def audit_delta(
    pop: Population, c: int, d: int, picks: Sequence[int], policies: Sequence[str]
) -> dict[str, float] | None:
    """The design-based check: PPI++ on the picks drawn uniformly, with equal weights.

    The picks of policy ``uniform`` (before the first fit), ``explore`` (the exploration
    share) and ``audit`` (the audit sample) were drawn uniformly, whatever the model said,
    so they are close to a simple random sample of the study (the actively chosen
    ones they exclude are a small part of a large population). PPI++ on them needs no
    model and no inverse-probability weights, which on greedy picks make it 3–4× wider
    than the model and useless as a check (module docstring, PPI++).
    """
    uniform = [
        i for i, p in zip(picks, policies, strict=True) if p in ("uniform", "explore", "audit")
    ]
    return _delta_ci(pop, c, d, uniform, [1.0] * len(uniform), lam=None)


def human_only_delta(
    pop: Population, c: int, d: int, labelled: Sequence[int], prob: Sequence[float]
) -> dict[str, float] | None:
    """The classical (human labels only) Wald interval with the same weights (``λ = 0``)."""
    return _delta_ci(pop, c, d, labelled, prob, lam=0.0)


# ---------------------------------------------------------------------------------------
# The audit sample, as the app estimates it


#: Draws an audit pick makes before it gives up and the usual pick follows (the queue's
#: ``annotate.grading.queue.MAX_REJECTIONS``).
AUDIT_DRAWS = 12


def audit_sample_estimates(
    pop: Population, audited: Sequence[int] | NDArray[np.int64]
) -> dict[tuple[int, int], AuditEstimate | None]:
    """``{(candidate, dimension): the audit's Δ or None}`` from the audited responses.

    What :func:`calibration.audit_data.audit_estimates` builds from the database, here from
    arrays: per (arm, region) stratum the audited responses' grades (pass 1 / fail 0: one
    grader) with their judge bins scaled to ``[0, 1]``, and the judge bins of every
    response; the estimate is :func:`calibration.bayes.audit.audit_delta` (PPI++ per
    stratum, post-stratified by traffic).
    """
    idx = np.unique(np.asarray(audited, dtype=np.int64))
    m_arms, n_reg = len(pop.arms), len(pop.regions)
    stratum = pop.arm * n_reg + pop.region
    out: dict[tuple[int, int], AuditEstimate | None] = {}
    for d in range(len(pop.dimensions)):
        scale = max(pop.n_bins[d] - 1, 1)
        ok = pop.bins[:, d] >= 0
        f = np.where(ok, pop.bins[:, d], 0).astype(np.float64) / scale
        n_all = np.bincount(stratum[ok], minlength=m_arms * n_reg)
        f_sum = np.bincount(stratum[ok], weights=f[ok], minlength=m_arms * n_reg)
        f_sq = np.bincount(stratum[ok], weights=f[ok] ** 2, minlength=m_arms * n_reg)
        sel = idx[(pop.bins[idx, d] >= 0) & (pop.truth[idx, d] >= 0)]
        strata = [
            [
                Stratum(
                    y=pop.truth[sel[stratum[sel] == k], d].astype(np.float64),
                    f=f[sel[stratum[sel] == k]],
                    f_sum=float(f_sum[k]),
                    f_sq_sum=float(f_sq[k]),
                    n_all=int(n_all[k]),
                )
                for k in range(a * n_reg, (a + 1) * n_reg)
            ]
            for a in range(m_arms)
        ]
        for c in range(1, m_arms):
            out[(c, d)] = audit_sample_delta(strata[c], strata[0], pop.traffic)
    return out


# ---------------------------------------------------------------------------------------
# The loop


@dataclass
class BatchRecord:
    """What one fit concluded, after ``labels`` human labels, under the budget ``budget``."""

    labels: int
    deltas: list[dict[str, Any]]
    fit_seconds: float
    ess_before: list[float] | None
    reason: str  # "batch", "ess" (draws collapsed), "replan", "final"
    budget: int | None = None
    audited: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "budget": self.budget,
            "audited": self.audited,
            "reason": self.reason,
            "fit_seconds": round(self.fit_seconds, 3),
            "ess_before_refit": None
            if self.ess_before is None
            else [round(e, 1) for e in self.ess_before],
            "deltas": self.deltas,
        }


@dataclass
class LoopResult:
    """The whole replay: picks in order and one record per fit."""

    policy: str
    picks: list[int]
    probabilities: list[float]
    policies: list[str]
    batches: list[BatchRecord]
    stopped: str
    fits: dict[str, Any] | None = None  # last DimensionFit per dimension
    audited: list[int] = field(default_factory=list)  # the audit sample, in draw order
    budget: int | None = None  # the budget in force at the end (after any re-plan)

    @property
    def labels(self) -> int:
        return len(self.picks)


def _cells(pop: Population) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Unique ``(arm, region, bins…)`` rows and each response's cell index."""
    keys = np.column_stack([pop.arm, pop.region, pop.bins])
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    return uniq.astype(np.int64), inverse.ravel().astype(np.int64)


def _fit_all(
    pop: Population,
    labelled: NDArray[np.bool_],
    fitter: Any,
    *,
    seed: int,
    draws: int,
    tune: int,
    chains: int,
) -> dict[str, Any]:
    cells = pop.cells(labelled)
    return {
        name: fitter.fit(cells, d, seed=seed + d, draws=draws, tune=tune, chains=chains)
        for d, name in enumerate(pop.dimensions)
    }


Designs = dict[tuple[str, str], tuple[Design, Design]]


def _summaries(
    pop: Population,
    fits: dict[str, Any],
    *,
    confidence: float,
    picks: list[int],
    policies: list[str],
    with_ppi: bool,
    budget: int,
    designs: Designs | None = None,
    audits: dict[tuple[int, int], AuditEstimate | None] | None = None,
    final: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (candidate, dimension), as the app's summary decides it.

    ``verdict`` is the model's (the sequential rule at the candidate's own information
    fraction, under the re-plans' ``designs``); ``audited_verdict`` what the app shows once
    the audit sample is consulted (:func:`~calibration.bayes.decision.audited_verdict`: a go
    the audit does not confirm is ``held``; ``audits=None``, a study without an audit, skips
    the check). Past the budget the verdicts of ``final``, the first fit at or past it, are
    kept (``raw_verdict``: what this fit's draws alone say).
    """
    arm_labels = np.bincount(pop.arm[np.asarray(picks, dtype=np.int64)], minlength=len(pop.arms))
    out = []
    for d, name in enumerate(pop.dimensions):
        theta = np.asarray(fits[name].theta, dtype=np.float64)
        for c in range(1, len(pop.arms)):
            # Every fit is a look: the sequential rule at this candidate's own information
            # fraction, as the app's summary (decision.summarise with arm_labels).
            fraction = information_fraction(int(arm_labels[0]), int(arm_labels[c]), budget)
            key = (pop.arms[c], name)
            s = summarise_delta(
                delta_draws(theta, pop.traffic, c),
                margin=pop.margins[d],
                confidence=confidence,
                fraction=fraction,
                design=(designs or {}).get(key),
            )
            audit = None if audits is None else audits.get((c, d))
            shown, agrees = s.verdict, None
            if audits is not None:
                shown, agrees = audited_verdict(s.verdict, mean=s.mean, sd=s.sd, audit=audit)
            row: dict[str, Any] = {
                "candidate": pop.arms[c],
                "dimension": name,
                "mean": s.mean,
                "lower": s.lower,
                "upper": s.upper,
                "sd": s.sd,
                "skew": s.skew,
                "p_noninferior": s.p_noninferior,
                "z": s.z,
                "required_z": s.required_z,
                "required_z_nogo": s.required_z_nogo,
                "fraction": fraction,
                "verdict": s.verdict,
                "audited_verdict": shown,
                "held": shown == "held",
                "audit_sample": None if audit is None else audit.to_dict(),
                "audit_agrees": agrees,
                "fit_ok": bool(getattr(fits[name], "ok", True)),
                "judge": judge_difference(fits[name].confusion, candidate=c),
            }
            if final is not None and key in final:
                row["raw_verdict"], row["raw_audited_verdict"] = s.verdict, shown
                row.update(final[key])
                row["final"] = True
            if with_ppi:
                row["audit"] = audit_delta(pop, c, d, picks, policies)
            out.append(row)
    return out


def run_loop(
    pop: Population,
    *,
    policy: str,
    budget: int,
    batch: int,
    seed: int,
    fitter: Any,
    exploration_share: float = 0.15,
    audit_share: float = 0.10,
    confidence: float = 0.95,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    stop_when_settled: bool = True,
    refit_on_collapse: bool = True,
    with_ppi: bool = True,
    grade_to: int | None = None,
    next_fit: Callable[[int, BatchRecord | None], int] | None = None,
    stop: Callable[[BatchRecord], bool] | None = None,
    replan: Callable[[BatchRecord], int | None] | None = None,
    arm_of_pick: Callable[[int], int | None] | None = None,
    progress: Callable[[BatchRecord], None] | None = None,
    on_fit: Callable[[BatchRecord, dict[str, Any]], None] | None = None,
) -> LoopResult:
    """Run the selection loop with the hidden labels answering.

    Parameters
    ----------
    pop
        The population (hidden labels included).
    policy
        ``"active"`` (the app's rule) or ``"uniform"``.
    budget
        Human labels to spend at most (capped at the population size).
    batch
        Refit every ``batch`` labels (the first fit comes after ``batch`` uniform picks, as
        in the app, where there is no posterior before the first fit).
    seed
        Seeds the picks and (offset per fit) the sampler.
    fitter
        A :class:`~calibration.bayes.fit.Fitter` (keep one per process: it caches
        compiled models).
    audit_share
        As the app's queue (``annotate.grading.queue``, ``Study.audit_share``): before each pick,
        with this probability an *audit* pick (policy ``audit``, probability
        ``audit_share / N``) is drawn uniformly over *all* the responses; a draw that lands
        on a graded response puts it in the audit sample and the draw goes on (at most
        :data:`AUDIT_DRAWS` times, then the usual pick). Each fit's rows then carry the
        audit's ``Δ`` and the verdict the app shows (``audited_verdict``: a go held when
        the model and the audit disagree). ``0``: no audit and no hold, as in the app.
    stop_when_settled
        Stop at the first fit where every verdict the app shows is go or no-go (a held go
        is open: the app keeps asking).
    grade_to
        Go on grading past the budget up to this many labels (the budget's verdicts stay:
        the first fit at or past the budget is final, as in
        :func:`calibration.services.build_summary`).
    next_fit, stop
        Hooks for the benchmarks: the label count of the next fit given the current one and
        the last record, and an extra stopping rule checked after each fit.
    replan
        Called after each fit; a label budget it returns (other than the current one) is a
        re-plan as the app makes it (:func:`calibration.replans.replan`: each verdict's
        boundary from :func:`~calibration.bayes.decision.replan_cell` at this fit), then a
        refit under the new plan (the app's fit on a plan change).
    arm_of_pick
        The arm the ``k``-th non-audit pick must come from (None: any), for the scenarios
        where a lead diverts grades between candidates.
    progress, on_fit
        Called with each record (``on_fit``: and the fits it summarises).
    """
    if policy not in ("active", "uniform"):
        raise ValueError("policy must be 'active' or 'uniform'")
    if batch < 1:
        raise ValueError("batch must be positive")
    if not 0 <= audit_share < 1:
        raise ValueError("audit_share must be in [0, 1)")
    rng = np.random.default_rng(seed)
    budget = min(int(budget), pop.size)

    def limit_of(b: int) -> int:
        return min(b if grade_to is None else max(b, int(grade_to)), pop.size)

    limit = limit_of(budget)
    keys, cell_of = _cells(pop)
    avail_count = np.bincount(cell_of, minlength=len(keys)).astype(np.int64)
    available = np.ones(pop.size, dtype=bool)
    picks: list[int] = []
    probs: list[float] = []
    policies: list[str] = []
    audited: list[int] = []
    in_audit = np.zeros(pop.size, dtype=bool)
    batches: list[BatchRecord] = []
    selector: Selector | None = None
    columns = keys[:, 2:]  # each cell's column in the draws' tables, per dimension
    fits: dict[str, Any] | None = None
    designs: Designs | None = None
    final: dict[tuple[str, str], dict[str, Any]] | None = None
    fit_at = batch if next_fit is None else max(1, next_fit(0, None))
    stopped = "budget"

    def refit(reason: str) -> BatchRecord:
        nonlocal selector, fits, columns, final
        labelled = np.zeros(pop.size, dtype=bool)
        labelled[picks] = True
        ess = None if selector is None else selector.effective_sample_sizes()
        t0 = time.perf_counter()
        fits = _fit_all(
            pop,
            labelled,
            fitter,
            seed=(seed * 7919 + 31 * len(batches)) % (2**31),
            draws=draws,
            tune=tune,
            chains=chains,
        )
        seconds = time.perf_counter() - t0
        record = BatchRecord(
            labels=len(picks),
            deltas=_summaries(
                pop,
                fits,
                confidence=confidence,
                picks=picks,
                policies=policies,
                with_ppi=with_ppi,
                budget=budget,
                designs=designs,
                audits=audit_sample_estimates(pop, audited) if audit_share > 0 else None,
                final=final,
            ),
            fit_seconds=seconds,
            ess_before=ess,
            reason=reason,
            budget=budget,
            audited=len(audited),
        )
        if final is None and len(picks) >= budget:
            # The first fit at or past the budget: its verdicts are final (this plan).
            for r in record.deltas:
                r["final"] = True
            final = {
                (r["candidate"], r["dimension"]): {
                    k: r[k] for k in ("verdict", "audited_verdict", "held")
                }
                for r in record.deltas
            }
        batches.append(record)
        if progress is not None:
            progress(record)
        if on_fit is not None:
            on_fit(record, fits)
        if policy == "active":
            columns = np.stack(
                [fits[name].columns(keys[:, 2:], d) for d, name in enumerate(pop.dimensions)],
                axis=1,
            )
            selector = Selector(
                dimensions=[
                    DimensionDraws.from_fit(fits[name], margin=pop.margins[d])
                    for d, name in enumerate(pop.dimensions)
                ],
                traffic=pop.traffic,
                confidence=confidence,
                # Settled for the selector means settled by the rule the verdicts follow,
                # as in the app: the strictest boundary of the verdicts this fit left open.
                required_z=selector_boundary(
                    record.deltas, labels=len(picks), budget=budget, confidence=confidence
                ),
            )
        return record

    def replanned(record: BatchRecord) -> BatchRecord:
        """Apply a re-plan the hook asks for at ``record`` (if any); the record in force."""
        nonlocal budget, limit, designs, final
        if replan is None:
            return record
        new = replan(record)
        if new is None or int(new) == budget:
            return record
        new = min(int(new), pop.size)
        old = designs or {}
        initial = (Design.initial(confidence), Design.initial(confidence))
        fresh: Designs = {}
        for r in record.deltas:
            key = (r["candidate"], r["dimension"])
            go, nogo, _ = replan_cell(
                *old.get(key, initial),
                cell=r,
                fit_budget=record.budget,
                budget=budget,
                new_budget=new,
                confidence=confidence,
                new_confidence=confidence,
                new_margin=pop.margins[pop.dimensions.index(r["dimension"])],
                fallback_fraction=float(r["fraction"]),
                labels=len(picks),
            )
            fresh[key] = (go, nogo)
        designs, budget, final = fresh, new, None
        limit = limit_of(budget)
        return refit("replan")

    def settled(record: BatchRecord) -> bool:
        return all(is_settled(r["audited_verdict"]) for r in record.deltas)

    def audit_pick() -> int | None:
        for _ in range(AUDIT_DRAWS):
            j = int(rng.integers(pop.size))
            if not in_audit[j]:
                in_audit[j] = True
                audited.append(j)
            if available[j]:
                return j
        return None

    while len(picks) < limit:
        n_avail = int(avail_count.sum())
        if n_avail == 0:
            stopped = "exhausted"
            break
        found = audit_pick() if audit_share > 0 and rng.random() < audit_share else None
        if found is not None:
            idx, prob, pol = found, audit_share / pop.size, "audit"
        else:
            arm = None if arm_of_pick is None else arm_of_pick(len(picks))
            allowed = available if arm is None else available & (pop.arm == arm)
            counts = avail_count if arm is None else np.where(keys[:, 0] == arm, avail_count, 0)
            if not allowed.any():  # nothing left on that arm: any arm
                allowed, counts = available, avail_count
            if selector is None:
                pool = np.flatnonzero(allowed)
                idx = int(pool[rng.integers(pool.size)])
                prob, pol = 1.0 / pool.size, "uniform"
            else:
                scores = selector.scores(arm=keys[:, 0], region=keys[:, 1], bins=columns)
                choice = choose_cell(scores, counts, exploration_share, rng)
                inside = np.flatnonzero(available & (cell_of == choice.cell))
                idx = int(inside[rng.integers(inside.size)])
                prob, pol = choice.probability, choice.policy
        picks.append(idx)
        probs.append(prob)
        policies.append(pol)
        available[idx] = False
        avail_count[cell_of[idx]] -= 1
        if selector is not None:
            selector.observe(
                arm=[pop.arm[idx]],
                region=[pop.region[idx]],
                bins=columns[cell_of[idx]][None, :],
                y=pop.truth[idx][None, :],
            )

        due = len(picks) >= fit_at
        collapsed = refit_on_collapse and selector is not None and selector.needs_refit
        if (due or collapsed) and len(picks) < limit:
            record = replanned(refit("batch" if due else "ess"))
            fit_at = (
                len(picks) + batch
                if next_fit is None
                else max(len(picks) + 1, next_fit(len(picks), record))
            )
            if stop_when_settled and settled(record):
                stopped = "settled"
                break
            if stop is not None and stop(record):
                stopped = "stop"
                break

    if not batches or batches[-1].labels != len(picks):
        record = refit("final")
        if stop_when_settled and settled(record):
            stopped = "settled" if stopped == "budget" else stopped
    return LoopResult(
        policy=policy,
        picks=picks,
        probabilities=probs,
        policies=policies,
        batches=batches,
        stopped=stopped,
        fits=fits,
        audited=audited,
        budget=budget,
    )


def replay_report(
    pop: Population, result: LoopResult, *, settings: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document ``manage.py replay --out`` writes (format: docs/replay.md)."""
    truth = all_labels_delta(pop)
    final = result.batches[-1]
    final_rows = []
    for row in final.deltas:
        c = pop.arms.index(row["candidate"])
        d = pop.dimensions.index(row["dimension"])
        t = float(truth[c - 1, d])
        audit = row.get("audit")
        final_rows.append(
            {
                "candidate": row["candidate"],
                "dimension": row["dimension"],
                "all_labels_delta": t,
                "model": {k: row[k] for k in ("mean", "lower", "upper", "verdict")},
                # What the app shows: a go the audit sample does not confirm is held.
                "shown_verdict": row["audited_verdict"],
                "audit_sample": row["audit_sample"],
                "model_covers": bool(row["lower"] <= t <= row["upper"]),
                "audit": audit,
                "audit_covers": None
                if audit is None
                else bool(audit["lower"] <= t <= audit["upper"]),
                "judge": row.get("judge"),
                "human_only": human_only_delta(pop, c, d, result.picks, result.probabilities),
            }
        )
    counts = {p: result.policies.count(p) for p in sorted(set(result.policies))}
    return {
        "settings": settings,
        "population": {
            "systems": list(pop.arms),
            "incumbent": pop.arms[0],
            "regions": dict(zip(pop.regions, pop.traffic.round(6).tolist(), strict=True)),
            "dimensions": list(pop.dimensions),
            "judge_cuts": dict(zip(pop.dimensions, pop.cuts, strict=False)),
            "responses": pop.size,
            "human_labels_hidden": int((pop.truth >= 0).any(axis=1).sum()),
        },
        "labels_used": result.labels,
        "stopped": result.stopped,
        "picks_by_policy": counts,
        "batches": [b.to_dict() for b in result.batches],
        "final": final_rows,
    }
