"""Side-by-side grading: lease two arms' responses to one prompt together (issue 5).

A study with ``side_by_side`` on shows its annotators one prompt and two responses to it,
each graded on every dimension. This module builds the pair on top of
``annotate.grading.queue`` and leaves the single-item rules there untouched:

- ``next_pair`` asks ``queue.next_item`` for the first response, exactly as in single mode
  (the selection rule's cell, exploration, overlap; its probability as recorded there).
  Then the partner, among the *available* responses of the same prompt from another arm:
  a candidate's response is paired with the incumbent's (the comparison the decision is
  about), else with another candidate's; the incumbent's with a candidate's, drawn
  uniformly (for an overlap pick, among responses graded by exactly one other annotator).
  The partner's assignment has policy ``partner`` (``overlap`` for an overlap pick's) and
  probability ``1 / (available responses of its group)``, i.e. conditional on the first
  pick. With no partner available (leased, graded, skipped by this annotator, missing) or
  no budget left for two, the first is served alone, as in single mode.
- Sides are drawn at random and stored (``Assignment.side``: 0 left, 1 right) with a
  shared ``pair_key``; the page only ever shows the key, never an assignment id, so the
  order in which the two were picked cannot be read from it.
- ``submit_pair`` and ``skip_pair`` record one annotation per response in one transaction,
  through ``queue.submit_annotation``/``queue.skip_item``. The page sends one client key;
  each side's annotation gets ``uuid5(client key, side)``, so a retry replays both and
  never counts twice. A side whose lease expired and was graded by someone else meanwhile
  (or that was already answered) is refused on its own: the other side is still kept.
- ``undo_pair`` takes back both annotations of a pair and leases both responses again,
  on the same sides.

The browser page uses this module; the queue API serves single items (in a side-by-side
study too).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case, Subquery, Value, When
from django.utils import timezone

from ..models import Annotation, Arm, Assignment, Response, Study
from . import queue
from .queue import AssignmentDone, LeaseExpired, QueueError

LEFT, RIGHT = Assignment.Side.LEFT.value, Assignment.Side.RIGHT.value
SIDES = (LEFT, RIGHT)
SIDE_NAMES = {LEFT: "left", RIGHT: "right"}


@dataclass(frozen=True)
class Pair:
    """Two open assignments of one prompt, leased together, with their sides."""

    key: uuid.UUID
    left: Assignment
    right: Assignment

    @property
    def halves(self) -> tuple[Assignment, Assignment]:
        return (self.left, self.right)


@dataclass
class PairOutcome:
    """What a pair submit or skip did, side by side.

    ``annotations[side]`` is the annotation recorded (or replayed) for that side;
    ``refused[side]`` the queue's refusal (``LeaseExpired``, ``AssignmentDone``) instead.
    """

    annotations: dict[int, Annotation] = field(default_factory=dict)
    refused: dict[int, QueueError] = field(default_factory=dict)

    @property
    def replayed(self) -> bool:
        """Every recorded side was already recorded under this client key (a retry)."""
        return bool(self.annotations) and all(
            getattr(a, "replayed", False) for a in self.annotations.values()
        )


def side_key(client_key: uuid.UUID, side: int) -> uuid.UUID:
    """The client key of one side's annotation: deterministic, so retries replay it."""
    return uuid.uuid5(client_key, SIDE_NAMES[side])


# --------------------------------------------------------------------------- leasing


def next_pair(
    *,
    study: Study,
    annotator: Any,
    now: datetime | None = None,
    rng: np.random.Generator | None = None,
) -> Pair | Assignment:
    """The annotator's current pair (or single item), or a new pick leased to them.

    Raises what ``queue.next_item`` raises (``QueueClosed``, ``PermissionDenied``). An item
    already leased alone stays alone while its lease lasts (a reload does not add a second
    response to it).
    """
    clock = now is None
    rng = rng if rng is not None else np.random.default_rng()
    with transaction.atomic():
        last_id = (
            Assignment.objects.filter(study_id=study.pk, annotator=annotator)
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
        ) or 0
        first = queue.next_item(study=study, annotator=annotator, now=now, rng=rng)
        if first.pair_key is not None:
            return _open_pair(first) or first
        if first.pk <= last_id:
            return first
        stamp = timezone.now() if now is None else now
        return _pair_up(first, annotator=annotator, now=stamp, clock=clock, rng=rng) or first


def _open_pair(half: Assignment) -> Pair | None:
    """The pair of an open half, when its other half is still open too."""
    halves = list(
        Assignment.objects.filter(
            pair_key=half.pair_key, annotator_id=half.annotator_id, completed_at__isnull=True
        ).order_by("side")
    )
    if len(halves) != 2:
        return None
    assert half.pair_key is not None
    return Pair(key=half.pair_key, left=halves[0], right=halves[1])


def _pair_up(
    first: Assignment, *, annotator: Any, now: datetime, clock: bool, rng: np.random.Generator
) -> Pair | None:
    """Lease a partner for a freshly leased first response, or None to serve it alone."""
    study = queue.study_state(study_id=first.study_id, annotator=annotator, now=now)
    # The budget counts graded responses: a pair adds two; an overlap pair (both already
    # graded once, by someone else) none.
    overlap = first.policy == Assignment.Policy.OVERLAP
    adds = 0 if overlap else 2
    if study.graded + study.reserved + adds > study.label_budget:  # type: ignore[attr-defined]
        return None
    found = _draw_partner(first, annotator=annotator, now=now, rng=rng)
    if found is None:
        return None
    response_id, probability = found
    partner = queue.lease(
        study=study,
        annotator=annotator,
        response_id=response_id,
        now=now,
        clock=clock,
        # An overlap pick's partner is a second grade too: policy ``overlap`` keeps the
        # queue's budget and late-submission rules right for it.
        policy=Assignment.Policy.OVERLAP if overlap else Assignment.Policy.PARTNER,
        probability=probability,
        fit_id=first.fit_id,
    )
    key = uuid.uuid4()
    first_side = int(rng.integers(2))
    first.pair_key, first.side = key, first_side
    partner.pair_key, partner.side = key, 1 - first_side
    Assignment.objects.filter(pk__in=[first.pk, partner.pk]).update(
        pair_key=key,
        side=Case(When(pk=first.pk, then=Value(first_side)), default=Value(1 - first_side)),
    )
    left, right = (first, partner) if first_side == LEFT else (partner, first)
    return Pair(key=key, left=left, right=right)


def _draw_partner(
    first: Assignment, *, annotator: Any, now: datetime, rng: np.random.Generator
) -> tuple[int, float] | None:
    """(response id, probability given the first) of an available, locked partner, or None.

    Preferred group first: the incumbent's response for a candidate's, the candidates'
    for the incumbent's; then the other candidates'. Uniform inside a group over the
    responses available when counted; a row another request holds locked is passed over.
    The partner of an overlap pick (a second annotator on a graded response) is an overlap
    candidate too (graded by exactly one other annotator), so that a pair can be graded
    twice; of a fresh pick, a fresh response.
    """
    if first.policy == Assignment.Policy.OVERLAP:
        usable = queue.is_overlap_candidate
    else:
        usable = queue.is_available
    same_prompt = Response.objects.filter(pk=first.response_id).values("prompt_id")[:1]
    responses = list(
        Response.objects.filter(prompt_id=Subquery(same_prompt))
        .order_by("pk")
        .values_list("pk", "arm__role")
    )
    role = next(r for pk, r in responses if pk == first.response_id)
    siblings = [(pk, r) for pk, r in responses if pk != first.response_id]
    incumbent = [pk for pk, r in siblings if r == Arm.Role.INCUMBENT]
    candidates = [pk for pk, r in siblings if r == Arm.Role.CANDIDATE]
    groups = [candidates] if role == Arm.Role.INCUMBENT else [incumbent, candidates]
    for group in groups:
        available = [pk for pk in group if usable(pk, annotator=annotator, now=now)]
        for i in rng.permutation(len(available)):
            pk = available[int(i)]
            if queue.lock_response(pk, skip_locked=True) and usable(
                pk, annotator=annotator, now=now
            ):
                return pk, 1.0 / len(available)
    return None


def get_pair(*, pair_key: uuid.UUID, annotator: Any, study: Study | None = None) -> Pair:
    """The annotator's own pair by key; anyone else's looks absent (Assignment.DoesNotExist)."""
    halves = Assignment.objects.filter(pair_key=pair_key, annotator=annotator)
    if study is not None:
        halves = halves.filter(study=study)
    found = list(halves.select_related("study").order_by("side"))
    if len(found) != 2:
        raise Assignment.DoesNotExist(f"no pair {pair_key} for this annotator")
    return Pair(key=pair_key, left=found[0], right=found[1])


# --------------------------------------------------------------------------- answers


def _validate_both(*, study: Study, labels: Mapping[int, Any]) -> None:
    """Both sides' labels on every dimension, or one ValidationError keyed ``<side>.labels.*``."""
    errors: dict[str, list[str]] = {}
    for side in SIDES:
        try:
            queue.validate_labels(study=study, labels=labels.get(side))
        except ValidationError as exc:
            for name, texts in exc.message_dict.items():
                errors[f"{SIDE_NAMES[side]}.{name}"] = texts
    if errors:
        raise ValidationError(errors)


def _lock_pair(pair: Pair) -> None:
    # Always in id order, so that two transactions on the same pair cannot deadlock.
    for response_id in sorted(a.response_id for a in pair.halves):
        queue.lock_response(response_id, skip_locked=False)


def submit_pair(
    *,
    pair_key: uuid.UUID,
    annotator: Any,
    client_key: uuid.UUID,
    labels: Mapping[int, Mapping[str, int]],
    comment: str = "",
    flags: Mapping[int, str] | None = None,
    time_spent_ms: int = 0,
    now: datetime | None = None,
) -> PairOutcome:
    """Record the grades of both responses of a pair, in one transaction.

    ``labels[side]`` maps dimension key → grade, for both sides (``LEFT``, ``RIGHT``);
    ``flags[side]`` is the reason a side is flagged. The comment goes on both annotations,
    the time spent is split evenly between them (it was spent on the pair). Both annotations
    carry the same ``created_at``.

    Raises ``ValidationError`` keyed ``left.labels.<key>`` / ``right.labels.<key>`` (nothing
    is recorded then), ``Assignment.DoesNotExist`` for a pair that is not the annotator's,
    ``PermissionDenied`` when they no longer annotate the study. A side refused by the queue
    (lease expired and graded by another since, or already answered) is in
    ``outcome.refused``; if both are refused, the first refusal is raised.
    """
    flags = {side: reason.strip() for side, reason in (flags or {}).items() if reason.strip()}
    spent = max(0, int(time_spent_ms))
    shares = {LEFT: spent - spent // 2, RIGHT: spent // 2}
    outcome = PairOutcome()
    with transaction.atomic():
        pair = get_pair(pair_key=pair_key, annotator=annotator)
        _validate_both(study=pair.left.study, labels=labels)
        _lock_pair(pair)
        stamp = now or timezone.now()
        for side, assignment in zip(SIDES, pair.halves, strict=True):
            try:
                with transaction.atomic():
                    outcome.annotations[side] = queue.submit_annotation(
                        assignment_id=assignment.pk,
                        annotator=annotator,
                        client_key=side_key(client_key, side),
                        labels=dict(labels[side]),
                        comment=comment,
                        flagged=side in flags,
                        flag_reason=flags.get(side, ""),
                        time_spent_ms=shares[side],
                        now=stamp,
                    )
            except (LeaseExpired, AssignmentDone) as refused:
                outcome.refused[side] = refused
    if not outcome.annotations:
        raise outcome.refused[LEFT]
    return outcome


def skip_pair(
    *,
    pair_key: uuid.UUID,
    annotator: Any,
    client_key: uuid.UUID,
    reason: str,
    now: datetime | None = None,
) -> PairOutcome:
    """Skip both responses of a pair with one reason (one skip annotation each)."""
    if not reason.strip():
        raise ValidationError({"reason": "say why you skip this item"})
    outcome = PairOutcome()
    with transaction.atomic():
        pair = get_pair(pair_key=pair_key, annotator=annotator)
        _lock_pair(pair)
        stamp = now or timezone.now()
        for side, assignment in zip(SIDES, pair.halves, strict=True):
            try:
                with transaction.atomic():
                    outcome.annotations[side] = queue.skip_item(
                        assignment_id=assignment.pk,
                        annotator=annotator,
                        client_key=side_key(client_key, side),
                        reason=reason,
                        now=stamp,
                    )
            except AssignmentDone as refused:
                outcome.refused[side] = refused
    if not outcome.annotations:
        raise outcome.refused[LEFT]
    return outcome


def answered_half(annotation: Annotation) -> Assignment | None:
    """The pair half this annotation answered, or None when it was a single item.

    The queue stamps an assignment's ``completed_at`` with its annotation's ``created_at``.
    """
    return (
        Assignment.objects.filter(
            annotator_id=annotation.annotator_id,
            response_id=annotation.response_id,
            completed_at=annotation.created_at,
            pair_key__isnull=False,
        )
        .order_by("-pk")
        .first()
    )


def _answer_of(half: Assignment) -> Annotation | None:
    if half.completed_at is None:
        return None
    return (
        Annotation.objects.live()
        .filter(
            annotator_id=half.annotator_id,
            response_id=half.response_id,
            created_at=half.completed_at,
        )
        .first()
    )


def undo_pair(
    *,
    annotation_id: int,
    annotator: Any,
    now: datetime | None = None,
    window_seconds: int = 120,
) -> Pair | Assignment:
    """Undo the annotator's last answer; for a pair, both of its annotations together.

    Both responses are leased again on the sides they were shown on (a new pair key), so
    the page can show the pair with its previous grades. An answer to a single item, or a
    pair whose other half is no longer live, is undone alone (``queue.undo_annotation``).
    Raises ``UndoRefused`` (out of the window, already undone): then nothing is undone.
    """
    with transaction.atomic():
        annotation = Annotation.objects.get(pk=annotation_id)
        if annotation.annotator_id != annotator.pk:
            raise PermissionDenied("you can only undo your own annotations")
        half = answered_half(annotation)
        other_half = (
            None
            if half is None
            else Assignment.objects.filter(pair_key=half.pair_key).exclude(pk=half.pk).first()
        )
        other = _answer_of(other_half) if other_half is not None else None
        if half is None or other_half is None or other is None:
            return queue.undo_annotation(
                annotation_id=annotation.pk,
                annotator=annotator,
                now=now,
                window_seconds=window_seconds,
            )
        for response_id in sorted((annotation.response_id, other.response_id)):
            queue.lock_response(response_id, skip_locked=False)
        stamp = now or timezone.now()
        again = {
            side: queue.undo_annotation(
                annotation_id=answer.pk,
                annotator=annotator,
                now=stamp,
                window_seconds=window_seconds,
            )
            for side, answer in ((half.side, annotation), (other_half.side, other))
        }
        key = uuid.uuid4()
        for side, assignment in again.items():
            assignment.pair_key, assignment.side = key, side
            assignment.save(update_fields=["pair_key", "side"])
        return Pair(key=key, left=again[LEFT], right=again[RIGHT])


def previous_values(pair: Pair) -> dict[int, Annotation]:
    """The undone annotations a re-leased pair came back from, by side (to preselect)."""
    out: dict[int, Annotation] = {}
    for side, half in zip(SIDES, pair.halves, strict=True):
        # Deliberately the undone ones: the opposite of Annotation.objects.live().
        found = (
            Annotation.objects.filter(
                annotator_id=half.annotator_id,
                response_id=half.response_id,
                undone_at__isnull=False,
            )
            .order_by("-undone_at", "-pk")
            .prefetch_related("labels__dimension")
            .first()
        )
        if found is not None:
            out[side] = found
    return out


# --------------------------------------------------------------------------- views


def pair_for_annotator(pair: Pair) -> dict[str, Any]:
    """What the annotator may see of a pair: the prompt once, the two texts by side.

    Blind like ``queue.item_for_annotator`` (built from it): no arm, model name, judge
    score, cell, policy, or assignment id (only the random pair key).
    """
    left, right = (queue.item_for_annotator(half) for half in pair.halves)
    return {
        "pair_key": pair.key,
        "expires_at": min(left["expires_at"], right["expires_at"]),
        "region": left["region"],
        "prompt": left["prompt"],
        "responses": [left["response"], right["response"]],
        "dimensions": left["dimensions"],
    }


def pair_sides(*, study: Study) -> list[dict[str, Any]]:
    """Every live side-by-side grade with the side it was shown on (position-bias analysis).

    One row per annotation: ``pair_key``, ``side`` (0 left, 1 right), ``arm`` (key),
    ``annotation_id``, ``response_id``, ``annotator_id``.
    """
    halves = Assignment.objects.filter(
        study=study, pair_key__isnull=False, completed_at__isnull=False
    ).values_list("pair_key", "side", "response_id", "annotator_id", "completed_at")
    index = {(r, a, t): (k, s) for k, s, r, a, t in halves}
    rows = []
    answers = (
        Annotation.objects.live()
        .filter(study=study)
        .select_related("response__arm")
        .order_by("created_at", "pk")
    )
    for answer in answers:
        found = index.get((answer.response_id, answer.annotator_id, answer.created_at))
        if found is None:
            continue
        rows.append(
            {
                "pair_key": found[0],
                "side": found[1],
                "arm": answer.response.arm.key,
                "annotation_id": answer.pk,
                "response_id": answer.response_id,
                "annotator_id": answer.annotator_id,
            }
        )
    return rows
