"""Fits as a service: request, coalesce, run and serve calibration fits.

Life of a fit::

    request_fit ──▶ queued ──(worker: run_fit)──▶ running ──▶ succeeded | failed

* At most one fit of a study runs and at most one waits behind it (two partial unique
  constraints on :class:`~calibration.models.Fit`). A request while one is queued returns
  that one; a request while one runs queues a single follow-up, which will see every label
  that came in meanwhile. A burst of labels therefore gives one fit, not fifty.
* The task is enqueued on commit, so a worker never looks for a fit that is not there yet.
  Claiming a fit is a conditional UPDATE (``queued → running``), so a second worker (or a
  duplicate task) finds nothing to do.
* A fit left ``running`` by a killed worker is declared lost (failed) and a new fit is
  queued at the next :func:`request_fit`, :func:`note_new_labels` (every grade) or claim
  by a worker. On PostgreSQL the worker holds an advisory lock on the fit while it runs
  it, and the lock ends with the worker's database session, so a lost fit is seen at once;
  elsewhere a fit counts as lost after :data:`STALE_RUNNING_AFTER`.
* The newest *succeeded* fit is what everything reads (:func:`latest_fit`); queued, running
  and failed fits never hide it. An untrustworthy fit (diagnostics failed) is still served,
  flagged, so the UI can say so.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from annotate.models import Annotation, Study, live_grade_sql
from calibration.bayes.posterior import DRAWS_STORED, FIT_SETTINGS, dump_draws, parse_draws
from calibration.counts import StudyCounts, study_counts
from calibration.models import Fit

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from calibration.bayes.fit import Fitter
    from calibration.bayes.posterior import DimensionFit

__all__ = [
    "DRAWS_STORED",
    "FitBusy",
    "STALE_RUNNING_AFTER",
    "fit_now",
    "get_fitter",
    "latest_fit",
    "load_draws",
    "note_new_labels",
    "request_fit",
    "run_fit",
]

logger = logging.getLogger(__name__)

#: A fit "running" for longer than this is taken to have lost its worker (without PostgreSQL).
STALE_RUNNING_AFTER = timedelta(minutes=15)
#: First key of the PostgreSQL advisory lock "a worker runs this fit" (second: the fit id).
RUNNING_LOCK_CLASS = 0x0BA7

# One Fitter per process: a long-lived db_worker keeps the compiled models of every shape
# it has seen, so a refit only swaps the counts (pm.Data) and samples.
_fitter: Fitter | None = None
_fitter_lock = threading.Lock()
_fit_lock = threading.Lock()


def get_fitter() -> Fitter:
    """The process-wide :class:`~calibration.bayes.fit.Fitter` (created on first use)."""
    global _fitter
    with _fitter_lock:
        if _fitter is None:
            from calibration.bayes.fit import Fitter

            _fitter = Fitter()
        return _fitter


# ---------------------------------------------------------------------------------------
# Requesting fits


def _enqueue(fit_id: int) -> None:
    """Enqueue the fit's task once the surrounding transaction commits."""
    from calibration.tasks import fit_study

    transaction.on_commit(lambda: fit_study.enqueue(fit_id))


_running_here: set[int] = set()  # fits this process is running now
_running_here_lock = threading.Lock()


@contextmanager
def _running_lock(fit_id: int) -> Iterator[None]:
    """Hold, on PostgreSQL, the advisory lock that says this process is running the fit.

    Taken before the fit is claimed and released after its outcome is stored. It is a
    session lock: if the worker dies, its connection closes and the lock goes with it.
    """
    with _running_here_lock:
        _running_here.add(fit_id)
    try:
        if connection.vendor != "postgresql":
            yield
            return
        key = [RUNNING_LOCK_CLASS, fit_id & 0x7FFFFFFF]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
        try:
            yield
        finally:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
            except DatabaseError:
                logger.warning("fit %s: connection lost; its running lock went with it", fit_id)
    finally:
        with _running_here_lock:
            _running_here.discard(fit_id)


def _lost_running(*, study_id: int, now) -> list[int]:
    """Ids of the study's running fits whose worker is gone."""
    with _running_here_lock:
        # Alive by definition; and advisory locks are re-entrant, so a probe from the
        # session that holds one would wrongly find it free.
        here = list(_running_here)
    running = Fit.objects.filter(study_id=study_id, status=Fit.Status.RUNNING).exclude(pk__in=here)
    if connection.vendor != "postgresql":
        return list(
            running.filter(started_at__lt=now - STALE_RUNNING_AFTER).values_list("pk", flat=True)
        )
    lost = []
    with connection.cursor() as cursor:
        for fit_id in running.values_list("pk", flat=True):
            # Free means no live session holds it. A transaction-level probe: released at
            # once in autocommit, or when the caller's transaction ends.
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)",
                [RUNNING_LOCK_CLASS, fit_id & 0x7FFFFFFF],
            )
            if cursor.fetchone()[0]:
                lost.append(fit_id)
    return lost


def _expire_stale_running(*, study_id: int, now) -> int:
    """Mark fits whose worker was lost as failed; returns how many."""
    lost = _lost_running(study_id=study_id, now=now)
    if not lost:
        return 0
    reason = (
        "its worker's database session ended while it ran (the worker was killed or lost "
        "its connection)"
        if connection.vendor == "postgresql"
        else f"still running after {STALE_RUNNING_AFTER}"
    )
    return Fit.objects.filter(pk__in=lost, status=Fit.Status.RUNNING).update(
        status=Fit.Status.FAILED,
        finished_at=now,
        error=f"worker lost: {reason}; marked failed and a new fit queued",
    )


def request_fit(*, study: Study, trigger: str, requested_by: User | None = None) -> Fit:
    """Ask for a fit of ``study``; returns the fit that will answer the request.

    Coalesces: if a fit is already queued it is returned (no second one). If one is
    running, one queued follow-up is created (at most one, by constraint). The task is
    enqueued on commit.
    """
    now = timezone.now()
    with transaction.atomic():
        lost = _expire_stale_running(study_id=study.pk, now=now)
        queued = Fit.objects.filter(study=study, status=Fit.Status.QUEUED).first()
        if queued is not None:
            if lost:
                # Its task may already have been consumed (and given up, because the lost
                # fit held the running slot): enqueue it again; claiming is idempotent.
                _enqueue(queued.pk)
            return queued
        try:
            with transaction.atomic():
                fit = Fit.objects.create(
                    study=study,
                    status=Fit.Status.QUEUED,
                    trigger=trigger,
                    requested_by=requested_by,
                )
        except IntegrityError:
            # A concurrent request queued one between our read and our insert.
            return Fit.objects.get(study=study, status=Fit.Status.QUEUED)
        _enqueue(fit.pk)
        return fit


def note_new_labels(*, study: Study) -> Fit | None:
    """Called after each grade: request a fit once ``study.refit_every`` labels came in.

    Labels are counted since the newest fit that started: responses whose first live grade
    came after its start. (A response first graded between the start and the moment the
    fit counted is in the fit and counted here too, so a refit can come a few labels early,
    never late.) Returns the fit that will include the new labels, or None when it is not
    time yet. A running fit whose worker is gone is retried at once (it would block every
    later fit).

    This runs after every grade, so it costs one statement when nothing is due: the fit
    state and the count since the last fit together, bounded by the labels since that fit
    rather than by all of the study's labels. The lost-worker probe runs only while a fit
    of the study is running.
    """
    queued_id, running, seen = _refit_state(study_id=study.pk)
    if running and _lost_running(study_id=study.pk, now=timezone.now()):
        return request_fit(study=study, trigger=Fit.Trigger.LABELS)
    if queued_id is not None:
        # It has not counted yet, so it will see these labels.
        return Fit.objects.filter(pk=queued_id).first() or request_fit(
            study=study, trigger=Fit.Trigger.LABELS
        )
    if seen is None:
        if Annotation.objects.filter(study=study).count_graded_responses() < study.refit_every:
            return None
    elif seen < study.refit_every:
        return None
    return request_fit(study=study, trigger=Fit.Trigger.LABELS)


def _refit_state(*, study_id: int) -> tuple[int | None, int, int | None]:
    """(queued fit id, running fits, responses first graded since the newest started fit).

    The last is None when no fit has started. One statement, plain SQL (it runs after
    every grade).
    """
    fit, annotation = Fit._meta.db_table, Annotation._meta.db_table
    sql = f"""
        SELECT
            (SELECT id FROM {fit} WHERE study_id = %s AND status = %s LIMIT 1),
            (SELECT COUNT(*) FROM {fit} WHERE study_id = %s AND status = %s),
            last.started_at,
            (SELECT COUNT(DISTINCT a.response_id) FROM {annotation} a
             WHERE a.study_id = %s AND {live_grade_sql("a")}
               AND a.created_at >= last.started_at
               AND NOT EXISTS (
                   SELECT 1 FROM {annotation} b
                   WHERE b.response_id = a.response_id AND {live_grade_sql("b")}
                     AND b.created_at < last.started_at))
        FROM (SELECT 1 AS one) AS here LEFT JOIN (
            SELECT started_at FROM {fit}
            WHERE study_id = %s AND started_at IS NOT NULL AND status <> %s
            ORDER BY started_at DESC, id DESC LIMIT 1
        ) AS last ON 1 = 1"""
    params: list[Any] = [
        study_id,
        Fit.Status.QUEUED,
        study_id,
        Fit.Status.RUNNING,
        study_id,
        study_id,
        Fit.Status.QUEUED,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        queued_id, running, started_at, seen = cursor.fetchone()
    return queued_id, int(running), None if started_at is None else int(seen or 0)


# ---------------------------------------------------------------------------------------
# Running fits


def fit_seed(fit_id: int) -> int:
    """Deterministic sampler seed of a fit (31 bits, from its id)."""
    digest = hashlib.sha256(f"baton-fit-{fit_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _claim(fit_id: int, *, retry: bool = True) -> bool:
    """``queued → running``, atomically; False if another worker has it or one is running."""
    try:
        with transaction.atomic():
            return bool(
                Fit.objects.filter(pk=fit_id, status=Fit.Status.QUEUED).update(
                    status=Fit.Status.RUNNING, started_at=timezone.now()
                )
            )
    except IntegrityError:
        # Another fit of the study is running; the one finishing hands over to us, unless
        # its worker is gone: then it is marked failed and this one takes its place.
        study_id = Fit.objects.filter(pk=fit_id).values_list("study_id", flat=True).first()
        if not retry or study_id is None:
            return False
        if not _expire_stale_running(study_id=study_id, now=timezone.now()):
            return False
        return _claim(fit_id, retry=False)


def run_fit(*, fit_id: int) -> Fit | None:
    """Run one queued fit: count, sample each dimension, summarise, store.

    Returns the fit, or None when there was nothing to do (not queued any more, or another
    fit of the study is running: that one re-enqueues this one when it finishes).
    On an exception the fit is marked failed with the error; earlier fits keep serving.
    """
    with _running_lock(fit_id):
        if not _claim(fit_id):
            logger.info("fit %s not claimed (taken, finished, or study busy)", fit_id)
            return None
        fit = Fit.objects.select_related("study").get(pk=fit_id)
        try:
            result = _compute(fit)
        except Exception as exc:  # noqa: BLE001 — any failure is recorded on the fit
            logger.exception("fit %s failed", fit_id)
            _finish(
                fit,
                status=Fit.Status.FAILED,
                error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}",
            )
        else:
            _finish(fit, status=Fit.Status.SUCCEEDED, **result)
    fit.refresh_from_db()
    return fit


def fit_now(
    *, study: Study, wait: bool = False, poll_seconds: float = 2.0, timeout: float = 3600.0
) -> Fit:
    """Fit ``study`` in this process (``manage.py runfits``), not in a worker.

    Requests a fit (coalesced like any other) and runs it here. If another fit of the
    study is running, raises :class:`FitBusy` unless ``wait``, in which case it polls until
    that one finishes and then runs the follow-up, or returns it if a worker ran it.
    """
    fit = request_fit(study=study, trigger=Fit.Trigger.MANUAL)
    deadline = time.monotonic() + timeout
    while True:
        done = run_fit(fit_id=fit.pk)
        fit.refresh_from_db()
        if done is not None or fit.status in (Fit.Status.SUCCEEDED, Fit.Status.FAILED):
            return fit
        if not wait:
            raise FitBusy(
                f"another fit of {study.slug!r} is running; use --wait to queue behind it"
            )
        if time.monotonic() > deadline:
            raise FitBusy(f"fit {fit.pk} still {fit.status} after {timeout:.0f} s")
        time.sleep(poll_seconds)


class FitBusy(RuntimeError):
    """A fit could not start because another fit of the study is running."""


def _finish(fit: Fit, **fields: Any) -> None:
    """Store the outcome if the fit is still ours, then hand over to a queued follow-up."""
    with transaction.atomic():
        stored = Fit.objects.filter(pk=fit.pk, status=Fit.Status.RUNNING).update(
            finished_at=timezone.now(), **fields
        )
        if not stored:
            logger.warning("fit %s was declared lost meanwhile; its result is dropped", fit.pk)
        follow_up = (
            Fit.objects.filter(study_id=fit.study_id, status=Fit.Status.QUEUED)
            .values_list("pk", flat=True)
            .first()
        )
        if follow_up is not None:
            # Its own task may have run while we held the running slot and given up.
            _enqueue(follow_up)


def _compute(fit: Fit) -> dict[str, Any]:
    """The expensive part, outside any transaction: counts, sampling, summaries."""
    from calibration.bayes.posterior import MODEL_VERSION

    study = fit.study
    data = study_counts(study=study)
    # Counted with the data, not after sampling: the boundary must use what the fit saw.
    arm_labels = graded_per_arm(study=study)
    audits = _audits(study=study, data=data)
    seed = fit_seed(fit.pk)
    # Record what the fit saw as soon as it is known (note_new_labels counts from it).
    Fit.objects.filter(pk=fit.pk).update(
        n_labels=data.n_labels,
        n_responses=data.n_responses,
        seed=seed,
        counts_hash=data.digest(),
        model_version=MODEL_VERSION,
        bins=data.bins,
    )
    fitter = get_fitter()
    fits: dict[str, DimensionFit] = {}
    diagnostics: dict[str, dict[str, float | bool]] = {}
    # The Fitter is not thread-safe; a db_worker runs one task at a time, but a threaded
    # server with the immediate backend (development) could run two fits at once.
    assert data.cells is not None
    with _fit_lock:
        for i, key in enumerate(data.counts):
            t0 = time.perf_counter()
            dim_fit = fitter.fit(data.cells, i, seed=seed + i, **FIT_SETTINGS)
            seconds = time.perf_counter() - t0
            fits[key] = dim_fit
            diagnostics[key] = _dimension_diagnostics(dim_fit, seconds)
    summary = build_summary(study=study, fits=fits, data=data, arm_labels=arm_labels, audits=audits)
    return {
        "diagnostics": diagnostics,
        "trustworthy": all(f.ok for f in fits.values()),
        "summary": summary,
        "draws": dump_draws(fits),
        "error": "",
    }


def _dimension_diagnostics(dim_fit: DimensionFit, seconds: float) -> dict[str, float | bool]:
    d = dim_fit.diagnostics
    out: dict[str, float | bool] = {
        "max_rhat": float(d["max_rhat"]),
        "min_ess_bulk": float(d["min_ess_bulk"]),
        "divergences": int(d["divergences"]),
        "seconds": round(seconds, 3),
        "ok": bool(dim_fit.ok),
    }
    for extra in (
        "compile_seconds",
        "sample_seconds",
        "chains",
        "draws",
        "tune",
        # The divergence retry and ESS top-ups (Fitter.fit): how many, and the first run
        # alone.
        "target_accept",
        "retries",
        "retry_seconds",
        "top_ups",
        "top_up_seconds",
        "max_rhat_first",
        "min_ess_bulk_first",
        "divergences_first",
    ):
        if extra in d:
            out[extra] = float(d[extra])
    return out


# ---------------------------------------------------------------------------------------
# Draws


_draws_cache: OrderedDict[tuple[int, object], dict[str, DimensionFit]] = OrderedDict()
_draws_cache_lock = threading.Lock()
_DRAWS_CACHE_SIZE = 16


def load_draws(fit: Fit) -> dict[str, DimensionFit]:
    """Posterior draws of a succeeded fit by dimension key (cached in-process).

    Each value has ``theta`` ``(S, M, R)`` and ``confusion`` ``(S, M, 2, J)`` (float32,
    arm 0 the incumbent, axes named by ``arms``/``regions``). A fit's draws never change;
    the key adds the finish time to the id so that a reused id (a restored database, a
    test database) can never serve another fit's draws.
    """
    key = (fit.pk, fit.finished_at)
    with _draws_cache_lock:
        hit = _draws_cache.get(key)
        if hit is not None:
            _draws_cache.move_to_end(key)
            return hit
    blob = fit.draws
    if blob is None:
        blob = Fit.objects.values_list("draws", flat=True).get(pk=fit.pk)
    if not blob:
        raise ValueError(f"fit {fit.pk} has no draws (status {fit.status})")
    draws = parse_draws(bytes(blob))
    with _draws_cache_lock:
        _draws_cache[key] = draws
        while len(_draws_cache) > _DRAWS_CACHE_SIZE:
            _draws_cache.popitem(last=False)
    return draws


def latest_fit(study: Study) -> Fit | None:
    """The newest succeeded fit of ``study`` (trustworthy or not), or None."""
    return (
        Fit.objects.filter(study=study, status=Fit.Status.SUCCEEDED)
        .defer("draws")
        .order_by("-finished_at", "-id")
        .first()
    )


# ---------------------------------------------------------------------------------------
# Summaries


def _finite(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (PostgreSQL's jsonb refuses them)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _delta(d: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "mean",
        "lower",
        "upper",
        "p_noninferior",
        "p_inferior",
        "z",
        "required_z",
        "required_p",
        "required_z_nogo",
        "fraction",
        "sd",
        "skew",
        "verdict",
    )
    return {k: d[k] for k in keys}


def graded_per_arm(*, study: Study) -> dict[str, int]:
    """Graded responses per arm key (live graded annotations), as
    ``Annotation.objects.count_graded_responses`` counts them."""
    rows = (
        Annotation.objects.live_grades()
        .filter(study=study)
        .values("response__arm__key")
        .annotate(n=Count("response_id", distinct=True))
    )
    return {r["response__arm__key"]: int(r["n"]) for r in rows}


def _audits(*, study: Study, data: StudyCounts) -> dict[tuple[str, str], Any] | None:
    """The audit sample's Δ per (candidate, dimension), or None when the study has no audit."""
    if study.audit_share <= 0:
        return None
    from calibration.audit_data import audit_estimates

    return audit_estimates(study=study, weights=data.traffic_shares)


def _final_at_budget(*, study: Study, n_labels: int, plan: int = 0) -> dict[str, Any] | None:
    """The summary whose verdicts are final: the first fit at or past the budget.

    None while the budget is not reached. The sequential rule's guarantee covers looks up
    to the budget only (grading on to twice the budget and looking again gave 7.5% wrong
    go), so once a fit of the current plan has seen ``n ≥ N`` graded responses, later fits
    report its verdicts, whatever their own draws say.
    """
    if n_labels < study.label_budget:
        return None
    summaries = (
        Fit.objects.filter(
            study=study,
            status=Fit.Status.SUCCEEDED,
            n_labels__gte=study.label_budget,
            summary__label_budget=study.label_budget,
        )
        .order_by("finished_at", "id")
        .values_list("summary", flat=True)
    )
    # Of the plan in force (a re-plan to another budget and back is a new plan).
    return next((s for s in summaries if (s or {}).get("plan", 0) == plan), None)


def _keep_verdicts(raw: dict[str, Any], final: dict[str, Any]) -> None:
    """Overwrite ``raw``'s verdicts (decision.summarise's dict) with those of ``final``."""
    from calibration.bayes.decision import combine_verdicts
    from calibration.bayes.summaries import verdict_table

    table = verdict_table(final) or {}
    for cand_key, cand in raw["candidates"].items():
        for dim_key, ds in cand["dimensions"].items():
            kept = table.get((cand_key, dim_key))
            if kept is not None:
                ds["overall"]["verdict"] = kept
                ds["final"] = True
        cand["verdict"] = combine_verdicts(
            [d["overall"]["verdict"] for d in cand["dimensions"].values()],
            all(d["fit_ok"] for d in cand["dimensions"].values()),
        )


def build_summary(
    *,
    study: Study,
    fits: dict[str, DimensionFit],
    data: StudyCounts,
    arm_labels: dict[str, int] | None = None,
    audits: dict[tuple[str, str], Any] | None = None,
) -> dict:
    """The verdict matrix, per-region deltas and judge behaviour, as JSON for Fit.summary.

    Numbers come from :func:`calibration.bayes.decision.summarise` (traffic-weighted Δ per
    candidate and dimension, 95% interval, P(Δ > −margin), verdict at the study's
    confidence); this only reshapes them into lists in arm, dimension and region order, and
    adds names and traffic-weighted pass rates per arm.
    """
    from calibration.bayes.decision import summarise

    if arm_labels is None:
        arm_labels = graded_per_arm(study=study)
    from calibration.replans import current_designs

    plan, designs = current_designs(study)
    if study.audit_share <= 0:
        audits = None
    elif audits is None:
        audits = _audits(study=study, data=data)
    raw = summarise(
        fits,
        weights=data.traffic_shares,
        margins=data.margins,
        confidence=study.confidence,
        counts=data.counts,
        # Verdicts are read at every fit: the sequential rule needs how far into the budget,
        # per candidate (its own arm and the incumbent's), not study-wide.
        labels=data.n_labels,
        budget=study.label_budget,
        arm_labels=arm_labels,
        audits=audits,
        designs=designs,
    ).to_dict()
    final = _final_at_budget(study=study, n_labels=data.n_labels, plan=plan)
    if final is not None:
        _keep_verdicts(raw, final)
    arms = {a.key: a for a in study.arms.all()}
    regions = list(study.regions.order_by("position", "id"))
    dimensions = {d.key: d for d in study.dimensions.all()}
    w = data.traffic_shares

    dims_out = []
    for key, fit in fits.items():
        rates = np.asarray(fit.theta, dtype=np.float64) @ w  # (S, M)
        lo, hi = np.quantile(rates, [0.025, 0.975], axis=0)
        dims_out.append(
            {
                "key": key,
                "title": dimensions[key].title,
                "margin": data.margins[key],
                "n_bins": fit.n_bins,
                "pass_rates": [
                    {"arm": a, "mean": rates[:, i].mean(), "lower": lo[i], "upper": hi[i]}
                    for i, a in enumerate(fit.arms)
                ],
            }
        )

    candidates_out = []
    for cand_key, cand in raw["candidates"].items():
        dims = []
        for dim_key, ds in cand["dimensions"].items():
            judge = ds["judge"]
            judge_arms = [
                {
                    "arm": arm_key,
                    "sensitivity": (judge["sensitivity"] or {}).get(arm_key),
                    "specificity": (judge["specificity"] or {}).get(arm_key),
                    "confusion_mean": judge["confusion_mean"][arm_key],
                }
                for arm_key in (ds["incumbent"], cand_key)
            ]
            dims.append(
                {
                    "dimension": dim_key,
                    "margin": ds["margin"],
                    **_delta(ds["overall"]),
                    "final": bool(ds.get("final", False)),
                    # The design-based check (calibration.bayes.audit); None: no estimate.
                    "audit": ds["audit"],
                    "audit_agrees": ds["audit_agrees"],
                    "fit_ok": ds["fit_ok"],
                    "naive_judge_delta": ds["naive_judge_delta"],
                    "regions": [{"region": g.key, **_delta(ds["regions"][g.key])} for g in regions],
                    "judge": {
                        "p_differs": judge["p_differs"],
                        "tol": judge["tol"],
                        "differs": judge["differs"],
                        "difference": judge["difference"],
                        "arms": judge_arms,
                    },
                }
            )
        candidates_out.append(
            {
                "arm": cand_key,
                "model_name": arms[cand_key].model_name,
                "verdict": cand["verdict"],
                "dimensions": dims,
            }
        )

    incumbent = arms[raw["incumbent"]]
    return _finite(
        {
            "confidence": study.confidence,
            "label_budget": study.label_budget,
            "audit_share": study.audit_share,
            "plan": plan,
            "arm_labels": arm_labels,
            "incumbent": {"arm": incumbent.key, "model_name": incumbent.model_name},
            "regions": [
                {"key": g.key, "name": g.name, "traffic_share": w[i]} for i, g in enumerate(regions)
            ],
            "dimensions": dims_out,
            "candidates": candidates_out,
        }
    )
