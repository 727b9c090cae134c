"""Which cell the next human grade goes to, and whether the study still asks for grades.

The maths is in :mod:`calibration.bayes.select` (pure numpy on posterior draws); this module
feeds it from the database:

1. the latest succeeded fit's draws (:func:`calibration.services.load_draws`, cached by fit
   id) and, from its summary, which verdicts are still open;
2. the labels that came in since that fit, folded into the draws' weights
   (:meth:`~calibration.bayes.select.Selector.observe`), so consecutive picks between two
   fits already account for them;
3. how many responses are *available* in each cell (:func:`available_counts`: no live
   graded annotation and no unexpired lease);
4. :func:`~calibration.bayes.select.choose_cell`: exploration share uniform over responses,
   the rest to the best cell; the probability of the response that will be drawn inside the
   cell is recorded with the pick.

With no fit yet, picks are uniform over available responses (policy ``uniform``).

Counting available responses
----------------------------
A study may hold a million responses, and a pick must stay well under 50 ms, so nothing
on the pick's path reads the responses table at large. ``available = total − busy`` per
cell, where

* *total* is stored (:mod:`calibration.totals`): counted by a fresh import as it writes,
  recounted inside a staged (re-)import, and by the first pick that finds the rows
  missing (re-binning drops them) or a response newer than their watermark (another
  import since); reading it is one indexed query of a few hundred rows;
* *busy* are the responses graded (live) or leased (unexpired): their ids come from the
  annotation and assignment tables (bounded by the label budget and the number of
  annotators), and each id's cell from a per-process cache valid for one refresh of the
  totals.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from annotate.models import (
    Annotation,
    Arm,
    Assignment,
    Dimension,
    Label,
    Response,
    Study,
    live_grade_sql,
)
from calibration.bayes.decision import selector_boundary
from calibration.bayes.select import UNDECIDED, DimensionDraws, Selector, choose_cell
from calibration.bayes.summaries import open_verdicts
from calibration.counts import parse_cell
from calibration.models import CellTotal, Fit
from calibration.totals import (
    CellKey,
    Fences,
    refresh_cell_totals,
    stored_totals,
)
from calibration.totals import forget as forget_stored_totals

__all__ = [
    "CACHE_TTL",
    "CellPick",
    "available_counts",
    "available_responses",
    "forget_cell_totals",
    "labels_since",
    "pick_cell",
    "refresh_cell_totals",
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
    #: Responses in the cell, available or not (the stored total): the range the queue's
    #: uniform draw inside the cell runs over, so it need not count the cell again.
    total: int | None = None
    #: ``(every, ids)``: the cell's ids at ranks 0, every, 2·every, … (:mod:`calibration.totals`):
    #: the draw of rank k starts from fence k // every instead of the cell's first id.
    fences: Fences | None = None


# ---------------------------------------------------------------------------------------
# Availability (shared with annotate/grading/queue.py)


def _live_leases(study: Study, now: Any) -> QuerySet[Assignment]:
    return Assignment.objects.filter(study=study, completed_at__isnull=True, expires_at__gt=now)


def available_responses(*, study: Study, now: Any | None = None) -> QuerySet[Response]:
    """Responses of ``study`` that may be given out: no live graded annotation, no live lease.

    The one definition of "available" that selection and the queue share. A skipped
    response stays available (a skip is not a grade), so it is not dropped from the
    population.
    """
    now = now or timezone.now()
    graded = Annotation.objects.live_grades().filter(study=study, response=OuterRef("pk"))
    leased = _live_leases(study, now).filter(response=OuterRef("pk"))
    return Response.objects.filter(study=study).exclude(Exists(graded)).exclude(Exists(leased))


# Per process: which cell each busy (graded or leased) response lies in, per study, valid
# for one refresh of the study's stored totals (``refreshed_at``); cells only change when
# the totals are refreshed (import, re-binning).
_cells_cache: dict[int, tuple[Any, dict[int, CellKey]]] = {}
_cells_lock = threading.Lock()


def forget_cell_totals(study_id: int | None = None) -> None:
    """The study's cells changed (re-binning), or a test starts afresh: forget what is cached.

    With a study id, its stored totals are deleted too, so that the next pick recounts
    them (:func:`refresh_cell_totals`). Every process drops its own caches then, because
    the recount carries a new ``refreshed_at``. Without one, only this process's caches
    are cleared.
    """
    with _cells_lock:
        if study_id is None:
            _cells_cache.clear()
        else:
            _cells_cache.pop(study_id, None)
    forget_stored_totals(study_id)
    with _context_lock:
        for cache in (_static_cache, _context_cache, _open_cache):
            for key in [k for k in cache if study_id is None or k[0] == study_id]:
                del cache[key]  # type: ignore[attr-defined]
    if study_id is not None:
        CellTotal.objects.filter(study_id=study_id).delete()


def _cell_totals(study: Study) -> tuple[dict[CellKey, tuple[int, Fences | None]], Any]:
    """Stored responses and fences per cell, and when counted, in one read
    (:func:`calibration.totals.stored_totals`)."""
    rows = stored_totals(study)
    if not rows:
        return {}, None
    return {(r[0], r[1], r[2]): (r[3], r[7]) for r in rows}, max(r[6] for r in rows)


def _busy_cells(study: Study, now: Any, refreshed_at: Any) -> list[CellKey]:
    """The cell of every response that is graded (live) or leased (unexpired) right now.

    Both sets are small (the label budget, the annotators): their ids come from two
    index scans, and each id's cell from a per-process cache, so a pick does not visit a
    million-row table once per graded response (8 ms at 1,400 grades, growing with them).
    """
    annotation, assignment = Annotation._meta.db_table, Assignment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT response_id FROM {annotation} a
                WHERE a.study_id = %s AND {live_grade_sql("a")}
                UNION SELECT response_id FROM {assignment}
                WHERE study_id = %s AND completed_at IS NULL AND expires_at > %s""",
            [
                study.pk,
                study.pk,
                connection.ops.adapt_datetimefield_value(now),
            ],
        )
        ids = [r[0] for r in cursor.fetchall()]
    with _cells_lock:
        hit = _cells_cache.get(study.pk)
        known = hit[1] if hit is not None and hit[0] == refreshed_at else {}
        unknown = [i for i in ids if i not in known]
    if unknown:
        found: dict[int, CellKey] = {}
        for start in range(0, len(unknown), 500):
            chunk = unknown[start : start + 500]
            rows = Response.objects.filter(pk__in=chunk).values_list(
                "pk", "arm_id", "region_id", "cell"
            )
            found.update({pk: (a, g, c) for pk, a, g, c in rows})
        with _cells_lock:
            known = {**known, **found}
            if len(known) > 200_000:  # a study graded beyond any budget: keep memory bounded
                known = found
            _cells_cache[study.pk] = (refreshed_at, known)
    return [known[i] for i in ids if i in known]


def available_counts(*, study: Study, now: Any | None = None) -> list[tuple[int, int, str, int]]:
    """``(arm_id, region_id, cell, n_available)`` for every cell with a response available.

    Stored totals (:class:`CellTotal`) minus the graded or leased responses of each cell.
    """
    return _available(study, now or timezone.now())[0]


def _available(
    study: Study, now: Any
) -> tuple[list[tuple[int, int, str, int]], dict[CellKey, tuple[int, Fences | None]]]:
    totals, refreshed_at = _cell_totals(study)
    out = {key: n for key, (n, _) in totals.items()}
    for key in _busy_cells(study, now, refreshed_at):
        out[key] = out.get(key, 0) - 1
    return [(a, g, c, n) for (a, g, c), n in sorted(out.items()) if n > 0], totals


# ---------------------------------------------------------------------------------------
# Draws, open verdicts and labels since the fit


def _ordered_dimensions(study: Study) -> list[Dimension]:
    return list(study.dimensions.order_by("position", "id"))


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
    since = connection.ops.adapt_datetimefield_value(fit.started_at or fit.created_at)
    annotation, label = Annotation._meta.db_table, Label._meta.db_table
    dims = list(dimensions or study.dimensions.all())
    if not dims:
        return []
    # A label passes when value >= threshold: 1 for binary grades (0/1), else the
    # dimension's pass threshold (Dimension.passes). Votes are tallied in SQL, so Python
    # sees one row per graded response and dimension. Plain SQL: this runs on every pick.
    thresholds: list[Any] = []
    for d in dims:
        thresholds += [d.pk, 1 if d.is_binary else d.pass_threshold]
    whens = " ".join("WHEN %s THEN %s" for _ in dims)
    marks = ", ".join("%s" for _ in dims)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT a.response_id, r.arm_id, r.region_id, r.cell, l.dimension_id,
                       SUM(CASE WHEN l.value >= (CASE l.dimension_id {whens} END)
                           THEN 1 ELSE 0 END),
                       COUNT(*)
                FROM {label} l
                JOIN {annotation} a ON a.id = l.annotation_id
                JOIN {Response._meta.db_table} r ON r.id = a.response_id
                WHERE a.study_id = %s AND {live_grade_sql("a")}
                  AND a.created_at >= %s AND l.dimension_id IN ({marks})
                  AND NOT EXISTS (
                      SELECT 1 FROM {annotation} b
                      WHERE b.study_id = %s AND b.response_id = a.response_id
                        AND {live_grade_sql("b")} AND b.created_at < %s)
                GROUP BY a.response_id, r.arm_id, r.region_id, r.cell, l.dimension_id
                ORDER BY a.response_id""",
            [
                *thresholds,
                study.pk,
                since,
                *[d.pk for d in dims],
                study.pk,
                since,
            ],
        )
        rows = cursor.fetchall()
    out: list[tuple[int, int, str, dict[int, int]]] = []
    last = None
    for resp, arm, region, cell, dim, passed, total in rows:
        if resp != last:
            out.append((arm, region, cell, {}))
            last = resp
        if 2 * passed != total:  # a tie gives no y
            out[-1][3][dim] = int(2 * passed > total)
    return out


def _verdict_cells(summary: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """The summary's (candidate, dimension) rows, each with its verdict and boundary."""
    return (d for c in (summary or {}).get("candidates", []) for d in c.get("dimensions", []))


@dataclass(frozen=True)
class _Static:
    """What a fit and the study's configuration give; cached per (study, fit)."""

    draws: list[DimensionDraws]
    dimensions: list[Dimension]
    arm_index: dict[int, int]  # Arm pk -> axis in the draws
    region_index: dict[int, int]
    traffic: np.ndarray
    undecided: np.ndarray | None
    #: For fits of the calibration curve: each bin combination's column in the draws'
    #: tables (the same for every dimension). None for older fits: the columns are then
    #: each dimension's own bin.
    combos: dict[tuple[int, ...], int] | None = None

    #: ``columns`` of each cell seen, memoised: a pick asks for every cell of the study.
    _columns: dict[str, list[int]] = field(default_factory=dict, compare=False, repr=False)

    def columns(self, cell: str) -> list[int]:
        """The column of a response's ``cell`` in each dimension's table (-1: none)."""
        hit = self._columns.get(cell)
        if hit is not None:
            return hit
        n_dims = len(self.dimensions)
        bins = parse_cell(cell, n_dims)
        if self.combos is not None:
            bins = [self.combos.get(tuple(bins), -1)] * n_dims
        if len(self._columns) < 100_000:
            self._columns[cell] = bins
        return bins


@dataclass
class _Context:
    selector: Selector
    arm_index: dict[int, int]
    region_index: dict[int, int]
    static: _Static


_static_cache: dict[tuple[int, int, float], tuple[float, _Static | None]] = {}
_context_cache: dict[tuple[int, int, float], tuple[Counter[tuple[Any, ...]], _Context]] = {}
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
            curve = all(draws[k].has_curve for k in keys)
            combos = (
                {tuple(row): i for i, row in enumerate(np.asarray(first.combos).tolist())}
                if curve
                else None
            )
            static = _Static(
                draws=[DimensionDraws.from_fit(draws[d.key], margin=d.margin) for d in dimensions],
                dimensions=dimensions,
                arm_index={arms[k].pk: i for i, k in enumerate(arm_keys)},
                region_index={regions[k].pk: i for i, k in enumerate(region_keys)},
                traffic=traffic / traffic.sum(),
                undecided=open_verdicts(fit.summary, arm_keys[1:], keys),
                combos=combos,
            )
    with _context_lock:
        _forget_other_fits(_static_cache, key)
        _static_cache[key] = (time.monotonic(), static)
        if len(_static_cache) > 64:
            _static_cache.pop(next(iter(_static_cache)))
    return static


def _forget_other_fits(
    cache: dict[tuple[int, int, float], Any], key: tuple[int, int, float]
) -> None:
    """Drop the study's entries for other fits or settings before ``key``'s is stored.

    Each entry holds the fit's draws and their per-cell pass probabilities (megabytes for a
    large study), so a process keeps one set per study rather than one per fit it served.
    Picks use the newest fit; an older one is asked for only by :func:`_open_verdicts`
    when the newest trustworthy fit's summary lacks verdicts, at most once per
    :data:`CACHE_TTL` per process.
    """
    for other in [k for k in cache if k[0] == key[0] and k != key]:
        del cache[other]


def selector_for(*, study: Study, fit: Fit) -> _Context | None:
    """The :class:`Selector` of a fit, reweighted with the labels since it (None if unusable).

    Unusable means the fit's draws do not match the study any more (a dimension, arm or
    region added or renamed since): picks then fall back to uniform until the next fit.
    The fit's part is cached per process for :data:`CACHE_TTL` seconds; the reweighted
    selector (and its score tables) is reused while no new label came in, and when labels
    only came in since, it is reweighted by those alone (weights multiply, and labels of
    one cell with the same grades are interchangeable, so this is exact); an undone grade
    makes it start again from the fit.
    """
    static = _static_for(study, fit)
    if static is None:
        return None
    new = [
        row
        for row in labels_since(study=study, fit=fit, dimensions=static.dimensions)
        if row[0] in static.arm_index and row[1] in static.region_index
    ]
    labels_key: Counter[tuple[Any, ...]] = Counter(
        (a, g, c, tuple(sorted(ys.items()))) for a, g, c, ys in new
    )
    cache_key = (study.pk, fit.pk, study.confidence)
    with _context_lock:
        hit = _context_cache.get(cache_key)
    if hit is not None and hit[0] == labels_key:
        return hit[1]
    base: Selector | None = None
    if hit is not None and all(labels_key[k] >= n for k, n in hit[0].items()):
        base = hit[1].selector
        delta = labels_key - hit[0]
        new = [(a, g, c, dict(ys)) for (a, g, c, ys), n in delta.items() for _ in range(n)]
    selector = Selector(
        dimensions=static.draws,
        traffic=static.traffic,
        confidence=study.confidence,
        undecided=static.undecided,
        # Verdicts settle by the sequential rule (calibration.bayes.decision), so do scores.
        # The rule's boundary is per candidate (its own information fraction, re-plans);
        # the selector takes one, so it gets the strictest the summary holds: a verdict the
        # dashboard shows open must never look settled to the selector and stop attracting
        # grades (the study-wide n/N is laxer than a candidate's own fraction).
        required_z=selector_boundary(
            _verdict_cells(fit.summary),
            labels=fit.n_labels + labels_key.total(),
            budget=study.label_budget,
            confidence=study.confidence,
        ),
        log_weights=list(base.log_weights) if base is not None else [],
        n_observed=base.n_observed if base is not None else 0,
    )
    if new:
        dim_ids = [d.pk for d in static.dimensions]
        columns = [static.columns(c) for _, _, c, _ in new]
        ys = [[ys.get(d, -1) for d in dim_ids] for _, _, _, ys in new]
        # A label in a cell the fit has no column for (imported since) tells the draws
        # nothing; it is counted at the next fit.
        ys = [
            [y if col >= 0 else -1 for y, col in zip(row, cols, strict=True)]
            for row, cols in zip(ys, columns, strict=True)
        ]
        selector.observe(
            arm=[static.arm_index[a] for a, _, _, _ in new],
            region=[static.region_index[g] for _, g, _, _ in new],
            bins=[[max(col, 0) for col in cols] for cols in columns],
            y=ys,
        )
    ctx = _Context(
        selector=selector,
        arm_index=static.arm_index,
        region_index=static.region_index,
        static=static,
    )
    with _context_lock:
        _forget_other_fits(_context_cache, cache_key)
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
    rows, totals = _available(study, timezone.now())
    if not rows:
        return None
    n = np.array([r[3] for r in rows], dtype=np.int64)
    fit = _latest_fit(study, trustworthy=False)
    ctx = selector_for(study=study, fit=fit) if fit is not None else None
    if ctx is None:
        choice = choose_cell(np.zeros(n.size), n, 1.0, rng)
        arm_id, region_id, cell, _ = rows[choice.cell]
        total, fences = totals[(arm_id, region_id, cell)]
        return CellPick(
            arm_id, region_id, cell, "uniform", choice.probability, None, None, total, fences
        )

    arm = np.array([ctx.arm_index.get(r[0], -1) for r in rows])
    region = np.array([ctx.region_index.get(r[1], -1) for r in rows])
    n_dims = len(ctx.static.dimensions)
    bins = np.array([ctx.static.columns(r[2]) for r in rows], dtype=np.int64)
    bins = bins.reshape(len(rows), n_dims)
    known = (arm >= 0) & (region >= 0)
    scores = np.zeros(len(rows))
    if known.any():
        scores[known] = ctx.selector.scores(arm=arm[known], region=region[known], bins=bins[known])
    choice = choose_cell(scores, n, study.exploration_share, rng)
    arm_id, region_id, cell, _ = rows[choice.cell]
    total, fences = totals[(arm_id, region_id, cell)]
    assert fit is not None
    return CellPick(
        arm_id,
        region_id,
        cell,
        choice.policy,
        choice.probability,
        float(scores[choice.cell]),
        fit.pk,
        total,
        fences,
    )


_FIT_HEAD = "id, study_id, status, trustworthy, created_at, started_at, finished_at, n_labels"


def _latest_fit(study: Study, *, trustworthy: bool) -> Fit | None:
    """The newest succeeded fit (trustworthy only, if asked), its few small columns only.

    The same rows as :func:`calibration.services.latest_fit`; the summary and the draws are
    loaded on first use and then cached by fit, so a pick does not read them.
    """
    where = "study_id = %s AND status = %s" + (" AND trustworthy = %s" if trustworthy else "")
    params: list[Any] = [study.pk, Fit.Status.SUCCEEDED] + ([True] if trustworthy else [])
    sql = (
        f"SELECT {_FIT_HEAD} FROM {Fit._meta.db_table} WHERE {where} "
        "ORDER BY finished_at DESC, id DESC LIMIT 1"
    )
    found = list(Fit.objects.raw(sql, params))
    return found[0] if found else None


_open_cache: dict[tuple[int, int, Any], tuple[float, np.ndarray | None]] = {}


def _open_verdicts(study: Study, fit: Fit) -> np.ndarray | None:
    """``(C, D)`` mask of the verdicts ``fit`` leaves undecided; cached per fit for a while."""
    key = (study.pk, fit.pk, fit.finished_at)
    with _context_lock:
        hit = _open_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_TTL:
            return hit[1]
    dimensions = [d.key for d in _ordered_dimensions(study)]
    candidates = tuple(a.key for a in study.candidates().order_by("position", "id"))
    open_ = open_verdicts(fit.summary, candidates, dimensions)
    if open_ is None:
        ctx = selector_for(study=study, fit=fit)
        open_ = None if ctx is None else ctx.selector.verdicts() == UNDECIDED
    with _context_lock:
        _open_cache[key] = (time.monotonic(), open_)
        if len(_open_cache) > 64:
            _open_cache.pop(next(iter(_open_cache)))
    return open_


def selection_status(*, study: Study, graded: int | None = None) -> tuple[bool, str]:
    """Whether the study still asks for grades, and why (or why not).

    Closed, with the reason shown to annotators and leads, when the label budget is spent
    (graded responses ≥ ``study.label_budget``) or when every verdict of the latest
    trustworthy fit is settled (go or no-go for every candidate and dimension).
    ``graded``: the number of graded responses, when the caller has just counted them.
    """
    if graded is None:
        graded = Annotation.objects.filter(study=study).count_graded_responses()
    if graded >= study.label_budget:
        return False, REASON_BUDGET
    fit = _latest_fit(study, trustworthy=True)
    if fit is None:
        return True, f"no trustworthy fit yet; {study.label_budget - graded} grades left"
    open_ = _open_verdicts(study, fit)
    if open_ is not None and not open_.any():
        return False, REASON_SETTLED
    n_open = "some" if open_ is None else str(int(open_.sum()))
    return True, (
        f"{n_open} verdicts undecided; {study.label_budget - graded} grades left in the budget"
    )
