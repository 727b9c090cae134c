r"""View models of the lead's dashboards: plain dicts and arrays out of a fit and the database.

Views render these; ``charts.py`` draws from the arrays; ``report.py`` reuses them for the
offline report. Nothing here renders HTML.

* :func:`decision_matrix` — candidates × dimensions verdicts from ``Fit.summary`` (cheap:
  no draws), the overall verdicts and a recommendation in plain words.
* :func:`fit_health` — diagnostics per dimension with what failed, in words.
* :func:`fit_advice` — when they failed, whether more grades will likely cure it.
* :func:`label_progress` — labels used against the budget, per arm × region and per
  dimension, annotators active in the last ten minutes (aggregate SQL).
* :func:`pair_data` — everything about one candidate against the incumbent: Δ draws per
  dimension, per-region summaries, the interval's history over fits, the judge's behaviour
  per arm, the naive judge-only Δ and a forecast of the labels still needed.
* :func:`settle_forecast` — the forecast itself (pure numpy; method below).
* :func:`annotator_stats` — agreement on the overlap and each annotator's pace.

Forecast method (approximate, and said so on the page)
-------------------------------------------------------
For an undecided cell with posterior draws ``Δ_s`` (mean ``μ₀``, variance ``v₀``), the
forecast is the chance, under today's posterior, that the sequential rule settles the
cell at one of the looks left in the budget (the posterior predictive probability):

1. *Linear information*: each further graded response adds a fixed precision ``λ`` to Δ,
   so after ``k`` more grades the precision is ``1/v₀ + λk``. ``λ`` is the least-squares
   slope of the posterior precision ``1/sd²`` against ``n_labels`` over the study's fit
   history (``sd`` from each fit's 95% interval, ``(upper − lower) / 3.92``) when at least
   three fits with different label counts give a positive slope: that measures what grades
   have been worth here, active selection included. Otherwise ``λ = (1/v₀)/n``.
2. *The truth from the posterior, the path by simulation*: each simulated future draws
   ``Δ_s``; with ``I`` the precision, the score ``S = (μ + δ)·I`` moves as a Brownian
   motion with drift ``Δ_s + δ`` in ``I`` (a normal posterior on a flat prior), from today's
   ``(μ₀ + δ)/v₀``. It is looked at every ``refit_every`` grades up to the budget, as the
   app refits, and at each look ``z = S/√I`` is read by the rule the verdicts follow
   (:func:`calibration.bayes.decision.sequential_sides`) at the candidate's information
   fraction, grown in proportion to the grades, and the boundary levels in force
   (:func:`boundary_levels`: a re-plan's boundary included). The first look that settles
   counts, as the app's first settled verdict does.

``p_within`` is the share of simulated futures settled by the budget; ``median`` and
``p80`` the further grades by which half and 80% have. It comes true as often as it says
only over studies whose true Δs spread as widely as the flat prior allows (measured: Δ
spread ±8 margins); where true Δs lie within a margin or two of the margin it promises
too much, since for one study it cannot know whether Δ sits on the margin, where far fewer
settle than the same data suggest elsewhere (``bench/forecast_calibration.py``,
docs/statistics.md). So the pages give two figures:
``p_within``, and ``p_at_margin``, the same simulation with the truth fixed on the margin,
which is what a study whose Δ sits there should expect; ``close`` (the margin inside Δ's
80% interval) says to expect the lower one. Grades are counted study-wide
(one graded response carries every dimension), as ``Fit.n_labels`` counts them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

import numpy as np
from django.db.models import Count, Q, Sum
from django.utils import timezone
from numpy.typing import ArrayLike, NDArray

from annotate.models import Annotation, Arm, Assignment, Dimension, Label, Study
from calibration import agreement
from calibration.bayes.decision import Design, delta_draws, sequential_sides
from calibration.bayes.summaries import is_settled
from calibration.models import Fit

__all__ = [
    "ACTIVE_WINDOW",
    "annotator_stats",
    "audit_text",
    "bar",
    "held_reason",
    "decision_matrix",
    "fit_advice",
    "fit_health",
    "boundary_levels",
    "settle_forecast",
    "judge_comparison",
    "label_progress",
    "pair_data",
]

#: "Annotators active now": an assignment leased or an annotation made this recently.
ACTIVE_WINDOW = timedelta(minutes=10)
VERDICT_WORDS = {"go": "go", "no-go": "no-go", "undecided": "undecided"}


# ---------------------------------------------------------------------------------------
# The decision


def decision_matrix(fit: Fit) -> dict[str, Any]:
    """Verdict matrix from ``fit.summary`` (no draws): rows are candidates.

    Each cell: verdict, Δ mean and 95% interval, ``P(Δ > −δ)`` and the margin (shares:
    templates show points with the ``pts`` filter). Also the overall verdicts and
    :func:`recommendation`.
    """
    s = fit.summary
    dims = s.get("dimensions", [])
    rows = []
    for cand in s.get("candidates", []):
        by_dim = {d["dimension"]: d for d in cand["dimensions"]}
        cells: list[dict[str, Any] | None] = []
        for dim in dims:
            d = by_dim.get(dim["key"])
            if d is None:
                cells.append(None)
                continue
            cells.append(
                {
                    "dimension": dim["key"],
                    "title": dim["title"],
                    "verdict": d["verdict"],
                    "mean": d["mean"],
                    "lower": d["lower"],
                    "upper": d["upper"],
                    "p_noninferior": d["p_noninferior"],
                    "margin": d["margin"],
                    "bar": bar(d),
                    "held": held_reason(d),
                    "audit": audit_text(d),
                }
            )
        rows.append(
            {
                "arm": cand["arm"],
                "model_name": cand["model_name"],
                "verdict": cand["verdict"],
                "cells": cells,
                # Open = what the queue still grades for (calibration.bayes.summaries).
                "undecided": [c["title"] for c in cells if c and not is_settled(c["verdict"])],
                "no_go": [c["title"] for c in cells if c and c["verdict"] == "no-go"],
            }
        )
    incumbent = s.get("incumbent", {}).get("model_name", "the incumbent")
    confidence = float(s.get("confidence", 0.95))
    return {
        "incumbent": incumbent,
        "confidence": confidence,
        "dimensions": dims,
        "rows": rows,
        "recommendation": recommendation(
            rows, incumbent=incumbent, confidence=confidence, trustworthy=fit.trustworthy
        ),
    }


def bar(d: dict[str, Any]) -> str | None:
    """The probability the sequential rule asks for now, in words, from a summary cell.

    "needs 99.6% at 3% of the budget": ``Φ(b)`` (``required_p``) at this candidate's
    information fraction (``fraction``; calibration.bayes.decision). None for a summary
    written before these were stored.
    """
    if d.get("final"):
        return "final: the budget was reached"
    p, t = d.get("required_p"), d.get("fraction")
    if p is None or t is None:
        return None
    if t <= 0:
        return "no verdict until both models have grades"
    # Φ(b) is within 1e-16 of 1 for b > 8: past 99.99% the digits say nothing.
    need = f"{p:.1%}" if p < 0.9995 else (f"{p:.2%}" if p < 0.99995 else "more than 99.99%")
    where = "at the budget" if t >= 1.0 else f"at {max(t, 0.01):.0%} of the budget"
    return f"needs {need} {where}"


def held_reason(d: dict[str, Any]) -> str | None:
    """Why a go is held, in words (None unless the verdict is ``held``)."""
    if d.get("verdict") != "held":
        return None
    if d.get("audit") is None:
        return "held: too few audit grades to check the model's go"
    return "held: the model and the audit disagree"


def audit_text(d: dict[str, Any]) -> str | None:
    """The audit's Δ beside the model's, in words (None without an audit estimate)."""
    a = d.get("audit")
    if not a:
        return None
    agrees = d.get("audit_agrees")
    word = "agrees with" if agrees else "disagrees with"
    pooled = ", regions pooled in a thinly audited model" if a.get("method") == "pooled" else ""
    text = (
        f"Audit (uniform sample, {a['n']} grades{pooled}): Δ = {100 * a['mean']:+.1f} "
        f"[{100 * a['lower']:+.1f}, {100 * a['upper']:+.1f}] pts; it {word} the model."
    )
    return text.replace("-", "\u2212")  # the minus sign the pts filter uses


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def recommendation(
    rows: list[dict[str, Any]], *, incumbent: str, confidence: float, trustworthy: bool
) -> dict[str, str]:
    """What a lead should conclude, in plain words: ``{"level": verdict, "text": ...}``."""
    pct = f"{confidence:.0%}"
    if not trustworthy:
        return {
            "level": "undecided",
            "text": "Do not act on this fit: the sampler's diagnostics failed, so its "
            "probabilities cannot be trusted. Refit; if it fails again, tell whoever runs Baton.",
        }
    if not rows:
        return {"level": "undecided", "text": "No candidate in this fit."}
    go_ = [r["model_name"] for r in rows if r["verdict"] == "go"]
    undecided = [r for r in rows if r["verdict"] in ("undecided", "held")]
    held = [r["model_name"] for r in rows if r["verdict"] == "held"]
    if go_:
        text = (
            f"{_join(go_)} can replace {incumbent}: "
            f"{'it is' if len(go_) == 1 else 'each is'} no worse than {incumbent} by more than "
            f"the margin on every dimension, with at least {pct} probability."
        )
        return {"level": "go", "text": text}
    if undecided:
        parts = [
            f"{r['model_name']} on {_join(r['undecided'])}"
            for r in undecided
            if r["verdict"] == "undecided"
        ]
        text = f"Keep {incumbent} for now: no candidate is a go yet."
        if parts:
            text += f" Still undecided: {'; '.join(parts)}."
        if held:
            text += (
                f" Held: the model says {_join(held)} can replace {incumbent}, but the audit "
                "sample (graded uniformly, no model) does not confirm it; see the pair page."
            )
        return {"level": "held" if held else "undecided", "text": text}
    return {
        "level": "no-go",
        "text": f"Keep {incumbent}: every candidate is worse than it by more than the margin "
        f"on at least one dimension, with at least {pct} probability.",
    }


def fit_health(fit: Fit, dimension_titles: dict[str, str]) -> list[dict[str, Any]]:
    """Diagnostics per dimension and, when they fail, what failed in words."""
    from calibration.bayes.fit import DIVERGENCES_MAX, ESS_MIN, RHAT_MAX

    rows = []
    for key, d in (fit.diagnostics or {}).items():
        problems = []
        rhat, ess, div = d.get("max_rhat"), d.get("min_ess_bulk"), d.get("divergences")
        if rhat is None or rhat > RHAT_MAX:
            problems.append(
                f"R-hat {rhat:.3f} is above {RHAT_MAX}: the chains disagree"
                if rhat is not None
                else "no R-hat"
            )
        if ess is None or ess < ESS_MIN:
            problems.append(
                f"ESS {ess:.0f} is below {ESS_MIN:.0f}: too few effective draws"
                if ess is not None
                else "no ESS"
            )
        if div is not None and div > DIVERGENCES_MAX:
            problems.append(f"{div:.0f} divergent transitions (more than {DIVERGENCES_MAX})")
        topped_up = ""
        if d.get("top_ups"):
            first = d.get("min_ess_bulk_first")
            topped_up = f"{d.get('chains', 0):.0f} chains in all" + (
                f"; the first run's ESS was {first:.0f}" if first is not None else ""
            )
        retried = ""
        if d.get("retries"):
            first_div = d.get("divergences_first")
            retried = "sampled again with smaller steps" + (
                f": the first run had {first_div:.0f} divergent transitions"
                if first_div is not None
                else ""
            )
        rows.append(
            {
                "key": key,
                "title": dimension_titles.get(key, key),
                "max_rhat": rhat,
                "min_ess_bulk": ess,
                "divergences": div,
                "seconds": d.get("seconds"),
                "ok": bool(d.get("ok", not problems)),
                "problems": problems,
                "topped_up": topped_up,
                "retried": retried,
            }
        )
    return rows


#: Below this many grades a failed fit is most likely the grades being few: the curve's
#: learnt scales (regions, region × bin, other dimensions) rest on a handful of grades per
#: cell, a funnel the sampler struggles in, and the next grades sharpen it. At and above
#: it, fits of the demo and of HANNA- and SummEval-shaped studies pass (``bench/
#: fit_diagnostics.py``: every fit at 20, 40 and 100 grades), so a failure there points at
#: the study rather than at the count.
FEW_GRADES = 100


def fit_advice(fit: Fit, health: list[dict[str, Any]]) -> str | None:
    """What to do about a fit whose diagnostics failed, in words (None when none failed):
    whether more grades will likely cure it or something in the study is unusual."""
    failed = [row for row in health if not row["ok"]]
    if not failed:
        return None
    names = ", ".join(row["title"] for row in failed)
    from calibration.bayes.fit import DIVERGENCES_MAX

    diverged = any((row["divergences"] or 0) > DIVERGENCES_MAX for row in failed)
    what = (
        "the sampler could not follow the posterior's shape (divergences)"
        if diverged
        else "the sampler's chains did not agree or mixed too slowly"
    )
    n = fit.n_labels
    if n < FEW_GRADES:
        return (
            f"On {names}, {what}. With {n} grade{'s' if n != 1 else ''} this is most likely "
            "the grades being few: the curve's region and bin terms rest on a handful of "
            "grades per cell. More grades usually cure it; the next fit runs after "
            f"{fit.study.refit_every} more. Until a fit passes, act on none of its verdicts."
        )
    return (
        f"On {names}, {what}, with {n} grades: enough that fits of this size normally pass, "
        "so something in this study is unusual (a dimension whose grades all agree, a judge "
        "bin or region with very few responses, a judge score that does not separate "
        "passes from failures). Refit once (a new seed); if it fails again, do not act on it "
        f"and report fit {fit.number} (seed {fit.seed}) to whoever runs Baton."
    )


# ---------------------------------------------------------------------------------------
# Labels and annotators


def label_progress(study: Study, *, now: Any = None) -> dict[str, Any]:
    """Labels used against the budget, per arm × region and per dimension, active annotators.

    "Labels" are graded responses (a response graded by two annotators counts once), as
    the budget and ``Fit.n_labels`` count them.
    """
    now = now or timezone.now()
    live = Annotation.objects.live_grades().filter(study=study)
    arms = list(study.arms.order_by("position", "id"))
    regions = list(study.regions.order_by("position", "id"))
    grid = {
        (row["response__arm_id"], row["response__region_id"]): row["n"]
        for row in live.values("response__arm_id", "response__region_id")
        .order_by()
        .annotate(n=Count("response_id", distinct=True))
    }
    by_arm = [
        {
            "name": a.model_name,
            "role": a.role,
            "cells": [grid.get((a.pk, g.pk), 0) for g in regions],
            "total": sum(grid.get((a.pk, g.pk), 0) for g in regions),
        }
        for a in arms
    ]
    by_region = [sum(grid.get((a.pk, g.pk), 0) for a in arms) for g in regions]
    used = sum(by_region)
    per_dim = dict(
        Label.objects.filter(annotation__in=live)
        .values("dimension_id")
        .order_by()
        .annotate(n=Count("annotation__response_id", distinct=True))
        .values_list("dimension_id", "n")
    )
    dims = [
        {"title": d.title, "n": per_dim.get(d.pk, 0)}
        for d in study.dimensions.order_by("position", "id")
    ]
    since = now - ACTIVE_WINDOW
    active_ids = set(
        Assignment.objects.filter(study=study, leased_at__gte=since).values_list(
            "annotator_id", flat=True
        )
    ) | set(
        Annotation.objects.filter(study=study, created_at__gte=since).values_list(
            "annotator_id", flat=True
        )
    )
    from django.contrib.auth import get_user_model

    active = sorted(
        get_user_model().objects.filter(pk__in=active_ids).values_list("username", flat=True)
    )
    budget = study.label_budget
    return {
        "used": used,
        "budget": budget,
        "remaining": max(budget - used, 0),
        "share": min(used / budget, 1.0) if budget else 0.0,
        "regions": [g.name for g in regions],
        "by_arm": by_arm,
        "by_region": by_region,
        "by_dimension": dims,
        "active": active,
        "active_window_minutes": int(ACTIVE_WINDOW.total_seconds() // 60),
    }


def annotator_stats(study: Study, *, now: Any = None) -> dict[str, Any]:
    """Agreement on the overlap and each annotator's pace.

    * Krippendorff's α per dimension over responses graded by two or more annotators, on
      the dimension's own scale (nominal for pass/fail, ordinal for 1..K) and on pass/fail.
    * Cohen's κ per pair of annotators on pass/fail, pooled over dimensions (items are
      ``(response, dimension)`` both graded).
    * Per annotator: graded and skipped items, graded in the last hour, items per hour of
      grading time, median seconds per item, and agreement with the others' majority on
      the overlap (pass/fail; items where the others tie are left out).
    """
    now = now or timezone.now()
    dims = list(study.dimensions.order_by("position", "id"))
    rows = list(
        Label.objects.of_live_grades()
        .filter(annotation__study=study)
        .values_list("annotation__response_id", "annotation__annotator_id", "dimension_id", "value")
    )
    users = dict(
        Annotation.objects.filter(study=study)
        .values_list("annotator_id", "annotator__username")
        .distinct()
    )
    # grades[dim][response][annotator] = value
    grades: dict[int, dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for resp, ann, dim, value in rows:
        grades[dim][resp][ann] = value
    annotator_ids = sorted(users, key=lambda u: users[u])
    col = {a: i for i, a in enumerate(annotator_ids)}

    def passes(d: Dimension, v: float) -> float:
        return float(v == 1) if d.is_binary else float(v >= (d.pass_threshold or 1))

    per_dim = []
    # pass/fail items on the overlap: item → {annotator: 0/1}
    pf_items: dict[tuple[int, int], dict[int, float]] = {}
    for d in dims:
        overlap = {r: g for r, g in grades.get(d.pk, {}).items() if len(g) >= 2}
        mat = np.full((len(annotator_ids), len(overlap)), np.nan)
        pf = np.full_like(mat, np.nan)
        for u, g in enumerate(overlap.values()):
            for a, v in g.items():
                mat[col[a], u] = v
                pf[col[a], u] = passes(d, v)
        for r, g in overlap.items():
            pf_items[(r, d.pk)] = {a: passes(d, v) for a, v in g.items()}
        level: agreement.Level = "nominal" if d.is_binary else "ordinal"
        per_dim.append(
            {
                "title": d.title,
                "items": len(overlap),
                "level": level,
                "alpha": agreement.krippendorff_alpha(mat, level=level) if overlap else None,
                "alpha_pass": agreement.krippendorff_alpha(pf) if overlap else None,
            }
        )

    pairs = []
    for i, a in enumerate(annotator_ids):
        for b in annotator_ids[i + 1 :]:
            common = [(v[a], v[b]) for v in pf_items.values() if a in v and b in v]
            if not common:
                continue
            x, y = np.array(common).T
            pairs.append(
                {
                    "a": users[a],
                    "b": users[b],
                    "items": len(common),
                    "kappa": agreement.cohen_kappa(x, y),
                    "agreement": agreement.percent_agreement(x, y),
                }
            )

    # Agreement with the others' majority, per annotator.
    agree: dict[int, list[float]] = defaultdict(list)
    for votes in pf_items.values():
        for a, vote in votes.items():
            others = [w for b, w in votes.items() if b != a]
            share = sum(others) / len(others)
            if share != 0.5:
                agree[a].append(float(vote == float(share > 0.5)))

    hour_ago = now - timedelta(hours=1)
    pace = {
        row["annotator_id"]: row
        for row in Annotation.objects.live()
        .filter(study=study)
        .values("annotator_id")
        .order_by()
        .annotate(
            graded=Count("pk", filter=Q(status=Annotation.Status.GRADED)),
            skipped=Count("pk", filter=Q(status=Annotation.Status.SKIPPED)),
            last_hour=Count(
                "pk", filter=Q(status=Annotation.Status.GRADED, created_at__gte=hour_ago)
            ),
            ms=Sum("time_spent_ms", filter=Q(status=Annotation.Status.GRADED)),
        )
    }
    times: dict[int, list[int]] = defaultdict(list)
    for a, ms in (
        Annotation.objects.live_grades()
        .filter(study=study, time_spent_ms__gt=0)
        .values_list("annotator_id", "time_spent_ms")
    ):
        times[a].append(ms)
    people = []
    for a in annotator_ids:
        p: Any = pace.get(a, {})
        graded = p.get("graded", 0)
        ms = p.get("ms") or 0
        people.append(
            {
                "username": users[a],
                "graded": graded,
                "skipped": p.get("skipped", 0),
                "last_hour": p.get("last_hour", 0),
                "per_hour": graded / (ms / 3_600_000) if ms else None,
                "median_seconds": float(np.median(times[a])) / 1000 if times.get(a) else None,
                "consensus": float(np.mean(agree[a])) if agree.get(a) else None,
                "consensus_items": len(agree.get(a, [])),
            }
        )
    return {"dimensions": per_dim, "pairs": pairs, "annotators": people}


# ---------------------------------------------------------------------------------------
# One candidate against the incumbent


def judge_comparison(
    confusion: ArrayLike, *, candidate: int, incumbent: int, names: tuple[str, str]
) -> dict[str, Any]:
    """How the judge treats the candidate's responses compared with the incumbent's.

    ``confusion`` is ``(S, M, 2, J)`` draws of ``P(judge bin | human class)``. The judge
    "passes" a response when its bin is in the upper half (``bin ≥ J // 2``; bin 1 of a
    binary judge), the same cut as the naive judge-only Δ. Returns per arm the rates
    ``P(judge passes | human pass)`` and ``P(judge passes | human fail)`` as
    ``[mean, lower, upper]``, and two sentences with their posterior probabilities.
    """
    conf = np.asarray(confusion, dtype=np.float64)
    j = conf.shape[-1]
    cut = j // 2
    pass_given_pass = conf[..., 1, cut:].sum(axis=-1)  # (S, M)
    pass_given_fail = conf[..., 0, cut:].sum(axis=-1)
    inc_name, cand_name = names

    def ci(x: np.ndarray) -> list[float]:
        lo, hi = np.quantile(x, [0.025, 0.975])
        return [float(x.mean()), float(lo), float(hi)]

    def sentence(diff: np.ndarray, what: str) -> dict[str, Any]:
        mean = float(diff.mean())
        more = mean >= 0
        prob = float(np.mean(diff > 0) if more else np.mean(diff < 0))
        pts = abs(mean) * 100
        unit = "point" if round(pts) == 1 else "points"
        if round(pts) == 0:
            text = (
                f"The judge passes {cand_name}'s {what} about as often as {inc_name}'s "
                f"(within a point; probability {prob:.0%} that it is {'more' if more else 'less'})."
            )
        else:
            text = (
                f"The judge passes {cand_name}'s {what} {pts:.0f} {unit} "
                f"{'more' if more else 'less'} often than {inc_name}'s (probability {prob:.0%})."
            )
        return {"text": text, "points": mean * 100, "probability": prob}

    d_fail = pass_given_fail[:, candidate] - pass_given_fail[:, incumbent]
    d_pass = pass_given_pass[:, candidate] - pass_given_pass[:, incumbent]
    return {
        "arms": [inc_name, cand_name],
        "pass_given_pass": [ci(pass_given_pass[:, i]) for i in (incumbent, candidate)],
        "pass_given_fail": [ci(pass_given_fail[:, i]) for i in (incumbent, candidate)],
        "failures": sentence(d_fail, "failures"),
        "passes": sentence(d_pass, "good responses"),
        "cut": cut,
        "n_bins": j,
    }


#: Simulated futures behind each forecast.
FORECAST_SIMS = 4000

#: The most simulated fits a forecast looks at (``refit_every`` can be 1 on a large budget).
MAX_FORECAST_LOOKS = 200

#: A forecast is a close call when the margin lies inside this posterior interval of Δ.
CLOSE_INTERVAL = 0.80


def boundary_levels(cell: dict[str, Any], confidence: float) -> tuple[float, float]:
    """The (go, no-go) boundary levels ``b √t`` in force for a summary cell.

    A cell stores the boundaries at its fraction (``required_z``, ``required_z_nogo``), which
    carry every re-plan (:class:`calibration.bayes.decision.Design`: ``b = level / √t``), so
    the level is ``b √t``. A stored boundary of None at a positive fraction is an infinite
    one (a side a re-plan froze; summaries store no infinities). A cell at fraction 0 (one
    arm without grades) or written before the boundaries were stored gets the original
    plan's level; one without ``required_z_nogo`` uses the go side's.
    """
    default = Design.initial(confidence).level
    t = cell.get("fraction")
    if "required_z" not in cell or t is None or t <= 0:
        return default, default
    root = math.sqrt(min(float(t), 1.0))

    def level(b: Any) -> float:
        return math.inf if b is None else float(b) * root

    go = level(cell["required_z"])
    return go, level(cell["required_z_nogo"]) if "required_z_nogo" in cell else go


def settle_forecast(
    draws: ArrayLike,
    *,
    margin: float,
    confidence: float,
    n_labels: int,
    budget: int,
    every: int,
    fraction: float | None = None,
    levels: tuple[float, float] | None = None,
    history_n: ArrayLike = (),
    history_sd: ArrayLike = (),
    seed: int = 0,
    sims: int = FORECAST_SIMS,
) -> dict[str, Any]:
    """The chance that the sequential rule settles this cell within the budget (module docstring).

    ``every``: grades between looks (the study's ``refit_every``); ``fraction``: the
    candidate's information fraction now (default ``n/N``); ``levels``: the (go, no-go)
    boundary levels in force (:func:`boundary_levels`; default the original plan).

    Returns ``p_within`` (settled by the budget) split into ``p_go`` and ``p_nogo``;
    ``median`` and ``p80``, the further grades after which half and 80% of the simulated
    futures have settled (None when not within the budget); ``beyond`` (no even odds within
    the budget); ``left``; the looks and the share settled by each (``grid``, ``reach``);
    ``lambda`` and its source. ``close``: the margin lies in Δ's 80% interval; then
    ``p_at_margin``, the chance of settling from the same evidence if Δ is exactly on the
    margin, is what a study whose Δ sits there should expect (always computed).
    ``p_within`` is None when the rule cannot look yet (one arm without grades) or the
    posterior has no spread.
    """
    d = np.asarray(draws, dtype=np.float64).ravel()
    n = int(n_labels)
    left = max(int(budget) - n, 0)
    t0 = float(n / budget if fraction is None else fraction)
    mu0, v0 = float(d.mean()), float(d.var())
    out: dict[str, Any] = {
        "left": left,
        "every": int(every),
        "p_within": None,
        "p_go": None,
        "p_nogo": None,
        "median": None,
        "p80": None,
        "beyond": left == 0,
        "close": None,
        "p_at_margin": None,
        "grid": [],
        "reach": [],
        "lambda": None,
        "lambda_source": "none",
    }
    if v0 <= 0 or n < 1 or t0 <= 0:
        return out
    lam, source = (1.0 / v0) / n, "current"
    hn = np.asarray(history_n, dtype=np.float64)
    hs = np.asarray(history_sd, dtype=np.float64)
    ok = np.isfinite(hs) & (hs > 0)
    hn, hs = hn[ok], hs[ok]
    if len(np.unique(hn)) >= 3:
        slope = float(np.polyfit(hn, 1.0 / hs**2, 1)[0])
        if slope > 0:
            lam, source = slope, "history"
    go_level, nogo_level = levels or (Design.initial(confidence).level,) * 2
    # A look per fit, but at most MAX_FORECAST_LOOKS of them (a page renders this): with
    # fewer looks than fits the chance of settling is, if anything, understated.
    step = max(int(every), 1, math.ceil(left / MAX_FORECAST_LOOKS))
    grid = list(range(step, left, step)) + ([left] if left > 0 else [])
    rng = np.random.default_rng(seed)
    start = (mu0 + margin) / v0

    def paths(distance: NDArray[np.float64]) -> tuple[NDArray[np.bool_], NDArray[np.bool_], list]:
        # The score S = (μ + δ)·I (the estimate's distance to the margin times its
        # precision) moves as a Brownian motion in I with drift ``distance``.
        score = np.full(distance.size, start)
        prec = 1.0 / v0
        settled = np.zeros(distance.size, dtype=bool)
        went = np.zeros(distance.size, dtype=bool)
        reach = []
        for k in grid:
            step_prec = 1.0 / v0 + lam * k - prec
            noise = rng.standard_normal(distance.size)
            score = score + distance * step_prec + math.sqrt(step_prec) * noise
            prec += step_prec
            t = min(t0 * (n + k) / n, 1.0)
            go, nogo = sequential_sides(
                score / math.sqrt(prec), go_level / math.sqrt(t), nogo_level / math.sqrt(t)
            )
            fresh = ~settled & (go | nogo)
            went |= fresh & go
            settled |= fresh
            reach.append(float(settled.mean()))
        return settled, went, reach

    # The truth's distance to the margin drawn from the posterior: the predictive chance.
    settled, went, reach = paths(rng.choice(d, size=sims, replace=True) + margin)
    reach_arr = np.asarray(reach)
    for key, level in (("median", 0.5), ("p80", 0.8)):
        hit = np.flatnonzero(reach_arr >= level)
        out[key] = int(grid[hit[0]]) if hit.size else None
    p = float(settled.mean())
    # The same evidence with the truth on the margin: the chance a close call settles.
    lo, hi = np.quantile(d, [(1 - CLOSE_INTERVAL) / 2, (1 + CLOSE_INTERVAL) / 2])
    at_margin, _, _ = paths(np.zeros(sims))
    return {
        **out,
        "p_within": p,
        "p_go": float(went.mean()),
        "p_nogo": p - float(went.mean()),
        "close": bool(lo <= -margin <= hi),
        "p_at_margin": float(at_margin.mean()),
        "beyond": out["median"] is None,
        "grid": grid,
        "reach": reach,
        "lambda": lam,
        "lambda_source": source,
    }


def _history(fit: Fit, cand: str, limit: int = 60) -> dict[str, dict[str, list[float]]]:
    """Δ mean and interval per dimension over the study's succeeded fits up to ``fit``."""
    qs = (
        Fit.objects.filter(
            study_id=fit.study_id, status=Fit.Status.SUCCEEDED, finished_at__lte=fit.finished_at
        )
        .order_by("-finished_at", "-id")
        .values_list("n_labels", "summary")[:limit]
    )
    out: dict[str, dict[str, list[float]]] = defaultdict(
        lambda: {"n": [], "mean": [], "lower": [], "upper": []}
    )
    for n, summary in reversed(list(qs)):
        for c in (summary or {}).get("candidates", []):
            if c.get("arm") != cand:
                continue
            for d in c["dimensions"]:
                if d.get("mean") is None:
                    continue
                h = out[d["dimension"]]
                h["n"].append(n)
                for k in ("mean", "lower", "upper"):
                    h[k].append(d[k])
    return out


def pair_data(study: Study, fit: Fit, cand: str) -> dict[str, Any] | None:
    """Everything about candidate ``cand`` (an arm key) against the incumbent, from a fit.

    Returns None when the fit has no such candidate. Arrays are numpy; numbers are shares
    (not points) except where named ``*_pts``.
    """
    from calibration import services

    s = fit.summary
    cand_summary = next((c for c in s.get("candidates", []) if c["arm"] == cand), None)
    if cand_summary is None:
        return None
    draws = services.load_draws(fit)
    inc_key = s["incumbent"]["arm"]
    inc_name = s["incumbent"]["model_name"]
    cand_name = cand_summary["model_name"]
    shares = {g["key"]: g["traffic_share"] for g in s["regions"]}
    region_names = {g["key"]: g["name"] for g in s["regions"]}
    titles = {d["key"]: d["title"] for d in s["dimensions"]}
    history = _history(fit, cand)
    progress_budget = study.label_budget
    dims = []
    for ds in cand_summary["dimensions"]:
        key = ds["dimension"]
        df = draws[key]
        c, i = df.arms.index(cand), df.arms.index(inc_key)
        w = np.array([shares[r] for r in df.regions], dtype=np.float64)
        delta = delta_draws(df.theta, w, c, i)
        h = history.get(key, {"n": [], "mean": [], "lower": [], "upper": []})
        hist_sd = (np.array(h["upper"]) - np.array(h["lower"])) / 3.92
        forecast = None
        if ds["verdict"] == "undecided" and not ds.get("final"):
            forecast = settle_forecast(
                delta,
                margin=ds["margin"],
                confidence=s["confidence"],
                n_labels=fit.n_labels,
                budget=progress_budget,
                every=study.refit_every,
                fraction=ds.get("fraction"),
                levels=boundary_levels(ds, s["confidence"]),
                history_n=h["n"],
                history_sd=hist_sd,
                seed=fit.seed,
            )
        judge = judge_comparison(
            df.confusion, candidate=c, incumbent=i, names=(inc_name, cand_name)
        )
        judge["p_differs"] = ds["judge"]["p_differs"]
        judge["tol"] = ds["judge"]["tol"]
        # Fits before the calibration curve said nothing in words.
        judge["differs"] = ds["judge"].get("differs")
        judge["difference"] = ds["judge"].get("difference")
        dims.append(
            {
                "key": key,
                "title": titles.get(key, key),
                "margin": ds["margin"],
                "verdict": ds["verdict"],
                "mean": ds["mean"],
                "lower": ds["lower"],
                "upper": ds["upper"],
                "p_noninferior": ds["p_noninferior"],
                "p_inferior": ds["p_inferior"],
                "bar": bar(ds),
                "fraction": ds.get("fraction"),
                "held": held_reason(ds),
                "audit": audit_text(ds),
                "audit_estimate": ds.get("audit"),
                "naive": ds["naive_judge_delta"],
                "delta_draws": delta,
                "regions": [
                    {**r, "name": region_names.get(r["region"], r["region"])} for r in ds["regions"]
                ],
                "history": h,
                "judge": judge,
                "forecast": forecast,
            }
        )
    return {
        "incumbent": inc_name,
        "candidate": cand_name,
        "arm": cand,
        "verdict": cand_summary["verdict"],
        "confidence": s["confidence"],
        "dimensions": dims,
    }


def study_arms(study: Study) -> tuple[Arm, list[Arm]]:
    """The incumbent and the candidates in position order."""
    arms = list(study.arms.order_by("position", "id"))
    inc = next(a for a in arms if a.role == Arm.Role.INCUMBENT)
    return inc, [a for a in arms if a.role == Arm.Role.CANDIDATE]
