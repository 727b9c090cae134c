"""The annotation queue: lease responses to annotators, take their grades, skips and undos.

Rules (issue 4):

- ``next_item`` re-serves the annotator's open, unexpired assignment (a reload burns
  nothing); otherwise, with probability ``overlap_share`` it gives a response graded by
  exactly one *other* annotator (policy ``overlap``), else it asks the selection rule for a
  cell and draws a response uniformly inside it.
- Before asking the selection rule, with probability ``audit_share`` it makes an *audit*
  pick (policy ``audit``): a response drawn uniformly over all the study's responses,
  whatever has been graded (:func:`_draw_audit`), for the model-free check of
  :mod:`calibration.bayes.audit`.
- *Available* means: no live graded annotation by anyone (undone ones do not count), no
  live annotation (grade or skip) by this annotator, no unexpired open lease by anyone.
  A response is never leased to two annotators at once, except for overlap picks.
- Every write on a response happens while the response is locked: ``next_item`` try-locks
  candidates (skipping busy ones) and re-checks availability *after* the lock (a new
  statement, so on PostgreSQL's READ COMMITTED it sees whatever the previous lock holder
  committed); ``submit``/``skip``/``undo`` lock the response and wait. On PostgreSQL the
  lock is a transaction-level advisory lock keyed by (the response table's oid, the id),
  not a row lock: a row lock writes the tuple (WAL, a dirtied page) and clears its page's
  all-visible bit, which turned the index-only scans below into heap fetches for every
  page a pick had touched. On SQLite the settings open every transaction IMMEDIATE, so
  writers are serialised.
- Drawing inside a cell is an indexed query: the cell's size and its *fences* (its ids at
  ranks 0, F, 2F, …) come with the pick from the stored totals; a uniform rank k is the
  (k mod F)-th id from fence k // F (an index-only scan of ``response_pick_idx``, which
  carries the id, of at most F entries however large the cell); reject if the row is
  unavailable or locked, redraw. Rejection keeps the draw exactly uniform over the
  available responses. The uniform fallback over a large study draws ids in the study's
  id range instead (O(1)).
- The per-pick statements are plain SQL: the ORM's compilation of them cost more CPU than
  PostgreSQL's execution (14 → 5 ms of CPU per pick, measured).

Recorded ``probability`` is conditional on the branch named by ``policy``: for ``overlap``
it is ``overlap_share / N_overlap_candidates``; for a selection-rule pick it is the rule's
``CellPick.probability``, which is already the probability of the response the uniform
in-cell draw yields (``calibration.bayes.select.choose_cell``: ε/N + (1−ε)·1[best]/(|G|·n_c));
for the queue's own ``uniform`` fallback (the selection rule offering no cell or failing, or
the chosen cell ran dry) ``1 / N_available`` over the whole study. The selection rule counts a
cell's available responses for everyone; this annotator's own skips in it are not subtracted
there.

Who may grade: only members of the study with the *annotator* role. Leads and admins see
per-model dashboards, so their grades would not be blind; a lead who wants to grade uses
an annotator account. Enforced here (``PermissionDenied``) and in the API.

The label budget is a soft limit: ``next_item`` stops leasing new responses once the
graded responses plus other annotators' open leases reach it, but two requests racing for
the last slot on PostgreSQL can both get one, and a grade that arrives is always kept.

Side-by-side pairs (``queue_pairs``) and corrections (``history``) build on these rules
with the queue's public steps: ``study_state`` (the study and its counts, in one query),
``lock_response``, ``is_available`` and ``is_overlap_candidate`` (re-checks after the
lock), ``lease``, ``validate_labels`` and ``notify_new_labels``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.services import record

from .. import hooks
from ..models import (
    Annotation,
    Assignment,
    Label,
    Membership,
    Prompt,
    Region,
    Response,
    Study,
    live_grade_sql,
    live_sql,
)

logger = logging.getLogger(__name__)

# How many times a draw may be rejected (unavailable or locked by a concurrent request)
# before the exact, slower path (anti-join scan of the cell) takes over.
MAX_REJECTIONS = 12
# A uniform draw over a study at least this big tries ids in the study's id range; below,
# a uniform offset in the pick index (a scan as long as the offset).
LARGE_STUDY = 10_000

REASON_NOT_ACTIVE = "the study is not active"
REASON_BUDGET = "the label budget is spent"
REASON_BUDGET_RESERVED = (
    "the rest of the label budget is reserved by other annotators' open items; "
    "try again in a few minutes"
)
REASON_NOTHING_LEFT = "nothing left for you to grade in this study"


class QueueError(Exception):
    """Base of the queue's refusals; ``reason`` is a sentence an annotator can read."""

    code = "queue_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QueueClosed(QueueError):
    """No item can be given: study not active, budget spent, verdicts settled, nothing left."""

    code = "queue_closed"


class LeaseExpired(QueueError):
    """A late submission that cannot be kept: someone else graded the response meanwhile.

    A sibling of ``QueueClosed`` (both are ``QueueError``), not a subclass: the queue is
    still open, only this grade is refused.
    """

    code = "lease_expired"


class AssignmentDone(QueueError):
    """The assignment was already answered (graded or skipped) under another client key."""

    code = "assignment_done"


class UndoRefused(QueueError):
    """Undo is out of its window, or the annotation is already undone."""

    code = "undo_refused"


# --------------------------------------------------------------------------- integration


@dataclass(frozen=True)
class _Pick:
    """Where the selection rule wants the next label (mirrors calibration's CellPick)."""

    arm_id: int
    region_id: int
    cell: str
    policy: str
    probability: float
    score: float | None
    fit_id: int | None
    total: int | None = None  # responses in the cell, if the selection rule has counted them
    fences: tuple[int, tuple[int, ...]] | None = None  # (every, ids at ranks 0, every, …)


def _selection_status(*, study: Study, graded: int) -> tuple[bool, str]:
    """Ask the selection rule whether the study still wants labels (open, reason).

    ``graded`` (distinct graded responses, just counted) spares the rule counting again.
    """
    return hooks.selection_status(study=study, graded=graded)


def _selection_pick(*, study: Study, rng: np.random.Generator) -> _Pick | None:
    """The selection rule's cell, or None for the uniform fallback. The one call site."""
    try:
        pick = hooks.pick_cell(study=study, rng=rng)
    except Exception:
        # An annotator should keep working if the selection rule breaks; the fallback is
        # uniform, recorded as such.
        logger.exception("selection.pick_cell failed for study %s; picking uniformly", study.pk)
        return None
    if pick is None:
        return None
    return _Pick(
        arm_id=pick.arm_id,
        region_id=pick.region_id,
        cell=pick.cell,
        policy=pick.policy,
        probability=float(pick.probability),
        score=None if pick.score is None else float(pick.score),
        fit_id=pick.fit_id,
        total=pick.total,
        fences=pick.fences,
    )


def notify_new_labels(*, study: Study) -> None:
    """After commit, tell the calibration side that labels changed (the one call site)."""
    transaction.on_commit(lambda: hooks.note_new_labels(study=study))


# --------------------------------------------------------------------------- helpers


class _T:
    """Table names for the few statements written in SQL (the per-pick hot path)."""

    study = Study._meta.db_table
    response = Response._meta.db_table
    annotation = Annotation._meta.db_table
    assignment = Assignment._meta.db_table
    membership = Membership._meta.db_table
    user = get_user_model()._meta.db_table
    prompt = Prompt._meta.db_table
    region = Region._meta.db_table


def _sql(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _db_time(value: datetime) -> Any:
    """A datetime as the backend stores it (SQLite keeps naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def can_grade(*, study: Study, user: Any) -> bool:
    """Whether the user may ask for items and grade them in this study."""
    if not getattr(user, "is_authenticated", False):
        return False
    return Membership.objects.filter(
        study=study, user=user, role=Membership.Role.ANNOTATOR
    ).exists()


def _live_graded(study_id: int) -> QuerySet[Annotation]:
    return Annotation.objects.live_grades().filter(study_id=study_id)


def _open_leases(study_id: int, now: datetime) -> QuerySet[Assignment]:
    return Assignment.objects.filter(
        study_id=study_id, completed_at__isnull=True, expires_at__gt=now
    )


def _cell_filter(pick: _Pick | None, prefix: str = "") -> dict[str, Any]:
    if pick is None:
        return {}
    return {
        f"{prefix}arm_id": pick.arm_id,
        f"{prefix}region_id": pick.region_id,
        f"{prefix}cell": pick.cell,
    }


def _unavailable_count(*, study: Study, annotator: Any, now: datetime, pick: _Pick | None) -> int:
    """How many responses of the cell (or study) are graded, mine, or leased right now.

    These sets are small (bounded by the budget and the number of annotators), so the
    union is cheap even when the cell holds a million responses.
    """
    cell = _cell_filter(pick, "response__")
    graded = _live_graded(study.pk).filter(**cell).values("response_id")
    mine = (
        Annotation.objects.live()
        .filter(study_id=study.pk, annotator=annotator, **cell)
        .values("response_id")
    )
    leased = _open_leases(study.pk, now).filter(**cell).values("response_id")
    return graded.union(mine, leased).count()


def _study_extent(study: Study) -> tuple[int, int, int]:
    """(responses, lowest id, highest id) of the study, from the stored per-cell totals."""
    return hooks.study_extent(study=study)


_CELL_WHERE = "study_id = %s AND arm_id = %s AND region_id = %s AND cell = %s"
#: The order of ``response_pick_idx`` after its leading ``study_id``: a total order (ids are
#: unique) that an index scan yields without sorting.
_PICK_ORDER = "arm_id, region_id, cell, id"


def _cell_params(study: Study, pick: _Pick) -> list[Any]:
    return [study.pk, pick.arm_id, pick.region_id, pick.cell]


def _response_count(*, study: Study, pick: _Pick | None) -> int:
    """Responses in the cell or in the study.

    A cell's size comes with the pick when the selection rule read it from the stored
    totals; otherwise an index-only count of the cell. The study's size is the sum of the
    stored totals.
    """
    if pick is not None and pick.total is not None:
        return pick.total
    if pick is not None:
        sql = f"SELECT COUNT(*) FROM {_T.response} WHERE {_CELL_WHERE}"
        return int(_sql(sql, _cell_params(study, pick))[0][0])
    return _study_extent(study)[0]


def _offset_candidate(*, study: Study, pick: _Pick | None, total: int, rng: np.random.Generator):
    """One response id drawn uniformly from the cell or study (available or not), or None.

    A cell, or a small study: a uniform offset in the order of ``response_pick_idx`` (an
    explicit ORDER BY that the index already provides, so no sort). Without one the order
    is whatever the plan gives, and PostgreSQL may plan two offsets differently (or switch
    to a generic plan once the statement is prepared): then the offsets no longer map
    one-to-one to rows, and a row can be drawn twice as often or never (seen once in CI:
    one response of four never drawn in 240 draws). A large study, whose offset scan
    would be long: a uniform id in the study's id range, kept if it belongs to the study —
    uniform too, and O(1) while the study's ids are dense (one import after another).
    """
    if pick is None and total >= LARGE_STUDY:
        _, lo, hi = _study_extent(study)
        response_id = int(rng.integers(lo, hi + 1))
        if Response.objects.filter(pk=response_id, study_id=study.pk).exists():
            return response_id
        return None
    offset = int(rng.integers(total))
    if pick is None:
        rows = _sql(
            f"SELECT id FROM {_T.response} WHERE study_id = %s "
            f"ORDER BY {_PICK_ORDER} LIMIT 1 OFFSET %s",
            [study.pk, offset],
        )
    elif pick.fences and pick.fences[0] > 0 and offset // pick.fences[0] < len(pick.fences[1]):
        # Rank ``offset`` is the (offset mod F)-th id from the fence at rank F·(offset // F):
        # a scan of at most F index entries, however large the cell.
        every, ids = pick.fences
        fence = offset // every
        rows = _sql(
            f"SELECT id FROM {_T.response} WHERE {_CELL_WHERE} AND id >= %s "
            "ORDER BY id LIMIT 1 OFFSET %s",
            [*_cell_params(study, pick), ids[fence], offset - fence * every],
        )
    else:
        rows = _sql(
            f"SELECT id FROM {_T.response} WHERE {_CELL_WHERE} ORDER BY id LIMIT 1 OFFSET %s",
            [*_cell_params(study, pick), offset],
        )
    return int(rows[0][0]) if rows else None


def _available_qs(
    *, study: Study, annotator: Any, now: datetime, pick: _Pick | None
) -> QuerySet[Response]:
    """Exactly the available responses (anti-joins): the slow, always-correct path."""
    return Response.objects.filter(study_id=study.pk, **_cell_filter(pick)).filter(
        ~Exists(Annotation.objects.live_grades().filter(response=OuterRef("pk"))),
        ~Exists(Annotation.objects.live().filter(response=OuterRef("pk"), annotator=annotator)),
        ~Exists(
            Assignment.objects.filter(
                response=OuterRef("pk"), completed_at__isnull=True, expires_at__gt=now
            )
        ),
    )


def _advisory_lock(table: str, row_id: int, *, skip_locked: bool) -> bool:
    """PostgreSQL: lock ``(table, row_id)`` until the transaction ends; False if busy.

    Keys are (the table's oid, the id folded to 31 bits), the namespace convention of
    :mod:`calibration.selection`. Two ids that fold alike share a lock: that can only make
    a pick skip a free response or a submit wait briefly, never let two holders in.
    """
    function = "pg_try_advisory_xact_lock" if skip_locked else "pg_advisory_xact_lock"
    rows = _sql(f"SELECT {function}(%s::regclass::oid::int, %s)", [table, row_id & 0x7FFFFFFF])
    return not skip_locked or bool(rows[0][0])


def lock_response(response_id: int, *, skip_locked: bool) -> bool:
    """Lock one response for this transaction; False if skip_locked and it is busy.

    Every queue write on a response holds this lock, so checks made after it see the
    previous holder's committed rows (the lock is released only after the holder's commit
    is visible). SQLite has no locks to take: its transactions are ``BEGIN IMMEDIATE``
    (settings), so only one writer runs at a time anyway; it checks the row exists.
    """
    if connection.vendor == "postgresql":
        return _advisory_lock(_T.response, response_id, skip_locked=skip_locked)
    return bool(_sql(f"SELECT id FROM {_T.response} WHERE id = %s", [response_id]))


def is_available(response_id: int, *, annotator: Any, now: datetime) -> bool:
    """Re-check one (locked) response; one statement after the lock, so it sees commits.

    Available: no live grade by anyone, no live grade or skip by this annotator, no
    unexpired open lease. (Plain SQL: this runs on every pick and the ORM's compilation
    of the same query costs more CPU than PostgreSQL's execution of it.) The first test is
    ``live_grade_sql`` or a live answer of mine, folded into one probe of the response.
    """
    rows = _sql(
        f"""SELECT 1 WHERE NOT EXISTS (
                SELECT 1 FROM {_T.annotation} a
                WHERE a.response_id = %s AND {live_sql("a")}
                  AND (a.status = %s OR a.annotator_id = %s))
            AND NOT EXISTS (
                SELECT 1 FROM {_T.assignment} s
                WHERE s.response_id = %s AND s.completed_at IS NULL AND s.expires_at > %s)""",
        [response_id, Annotation.Status.GRADED, annotator.pk, response_id, _db_time(now)],
    )
    return bool(rows)


def _draw(
    *, study: Study, annotator: Any, now: datetime, pick: _Pick | None, rng: np.random.Generator
) -> tuple[int, int] | None:
    """Draw one available response uniformly in the cell (or study) and lock it.

    Returns (response id, number of available responses the draw was uniform over — 0 when
    not counted, for a cell pick), or None when nothing is available.
    """
    total = _response_count(study=study, pick=pick)
    if total == 0:
        return None
    # A cell pick carries its own probability (the selection rule counted the cell), so the
    # size of the available set is only needed for the uniform fallback's 1/N.
    n_available = 0
    if pick is None:
        n_available = total - _unavailable_count(
            study=study, annotator=annotator, now=now, pick=None
        )
        if n_available <= 0:
            return None
    # Fast path: a uniform draw over the whole cell (or study), rejecting the unavailable
    # and the rows another request holds locked; rejection keeps it uniform.
    for _ in range(MAX_REJECTIONS):
        candidate = _offset_candidate(study=study, pick=pick, total=total, rng=rng)
        if candidate is None:
            continue
        if lock_response(candidate, skip_locked=True) and is_available(
            candidate, annotator=annotator, now=now
        ):
            return candidate, n_available
    # Exact path: offset inside the available set itself (anti-join scan of the cell).
    available = _available_qs(study=study, annotator=annotator, now=now, pick=pick)
    for _ in range(MAX_REJECTIONS):
        n_exact = available.count()
        if n_exact == 0:
            return None
        offset = int(rng.integers(n_exact))
        ordered = available.order_by("arm_id", "region_id", "cell", "id")  # as _PICK_ORDER
        ids = list(ordered.values_list("pk", flat=True)[offset : offset + 1])
        if (
            ids
            and lock_response(ids[0], skip_locked=True)
            and is_available(ids[0], annotator=annotator, now=now)
        ):
            return ids[0], n_exact
    return None


def _draw_overlap(
    *, study: Study, annotator: Any, now: datetime, rng: np.random.Generator
) -> tuple[int, int] | None:
    """A response graded (live) by exactly one other annotator, not by me, not leased."""
    candidates = (
        _live_graded(study.pk)
        .values("response_id")
        .annotate(n=Count("id"))
        .filter(n=1)
        .exclude(
            Exists(
                Annotation.objects.live().filter(
                    response=OuterRef("response_id"), annotator=annotator
                )
            )
        )
        .exclude(
            Exists(
                Assignment.objects.filter(
                    response=OuterRef("response_id"),
                    completed_at__isnull=True,
                    expires_at__gt=now,
                )
            )
        )
        .values_list("response_id", flat=True)
    )
    ids = list(candidates)
    if not ids:
        return None
    order = rng.permutation(len(ids))
    for i in order[: MAX_REJECTIONS * 2]:
        response_id = ids[int(i)]
        if lock_response(response_id, skip_locked=True) and is_overlap_candidate(
            response_id, annotator=annotator, now=now
        ):
            return response_id, len(ids)
    return None


def _labelled_elsewhere(response_id: int, *, annotator: Any, now: datetime) -> bool:
    """Graded live by anyone, or leased (unexpired, open) to another annotator."""
    return (
        Annotation.objects.live_grades().filter(response_id=response_id).exists()
        or Assignment.objects.filter(
            response_id=response_id, completed_at__isnull=True, expires_at__gt=now
        )
        .exclude(annotator=annotator)
        .exists()
    )


def _draw_audit(
    *,
    study: Study,
    annotator: Any,
    now: datetime,
    rng: np.random.Generator,
    clock: bool = False,
) -> tuple[int, int] | None:
    """One response drawn uniformly over *all* the study's responses, for the audit.

    Not through the selection rule, and not only over what is still available: a draw
    that lands on a response already graded (or leased to someone else) puts that response
    in the audit sample as it is (a completed ``audit`` assignment records the draw; its
    grade is, or will be, someone else's), and the draw goes on. Returns (response id,
    responses drawn over) for a response to lease, or None (then the usual pick follows).
    With the real clock (``clock``) a record is stamped when it is written, after the
    response's lock, as :func:`lease` stamps a lease: ``now`` was read before the write
    lock, and a record stamped with it could predate the lease it records.
    """
    total = _study_extent(study)[0]
    if total == 0:
        return None
    for _ in range(MAX_REJECTIONS):
        candidate = _offset_candidate(study=study, pick=None, total=total, rng=rng)
        if candidate is None or not lock_response(candidate, skip_locked=True):
            continue
        if is_available(candidate, annotator=annotator, now=now):
            return candidate, total
        if _labelled_elsewhere(candidate, annotator=annotator, now=now):
            stamp = timezone.now() if clock else now
            Assignment.objects.create(
                study=study,
                response_id=candidate,
                annotator=annotator,
                policy=Assignment.Policy.AUDIT,
                probability=min(1.0, study.audit_share / total),
                leased_at=stamp,
                expires_at=stamp + timedelta(seconds=1),
                completed_at=stamp,
            )
    return None


def is_overlap_candidate(response_id: int, *, annotator: Any, now: datetime) -> bool:
    """Whether a response can be an overlap pick for this annotator: graded by exactly one
    other annotator, not answered by this one, not under an open lease."""
    live = Annotation.objects.live().filter(response_id=response_id)
    graded = [a for a in live if a.status == Annotation.Status.GRADED]
    mine = [a for a in live if a.annotator_id == annotator.pk]
    leased = Assignment.objects.filter(
        response_id=response_id, completed_at__isnull=True, expires_at__gt=now
    ).exists()
    return len(graded) == 1 and not mine and not leased


def study_state(*, study_id: int, annotator: Any, now: datetime) -> Study:
    """The study, fresh, with ``is_grader``, ``graded`` and ``reserved`` — in one query.

    ``graded``: distinct responses with a live grade (what the budget counts); ``reserved``:
    other annotators' open leases that will each add a graded response (overlap excluded).
    """
    sql = f"""
        SELECT st.*,
            EXISTS (SELECT 1 FROM {_T.membership} m
                    WHERE m.study_id = st.id AND m.user_id = %s AND m.role = %s) AS is_grader,
            (SELECT COUNT(DISTINCT a.response_id) FROM {_T.annotation} a
             WHERE a.study_id = st.id AND {live_grade_sql("a")}) AS graded,
            (SELECT COUNT(*) FROM {_T.assignment} s
             WHERE s.study_id = st.id AND s.completed_at IS NULL AND s.expires_at > %s
               AND s.policy <> %s AND s.annotator_id <> %s) AS reserved
        FROM {_T.study} st WHERE st.id = %s"""
    params = [
        annotator.pk,
        Membership.Role.ANNOTATOR,
        _db_time(now),
        Assignment.Policy.OVERLAP,
        annotator.pk,
        study_id,
    ]
    found = list(Study.objects.raw(sql, params))
    if not found:
        raise Study.DoesNotExist(f"no study {study_id}")
    return found[0]


def _lock_annotator(annotator: Any) -> None:
    """Serialise one annotator's own queue calls (a double click must not lease twice)."""
    if connection.vendor == "postgresql":
        _advisory_lock(_T.user, annotator.pk, skip_locked=False)


def _current_assignment(
    *, study: Study, annotator: Any, now: datetime, partners: bool = True
) -> Assignment | None:
    """The annotator's latest open lease in the study; with ``partners=False`` never the
    partner half of a side-by-side pair (see ``_is_partner_half``)."""
    found = list(
        Assignment.objects.raw(
            f"""SELECT * FROM {_T.assignment}
                WHERE study_id = %s AND annotator_id = %s
                  AND completed_at IS NULL AND expires_at > %s
                ORDER BY leased_at DESC, id DESC""",
            [study.pk, annotator.pk, _db_time(now)],
        )
    )
    if not partners:
        found = [a for a in found if not _is_partner_half(a, found)]
    return found[0] if found else None


def _is_partner_half(assignment: Assignment, leases: list[Assignment]) -> bool:
    """Whether an open lease is the half of a pair picked second, to go with the first.

    Policy ``partner`` says so; an overlap pick's partner has policy ``overlap`` like the
    first, and is the later of the two. Which arm a partner comes from follows from the
    first pick (the incumbent's for a candidate's), so a client that could tell the two
    halves apart would learn the arm: only the page, which shows both, serves it.
    """
    if assignment.pair_key is None:
        return False
    if assignment.policy == Assignment.Policy.PARTNER:
        return True
    order = (assignment.leased_at, assignment.pk)
    return any(
        other.pair_key == assignment.pair_key
        and other.policy != Assignment.Policy.PARTNER
        and (other.leased_at, other.pk) < order
        for other in leases
    )


def lease(
    *,
    study: Study,
    annotator: Any,
    response_id: int,
    now: datetime,
    policy: str,
    probability: float,
    score: float | None = None,
    fit_id: int | None = None,
    clock: bool = False,
) -> Assignment:
    """Lease a response to the annotator: an open assignment of the study's lease length."""
    # With the real clock, stamp the lease when it is written (after the lock), so
    # that stored times order leases of one response exactly as the locks did.
    stamp = timezone.now() if clock else now
    return Assignment.objects.create(
        study=study,
        response_id=response_id,
        annotator=annotator,
        policy=policy,
        probability=min(1.0, max(probability, 1e-300)),
        score=score,
        fit_id=fit_id,
        leased_at=stamp,
        expires_at=stamp + timedelta(seconds=study.lease_seconds),
    )


# --------------------------------------------------------------------------- services


def next_item(
    *,
    study: Study,
    annotator: Any,
    now: datetime | None = None,
    rng: np.random.Generator | None = None,
    partners: bool = True,
) -> Assignment:
    """The annotator's current item: their open lease, or a new pick leased to them.

    ``partners=False`` (the queue API) never serves the partner half of a pair the page
    leased: the first pick is served alone, and once it is answered a new pick is leased
    while the partner's lease runs out (the page still shows it).

    Raises ``QueueClosed`` (with ``reason``) when the study is not active, the budget is
    spent, the selection rule says every verdict is settled, or nothing is left.
    """
    clock = now is None
    now = now or timezone.now()
    rng = rng if rng is not None else np.random.default_rng()
    with transaction.atomic():
        study = study_state(study_id=study.pk, annotator=annotator, now=now)
        if not study.is_grader:  # type: ignore[attr-defined]
            raise PermissionDenied("only the study's annotators can grade in it")
        if study.status != Study.Status.ACTIVE:
            raise QueueClosed(f"{REASON_NOT_ACTIVE} (it is {study.get_status_display().lower()})")
        graded = study.graded  # type: ignore[attr-defined]
        if graded >= study.label_budget:
            raise QueueClosed(REASON_BUDGET)
        is_open, reason = _selection_status(study=study, graded=graded)
        if not is_open:
            raise QueueClosed(reason or "the study needs no more labels")

        _lock_annotator(annotator)
        current = _current_assignment(study=study, annotator=annotator, now=now, partners=partners)
        if current is not None:
            return current

        if study.overlap_share > 0 and rng.random() < study.overlap_share:
            found = _draw_overlap(study=study, annotator=annotator, now=now, rng=rng)
            if found is not None:
                response_id, n = found
                return lease(
                    study=study,
                    annotator=annotator,
                    response_id=response_id,
                    now=now,
                    clock=clock,
                    policy=Assignment.Policy.OVERLAP,
                    probability=study.overlap_share / n,
                )

        if graded + study.reserved >= study.label_budget:  # type: ignore[attr-defined]
            raise QueueClosed(REASON_BUDGET_RESERVED)

        if study.audit_share > 0 and rng.random() < study.audit_share:
            found = _draw_audit(study=study, annotator=annotator, now=now, rng=rng, clock=clock)
            if found is not None:
                response_id, n = found
                return lease(
                    study=study,
                    annotator=annotator,
                    response_id=response_id,
                    now=now,
                    clock=clock,
                    policy=Assignment.Policy.AUDIT,
                    # Conditional on the branch, as every policy's: uniform over all N.
                    probability=study.audit_share / n,
                )

        pick = _selection_pick(study=study, rng=rng)
        if pick is not None:
            found = _draw(study=study, annotator=annotator, now=now, pick=pick, rng=rng)
            if found is not None:
                response_id, _ = found
                return lease(
                    study=study,
                    annotator=annotator,
                    response_id=response_id,
                    now=now,
                    clock=clock,
                    policy=pick.policy,
                    # The selection rule's probability is already that of the response the
                    # uniform in-cell draw yields (exploration + greedy mixture).
                    probability=pick.probability,
                    score=pick.score,
                    fit_id=pick.fit_id,
                )
            logger.info(
                "study %s: cell %s/%s/%r has nothing available; picking uniformly",
                study.pk,
                pick.arm_id,
                pick.region_id,
                pick.cell,
            )
        found = _draw(study=study, annotator=annotator, now=now, pick=None, rng=rng)
        if found is None:
            raise QueueClosed(REASON_NOTHING_LEFT)
        response_id, n = found
        return lease(
            study=study,
            annotator=annotator,
            response_id=response_id,
            now=now,
            clock=clock,
            policy=Assignment.Policy.UNIFORM,
            probability=1.0 / n,
            # A fallback from a cell pick keeps the fit it came from, so leads can tell it
            # from "no posterior yet" (fit_id None).
            fit_id=pick.fit_id if pick is not None else None,
        )


def validate_labels(*, study: Study, labels: Any) -> dict[int, int]:
    """Labels keyed by dimension key → {dimension id: value}, or ValidationError by field."""
    if not isinstance(labels, dict):
        raise ValidationError({"labels": "expected an object of dimension key → grade"})
    dimensions = list(study.dimensions.all())
    errors: dict[str, str] = {}
    unknown = sorted(set(labels) - {d.key for d in dimensions})
    if unknown:
        errors["labels"] = f"unknown dimension(s): {', '.join(map(str, unknown))}"
    values: dict[int, int] = {}
    for dimension in dimensions:
        field = f"labels.{dimension.key}"
        if dimension.key not in labels:
            errors[field] = f"a grade for {dimension.title!r} is required"
            continue
        raw = labels[dimension.key]
        allowed = dimension.scale_values()
        if isinstance(raw, bool) or not isinstance(raw, int) or raw not in allowed:
            scale = "0 or 1" if dimension.is_binary else f"1 to {dimension.scale_max}"
            errors[field] = f"{raw!r} is not on the scale of {dimension.title!r} ({scale})"
            continue
        values[dimension.pk] = raw
    if errors:
        raise ValidationError(errors)
    return values


def _replay(*, annotator: Any, client_key: uuid.UUID, response_id: int) -> Annotation | None:
    """The annotation already made with this client key, if any (idempotency)."""
    existing = Annotation.objects.filter(annotator=annotator, client_key=client_key).first()
    if existing is None:
        return None
    if existing.response_id != response_id:
        raise ValidationError(
            {"client_key": "this client key was already used for another response"}
        )
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


def _get_assignment(*, assignment_id: int, annotator: Any) -> Assignment:
    """The annotator's own assignment; others' look absent (Assignment.DoesNotExist).

    PermissionDenied when the annotator is no longer one of the study's annotators.
    """
    assignment = Assignment.objects.select_related("study").get(
        pk=assignment_id, annotator=annotator
    )
    is_grader = _sql(
        f"SELECT 1 FROM {_T.membership} WHERE study_id = %s AND user_id = %s AND role = %s",
        [assignment.study_id, annotator.pk, Membership.Role.ANNOTATOR],
    )
    if not is_grader:
        raise PermissionDenied("only the study's annotators can grade in it")
    return assignment


def _check_answerable(*, assignment: Assignment, annotator: Any) -> None:
    if assignment.completed_at is not None:
        raise AssignmentDone("this item was already answered; ask for the next one")
    if (
        Annotation.objects.live()
        .filter(response_id=assignment.response_id, annotator=annotator)
        .exists()
    ):
        raise AssignmentDone("you already answered this response")


def _open_answer(
    *, assignment_id: int, annotator: Any, client_key: uuid.UUID, now: datetime, clock: bool
) -> tuple[Assignment, datetime, Annotation | None]:
    """The start of a submit or a skip, inside its transaction.

    Returns the annotator's assignment with its response locked, the time to stamp (taken
    after the lock with the real clock, so stored times follow lock order), and the earlier
    annotation with this client key if the request is a replay.
    """
    assignment = _get_assignment(assignment_id=assignment_id, annotator=annotator)
    lock_response(assignment.response_id, skip_locked=False)
    if clock:
        now = timezone.now()
    replay = _replay(annotator=annotator, client_key=client_key, response_id=assignment.response_id)
    return assignment, now, replay


def submit_annotation(
    *,
    assignment_id: int,
    annotator: Any,
    client_key: uuid.UUID,
    labels: dict[str, int],
    comment: str = "",
    flagged: bool = False,
    flag_reason: str = "",
    time_spent_ms: int = 0,
    now: datetime | None = None,
) -> Annotation:
    """Record the annotator's grades for an assignment; idempotent by client key.

    A replay with the same ``client_key`` returns the first annotation with
    ``annotation.replayed = True`` (a fresh one has ``replayed = False``). A submission after
    the lease expired is kept when nobody else has graded the response since (for an overlap
    pick: nobody besides the one first grader), else ``LeaseExpired``.

    Raises ``ValidationError`` keyed by field (``labels.<dimension key>``, ``labels``,
    ``flag_reason``, ``client_key``), ``Assignment.DoesNotExist`` for another annotator's or a
    missing assignment, ``AssignmentDone`` if it was already answered with another key.
    """
    clock = now is None
    now = now or timezone.now()
    flag_reason = flag_reason.strip()
    if flagged and not flag_reason:
        raise ValidationError({"flag_reason": "say why the response is flagged"})
    if not flagged:
        flag_reason = ""
    with transaction.atomic():
        assignment, now, replay = _open_answer(
            assignment_id=assignment_id,
            annotator=annotator,
            client_key=client_key,
            now=now,
            clock=clock,
        )
        if replay is not None:
            return replay
        study = assignment.study
        values = validate_labels(study=study, labels=labels)
        _check_answerable(assignment=assignment, annotator=annotator)
        if assignment.expires_at <= now:
            others = (
                _live_graded(study.pk)
                .filter(response_id=assignment.response_id)
                .exclude(annotator=annotator)
                .count()
            )
            allowed = 1 if assignment.policy == Assignment.Policy.OVERLAP else 0
            if others > allowed:
                raise LeaseExpired(
                    "your time on this item ran out and another annotator has graded it "
                    "since; your grade was not recorded — ask for the next item"
                )
        try:
            with transaction.atomic():
                annotation = Annotation.objects.create(
                    response_id=assignment.response_id,
                    annotator=annotator,
                    study=study,
                    client_key=client_key,
                    status=Annotation.Status.GRADED,
                    flagged=flagged,
                    flag_reason=flag_reason[:200],
                    comment=comment,
                    time_spent_ms=max(0, int(time_spent_ms)),
                    created_at=now,
                )
        except IntegrityError:
            # The same client key raced in through another assignment of the same response.
            replay = _replay(
                annotator=annotator, client_key=client_key, response_id=assignment.response_id
            )
            if replay is None:
                raise
            return replay
        Label.objects.bulk_create(
            Label(annotation=annotation, dimension_id=dim_id, value=value)
            for dim_id, value in values.items()
        )
        assignment.completed_at = now
        assignment.save(update_fields=["completed_at"])
        notify_new_labels(study=study)
    annotation.replayed = False  # type: ignore[attr-defined]
    # Validated above: exactly one grade per dimension key, as stored.
    annotation.label_values = dict(labels)  # type: ignore[attr-defined]
    return annotation


def skip_item(
    *,
    assignment_id: int,
    annotator: Any,
    client_key: uuid.UUID,
    reason: str,
    now: datetime | None = None,
) -> Annotation:
    """Record that the annotator skipped the response, with why; idempotent by client key.

    The response stays in the pool for everyone else and in the population the estimate
    covers (a skip is data about the item, never a reason to drop it).
    """
    clock = now is None
    now = now or timezone.now()
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "say why you skip this item"})
    with transaction.atomic():
        assignment, now, replay = _open_answer(
            assignment_id=assignment_id,
            annotator=annotator,
            client_key=client_key,
            now=now,
            clock=clock,
        )
        if replay is not None:
            return replay
        study = assignment.study
        _check_answerable(assignment=assignment, annotator=annotator)
        annotation = Annotation.objects.create(
            response_id=assignment.response_id,
            annotator=annotator,
            study=study,
            client_key=client_key,
            status=Annotation.Status.SKIPPED,
            skip_reason=reason[:200],
            created_at=now,
        )
        assignment.completed_at = now
        assignment.save(update_fields=["completed_at"])
    annotation.replayed = False  # type: ignore[attr-defined]
    return annotation


def undo_annotation(
    *,
    annotation_id: int,
    annotator: Any,
    now: datetime | None = None,
    window_seconds: int = 120,
) -> Assignment:
    """Undo the annotator's own recent grade or skip and give the response back to them.

    The annotation keeps its row and labels for audit (``undone_at`` set) and stops
    counting. Returns a fresh assignment of the same response to the same annotator (the
    policy, probability, score and fit of the pick that first brought it).
    """
    clock = now is None
    now = now or timezone.now()
    with transaction.atomic():
        annotation = Annotation.objects.select_related("study").get(pk=annotation_id)
        if annotation.annotator_id != annotator.pk:
            raise PermissionDenied("you can only undo your own annotations")
        lock_response(annotation.response_id, skip_locked=False)
        if clock:
            now = timezone.now()
        annotation.refresh_from_db(fields=["undone_at"])
        if annotation.undone_at is not None:
            raise UndoRefused("this annotation is already undone")
        if (now - annotation.created_at).total_seconds() > window_seconds:
            raise UndoRefused(f"an annotation can only be undone within {window_seconds} s")
        study = annotation.study
        annotation.undone_at = now
        annotation.save(update_fields=["undone_at"])
        record(
            actor=annotator,
            action="annotation.undo",
            study=study,
            target=annotation,
            details={"response_id": annotation.response_id, "status": annotation.status},
        )
        origin = (
            Assignment.objects.filter(response_id=annotation.response_id, annotator=annotator)
            .order_by("-leased_at", "-id")
            .first()
        )
        assignment = lease(
            study=study,
            annotator=annotator,
            response_id=annotation.response_id,
            now=now,
            policy=origin.policy if origin else Assignment.Policy.UNIFORM,
            probability=origin.probability if origin else 1.0,
            score=origin.score if origin else None,
            fit_id=origin.fit_id if origin else None,
        )
        if annotation.status == Annotation.Status.GRADED:
            notify_new_labels(study=study)
    return assignment


def annotator_progress(*, study: Study, annotator: Any) -> dict[str, int]:
    """What the annotator has done and what is left.

    Keys: ``graded_today`` (since local midnight), ``graded_total``, ``skipped``,
    ``budget`` (the study's label budget), ``budget_used`` (distinct graded responses, all
    annotators), ``budget_left``, ``left_in_study`` (responses nobody has graded and this
    annotator has not skipped; open leases are not subtracted).
    """
    mine = Annotation.objects.live().filter(study=study, annotator=annotator)
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    counts = mine.aggregate(
        graded_total=Count("id", filter=Q(status=Annotation.Status.GRADED)),
        graded_today=Count("id", filter=Q(status=Annotation.Status.GRADED, created_at__gte=today)),
        skipped=Count("id", filter=Q(status=Annotation.Status.SKIPPED)),
    )
    used = Annotation.objects.filter(study=study).count_graded_responses()
    graded = _live_graded(study.pk).values("response_id")
    my_skips = mine.filter(status=Annotation.Status.SKIPPED).values("response_id")
    out_of_pool = graded.union(my_skips).count()
    return {
        "graded_today": counts["graded_today"],
        "graded_total": counts["graded_total"],
        "skipped": counts["skipped"],
        "budget": study.label_budget,
        "budget_used": used,
        "budget_left": max(0, study.label_budget - used),
        "left_in_study": max(0, _response_count(study=study, pick=None) - out_of_pool),
    }


def item_for_annotator(assignment: Assignment) -> dict[str, Any]:
    """What an annotator may see of an assignment — nothing that reveals the model.

    Never the arm, model name, judge scores, cell, metadata or policy/score of the pick.
    """
    region, prompt, text = _sql(
        f"""SELECT g.name, p.text, r.text FROM {_T.response} r
            JOIN {_T.prompt} p ON p.id = r.prompt_id JOIN {_T.region} g ON g.id = r.region_id
            WHERE r.id = %s""",
        [assignment.response_id],
    )[0]
    dimensions = [
        {
            "key": d.key,
            "title": d.title,
            "rubric": d.rubric,
            "scale": d.scale,
            "values": d.scale_values(),
            "point_descriptions": list(d.point_descriptions or []),
        }
        for d in assignment.study.dimensions.all()
    ]
    return {
        "assignment_id": assignment.pk,
        "expires_at": assignment.expires_at,
        "region": region,
        "prompt": prompt,
        "response": text,
        "dimensions": dimensions,
    }


AnnotatorItem = dict[str, Any]
"""The view model ``item_for_annotator`` returns (a plain dict, blind by construction)."""
