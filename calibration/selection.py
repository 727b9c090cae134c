"""Which cell the next human grade goes to, and whether the study still asks for grades.

The maths is in :mod:`calibration.bayes.select` (pure numpy on posterior draws); this module
feeds it from the database:

1. the latest succeeded fit's draws (:func:`calibration.services.load_draws`, cached by fit
   id) and, from its summary, which verdicts are still open;
2. the labels that came in since that fit, folded into the draws' weights
   (:meth:`~calibration.bayes.select.Selector.observe`), so consecutive picks between two
   fits already account for them;
3. how many responses are *available* in each cell (:func:`available_responses`: no live
   graded annotation and no unexpired lease), from one aggregate query;
4. :func:`~calibration.bayes.select.choose_cell`: exploration share uniform over responses,
   the rest to the best cell; the probability of the response that will be drawn inside the
   cell is recorded with the pick.

With no fit yet, picks are uniform over available responses (policy ``uniform``).

Counting available responses
----------------------------
A study may hold a million responses, and a pick must stay well under 50 ms, so the
per-cell *totals* (which only change on import) are cached per process for
:data:`CACHE_TTL` seconds, and each pick runs one aggregate query over the few
responses that are *not* available (graded or leased), driven from the annotation and
assignment tables: ``available = total − unavailable`` per cell.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from annotate.models import Annotation, Arm, Assignment, Dimension, Label, Response, Study
from calibration.bayes.select import UNDECIDED, DimensionDraws, Selector, choose_cell
from calibration.models import Fit

__all__ = [
    "CACHE_TTL",
    "CellPick",
    "available_counts",
    "available_responses",
    "forget_cell_totals",
    "labels_since",
    "pick_cell",
    "selection_status",
    "selector_for",
]

#: Seconds a process trusts its cached per-cell response totals (they change on import only)
#: and a fit's selection context (margins, traffic shares, arms).
CACHE_TTL = 30.0

REASON_SETTLED = "every verdict is settled"
REASON_BUDGET = "the label budget is spent"


@dataclass(frozen=True)
class CellPick:
    """A cell chosen for the next grade; the queue draws a response at random inside it.

    ``probability`` is the probability that *the response the queue then draws uniformly
    inside the cell* is the one picked (exploration + greedy parts), ready for
    :attr:`annotate.models.Assignment.probability`.
    """

    arm_id: int
    region_id: int
    cell: str
    policy: str  # an Assignment.Policy value: active, explore or uniform
    probability: float
    score: float | None
    fit_id: int | None


# ---------------------------------------------------------------------------------------
# Availability (shared with annotate/queue.py)


def _live_graded(study: Study) -> QuerySet[Annotation]:
    return Annotation.objects.filter(
        study=study, status=Annotation.Status.GRADED, undone_at__isnull=True
    )


def _live_leases(study: Study, now: Any) -> QuerySet[Assignment]:
    return Assignment.objects.filter(study=study, completed_at__isnull=True, expires_at__gt=now)


def available_responses(*, study: Study, now: Any | None = None) -> QuerySet[Response]:
    """Responses of ``study`` that may be given out: no live graded annotation, no live lease.

    The one definition of "available" that selection and the queue share. A skipped
    response stays available (a skip is not a grade), so it is not dropped from the
    population.
    """
    now = now or timezone.now()
    graded = _live_graded(study).filter(response=OuterRef("pk"))
    leased = _live_leases(study, now).filter(response=OuterRef("pk"))
    return Response.objects.filter(study=study).exclude(Exists(graded)).exclude(Exists(leased))


def _unavailable_ids(study: Study, now: Any) -> QuerySet[Any]:
    return (
        _live_graded(study)
        .values("response_id")
        .union(_live_leases(study, now).values("response_id"))
    )


_totals_cache: dict[int, tuple[float, dict[tuple[int, int, str], int]]] = {}
_totals_lock = threading.Lock()


def forget_cell_totals(study_id: int | None = None) -> None:
    """Drop cached per-cell totals and fit contexts (after an import, or in tests)."""
    with _totals_lock:
        if study_id is None:
            _totals_cache.clear()
        else:
            _totals_cache.pop(study_id, None)
    with _context_lock:
        for cache in (_static_cache, _context_cache):
            for key in [k for k in cache if study_id is None or k[0] == study_id]:
                del cache[key]


def _cell_totals(study: Study) -> dict[tuple[int, int, str], int]:
    with _totals_lock:
        hit = _totals_cache.get(study.pk)
        if hit is not None and time.monotonic() - hit[0] < CACHE_TTL:
            return hit[1]
    rows = (
        Response.objects.filter(study=study)
        .order_by()
        .values_list("arm_id", "region_id", "cell")
        .annotate(n=Count("pk"))
    )
    totals = {(a, g, c): n for a, g, c, n in rows}
    with _totals_lock:
        _totals_cache[study.pk] = (time.monotonic(), totals)
    return totals


def available_counts(*, study: Study, now: Any | None = None) -> list[tuple[int, int, str, int]]:
    """``(arm_id, region_id, cell, n_available)`` for every cell with a response available.

    Cached totals minus one aggregate query over the graded or leased responses.
    """
    now = now or timezone.now()
    totals = _cell_totals(study)
    busy = (
        Response.objects.filter(pk__in=_unavailable_ids(study, now))
        .order_by()
        .values_list("arm_id", "region_id", "cell")
        .annotate(n=Count("pk"))
    )
    out = dict(totals)
    for a, g, c, n in busy:
        out[(a, g, c)] = out.get((a, g, c), 0) - n
    return [(a, g, c, n) for (a, g, c), n in sorted(out.items()) if n > 0]


# ---------------------------------------------------------------------------------------
# Draws, open verdicts and labels since the fit


def _ordered_dimensions(study: Study) -> list[Dimension]:
    return list(study.dimensions.order_by("position", "id"))


def _open_from_summary(
    summary: dict[str, Any], candidates: tuple[str, ...], dimensions: list[str]
) -> np.ndarray | None:
    """``(C, D)`` mask of the verdicts the fit summary leaves undecided (None if absent)."""
    try:
        table = summary["candidates"]
        return np.array(
            [
                [table[c]["dimensions"][d]["overall"]["verdict"] == UNDECIDED for d in dimensions]
                for c in candidates
            ],
            dtype=bool,
        )
    except (KeyError, TypeError):
        return None


def labels_since(
    *, study: Study, fit: Fit, dimensions: list[Dimension] | None = None
) -> list[tuple[int, int, str, dict[int, int]]]:
    """Responses first graded after ``fit`` started, with their pass/fail per dimension.

    Returns ``(arm_id, region_id, cell, {dimension_id: y})`` per response (sorted by response
    id), ``y`` the majority of its live graded labels mapped by :meth:`Dimension.passes`
    (a tie gives no ``y``, as in :mod:`calibration.counts`). A label that lands between the
    fit's start and its count query is both in the fit and reweighted here; with one fit
    per ``refit_every`` labels that window is a second or two and the double count is
    negligible.
    """
    since = fit.started_at or fit.created_at
    before = _live_graded(study).filter(
        created_at__lt=since, response=OuterRef("annotation__response")
    )
    rows = (
        Label.objects.filter(
            annotation__study=study,
            annotation__status=Annotation.Status.GRADED,
            annotation__undone_at__isnull=True,
            annotation__created_at__gte=since,
        )
        .exclude(Exists(before))
        .values_list(
            "annotation__response_id",
            "annotation__response__arm_id",
            "annotation__response__region_id",
            "annotation__response__cell",
            "dimension_id",
            "value",
        )
    )
    dims = {d.pk: d for d in (dimensions or study.dimensions.all())}
    votes: dict[int, dict[int, list[int]]] = {}
    where: dict[int, tuple[int, int, str]] = {}
    for resp, arm, region, cell, dim, value in rows:
        if dim not in dims:
            continue
        where[resp] = (arm, region, cell)
        tally = votes.setdefault(resp, {}).setdefault(dim, [0, 0])
        tally[int(dims[dim].passes(value))] += 1
    out = []
    for resp in sorted(votes):
        ys = {d: int(t[1] > t[0]) for d, t in votes[resp].items() if t[0] != t[1]}
        out.append((*where[resp], ys))
    return out


def _parse_cell(cell: str, n_dims: int) -> list[int]:
    parts = cell.split(".") if cell else []
    if len(parts) != n_dims:
        return [-1] * n_dims
    try:
        return [int(p) for p in parts]
    except ValueError:
        return [-1] * n_dims


@dataclass(frozen=True)
class _Static:
    """What a fit and the study's configuration give; cached per (study, fit)."""

    draws: list[DimensionDraws]
    dimensions: list[Dimension]
    arm_index: dict[int, int]  # Arm pk -> axis in the draws
    region_index: dict[int, int]
    traffic: np.ndarray
    undecided: np.ndarray | None


@dataclass
class _Context:
    selector: Selector
    arm_index: dict[int, int]
    region_index: dict[int, int]
    n_dims: int


_static_cache: dict[tuple[int, int, float], tuple[float, _Static | None]] = {}
_context_cache: dict[tuple[int, int, float], tuple[tuple[Any, ...], _Context]] = {}
_context_lock = threading.Lock()


def _static_for(study: Study, fit: Fit) -> _Static | None:
    from calibration.services import load_draws

    key = (study.pk, fit.pk, study.confidence)
    with _context_lock:
        hit = _static_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_TTL:
            return hit[1]
    draws = load_draws(fit)
    dimensions = _ordered_dimensions(study)
    keys = [d.key for d in dimensions]
    static: _Static | None = None
    if keys and all(k in draws for k in keys):
        first = draws[keys[0]]
        arm_keys, region_keys = tuple(first.arms), tuple(first.regions)
        arms = {a.key: a for a in study.arms.all()}
        regions = {g.key: g for g in study.regions.all()}
        if (
            all(k in arms for k in arm_keys)
            and all(k in regions for k in region_keys)
            and arms[arm_keys[0]].role == Arm.Role.INCUMBENT
            and all(tuple(draws[k].arms) == arm_keys for k in keys)
        ):
            traffic = np.array([float(regions[k].traffic_share) for k in region_keys])
            static = _Static(
                draws=[DimensionDraws.from_fit(draws[d.key], margin=d.margin) for d in dimensions],
                dimensions=dimensions,
                arm_index={arms[k].pk: i for i, k in enumerate(arm_keys)},
                region_index={regions[k].pk: i for i, k in enumerate(region_keys)},
                traffic=traffic / traffic.sum(),
                undecided=_open_from_summary(fit.summary or {}, arm_keys[1:], keys),
            )
    with _context_lock:
        _static_cache[key] = (time.monotonic(), static)
        if len(_static_cache) > 64:
            _static_cache.pop(next(iter(_static_cache)))
    return static


def selector_for(*, study: Study, fit: Fit) -> _Context | None:
    """The :class:`Selector` of a fit, reweighted with the labels since it (None if unusable).

    Unusable means the fit's draws do not match the study any more (a dimension, arm or
    region added or renamed since): picks then fall back to uniform until the next fit.
    The fit's part is cached per process for :data:`CACHE_TTL` seconds; the reweighted
    selector (and its score tables) is reused while no new label came in.
    """
    static = _static_for(study, fit)
    if static is None:
        return None
    new = [
        row
        for row in labels_since(study=study, fit=fit, dimensions=static.dimensions)
        if row[0] in static.arm_index and row[1] in static.region_index
    ]
    labels_key = tuple((a, g, c, tuple(sorted(ys.items()))) for a, g, c, ys in new)
    cache_key = (study.pk, fit.pk, study.confidence)
    with _context_lock:
        hit = _context_cache.get(cache_key)
        if hit is not None and hit[0] == labels_key:
            return hit[1]
    # Lazy: calibration.bayes.decision imports the fit module, hence PyMC (seconds).
    from calibration.bayes.decision import required_z

    selector = Selector(
        dimensions=static.draws,
        traffic=static.traffic,
        confidence=study.confidence,
        undecided=static.undecided,
        # Verdicts settle by the sequential rule (calibration.bayes.decision), so do scores.
        required_z=required_z(fit.n_labels + len(new), study.label_budget, study.confidence),
    )
    n_dims = len(static.dimensions)
    if new:
        dim_ids = [d.pk for d in static.dimensions]
        selector.observe(
            arm=[static.arm_index[a] for a, _, _, _ in new],
            region=[static.region_index[g] for _, g, _, _ in new],
            bins=[_parse_cell(c, n_dims) for _, _, c, _ in new],
            y=[[ys.get(d, -1) for d in dim_ids] for _, _, _, ys in new],
        )
    ctx = _Context(
        selector=selector,
        arm_index=static.arm_index,
        region_index=static.region_index,
        n_dims=n_dims,
    )
    with _context_lock:
        _context_cache[cache_key] = (labels_key, ctx)
        if len(_context_cache) > 64:
            _context_cache.pop(next(iter(_context_cache)))
    return ctx


# ---------------------------------------------------------------------------------------
# The two entry points the queue calls


def pick_cell(*, study: Study, rng: np.random.Generator) -> CellPick | None:
    """Choose the cell of the next grade (None when no response is available).

    With a fit: score every available cell by the expected drop in ``Var(Δ)`` of the open
    verdicts (:mod:`calibration.bayes.select`), then mix exploration (share
    ``study.exploration_share``, uniform over responses) with the best cell. Without a fit,
    or when the fit no longer matches the study: uniform over available responses.
    """
    from calibration.services import latest_fit

    rows = available_counts(study=study)
    if not rows:
        return None
    n = np.array([r[3] for r in rows], dtype=np.int64)
    fit = latest_fit(study)
    ctx = selector_for(study=study, fit=fit) if fit is not None else None
    if ctx is None:
        choice = choose_cell(np.zeros(n.size), n, 1.0, rng)
        arm_id, region_id, cell, _ = rows[choice.cell]
        return CellPick(arm_id, region_id, cell, "uniform", choice.probability, None, None)

    arm = np.array([ctx.arm_index.get(r[0], -1) for r in rows])
    region = np.array([ctx.region_index.get(r[1], -1) for r in rows])
    bins = np.array([_parse_cell(r[2], ctx.n_dims) for r in rows], dtype=np.int64)
    bins = bins.reshape(len(rows), ctx.n_dims)
    known = (arm >= 0) & (region >= 0)
    scores = np.zeros(len(rows))
    if known.any():
        scores[known] = ctx.selector.scores(arm=arm[known], region=region[known], bins=bins[known])
    choice = choose_cell(scores, n, study.exploration_share, rng)
    arm_id, region_id, cell, _ = rows[choice.cell]
    assert fit is not None
    return CellPick(
        arm_id,
        region_id,
        cell,
        choice.policy,
        choice.probability,
        float(scores[choice.cell]),
        fit.pk,
    )


def _latest_trustworthy_fit(study: Study) -> Fit | None:
    return (
        Fit.objects.filter(study=study, status=Fit.Status.SUCCEEDED, trustworthy=True)
        .defer("draws")
        .order_by("-finished_at", "-id")
        .first()
    )


def _graded_responses(study: Study) -> int:
    return _live_graded(study).values("response_id").distinct().count()


def selection_status(*, study: Study) -> tuple[bool, str]:
    """Whether the study still asks for grades, and why (or why not).

    Closed, with the reason shown to annotators and leads, when the label budget is spent
    (graded responses ≥ ``study.label_budget``) or when every verdict of the latest
    trustworthy fit is settled (go or no-go for every candidate and dimension).
    """
    graded = _graded_responses(study)
    if graded >= study.label_budget:
        return False, REASON_BUDGET
    fit = _latest_trustworthy_fit(study)
    if fit is None:
        return True, f"no trustworthy fit yet; {study.label_budget - graded} grades left"
    dimensions = [d.key for d in _ordered_dimensions(study)]
    candidates = tuple(a.key for a in study.candidates().order_by("position", "id"))
    open_ = _open_from_summary(fit.summary or {}, candidates, dimensions)
    if open_ is None:
        ctx = selector_for(study=study, fit=fit)
        open_ = None if ctx is None else ctx.selector.verdicts() == UNDECIDED
    if open_ is not None and not open_.any():
        return False, REASON_SETTLED
    n_open = "some" if open_ is None else str(int(open_.sum()))
    return True, (
        f"{n_open} verdicts undecided; {study.label_budget - graded} grades left in the budget"
    )
