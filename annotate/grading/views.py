"""The annotator's grading page: serve an item, take a grade, a skip or an undo.

Every view is scoped to one study through ``_study_for_annotator`` and only ever shows
what ``queue.item_for_annotator`` returns, so that no model name, arm or judge score can
reach the annotator. The queue service owns the rules (leases, idempotency, budget);
these views parse the form, call it, and render the next item.

With htmx the forms post in the background and the ``item`` partial of
``annotate/grade_page.html`` is swapped in; without JavaScript they post and redirect.

A study graded side by side shows a pair (one prompt, two responses) on the same page: its
views are at the end. One :class:`GradeForm` reads the grades of an item and of a pair, and
the rules of a posted form (``_submit``, ``_skip``, ``_undone``, ``_invalid``) are written
once for both: what differs between them (how the page shows them, the queue's calls, the
words) is a :class:`_Kind`, ``ITEM`` or ``PAIR``.

Who may grade: only members whose role in the study is *annotator*. Leads and admins see
model names and judge scores elsewhere in Baton, so their grades would not be blind;
they get a 403 that says so. Users with no role in the study get a 404, so that the page
does not even confirm the study exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from .. import permissions
from ..models import Annotation, Assignment, Membership, Study
from ..numbers import parse_id
from ..permissions import get_study_for
from . import history, queue, queue_pairs
from .queue import AssignmentDone, LeaseExpired, QueueClosed, UndoRefused
from .queue_pairs import LEFT, RIGHT, SIDE_NAMES, SIDES, Pair

PAGE = "annotate/grade_page.html"
UNDO_WINDOW_SECONDS = 120
# A grade takes seconds to minutes; anything outside this is a stale tab or a bad clock.
MAX_TIME_SPENT_MS = 30 * 60 * 1000
REASON_MAX_LENGTH = 200

SKIP_REASONS = [
    ("expertise", "Outside my expertise"),
    ("unreadable", "Prompt or response unreadable"),
    ("context", "Needs context I don't have"),
]
FLAG_REASONS = [
    ("unsafe", "Harmful or unsafe content"),
    ("personal-data", "Contains personal data"),
    ("broken", "Broken or truncated"),
]
OTHER = "other"
# The panels of the page, whose errors are shown in them rather than above the buttons.
PANELS = {"flag", "skip"}
# What the annotator reads of a pair: letters, so that "left" is never mistaken for a grade.
SIDE_LETTERS = {LEFT: "A", RIGHT: "B"}
FLAG_SIDES = ("both", "left", "right")
# Answers by side (a pair's), or one item's under None.
Answers = Mapping[int, Annotation] | Mapping[None, Annotation]


class HtmxHttpRequest(HttpRequest):
    """What HtmxMiddleware makes of a request (the typing django-htmx recommends)."""

    htmx: HtmxDetails


def annotator_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``login_required``, except that an htmx request (a session that ran out mid-grading)
    sends the whole page to the log-in form instead of swapping the form into the item."""
    guarded = login_required(view)

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.htmx and not request.user.is_authenticated:
            next_url = reverse("annotate-grade", kwargs={"slug": kwargs["slug"]})
            login = resolve_url(settings.LOGIN_URL)
            return HttpResponseClientRedirect(f"{login}?{urlencode({'next': next_url})}")
        return guarded(request, *args, **kwargs)

    return wrapper


def _field(side: int | None, dimension_key: str) -> str:
    """The form field of a dimension: its key for one item, ``left-<key>`` for a pair's side."""
    return dimension_key if side is None else f"{SIDE_NAMES[side]}-{dimension_key}"


def _study_for_annotator(request: HtmxHttpRequest, slug: str) -> Study:
    """The study, if the user annotates it; 404 for non-members, 403 for other roles."""
    return get_study_for(request.user, slug, roles=permissions.ANNOTATOR)


def _own_assignment(study: Study, user: Any, assignment_id: int) -> Assignment:
    return get_object_or_404(Assignment, pk=assignment_id, study=study, annotator=user)


def _undoable(study: Study, user: Any) -> Annotation | None:
    """The annotator's most recent live annotation in the study, while undo is allowed."""
    since = timezone.now() - timedelta(seconds=UNDO_WINDOW_SECONDS)
    return (
        Annotation.objects.live()
        .filter(study=study, annotator=user, created_at__gte=since)
        .order_by("-created_at", "-pk")
        .only("pk", "status", "created_at")
        .first()
    )


def _progress(study: Study, user: Any) -> dict[str, Any]:
    """The queue's counts, plus ``left``: what the study can still use from anyone."""
    progress: dict[str, Any] = dict(queue.annotator_progress(study=study, annotator=user))
    progress["left"] = min(progress["budget_left"], progress["left_in_study"])
    return progress


def _dimension_view(dim: dict[str, Any]) -> dict[str, Any]:
    """One rubric block: the radio choices with their keyboard digit.

    The digit is the grade itself (0 = fail, 1 = pass; 1..K on ordinal scales, 0 for
    10), so what an annotator types is what is stored.
    """
    binary = dim["scale"] == "binary"
    descriptions = list(dim.get("point_descriptions") or [])
    if binary:
        # Stored lowest first, like every scale: [fail, pass].
        fail_desc, pass_desc = descriptions if len(descriptions) == 2 else ("", "")
        choices = [
            {"value": 1, "label": "Pass", "key": "1", "tone": "pass", "description": pass_desc},
            {"value": 0, "label": "Fail", "key": "0", "tone": "fail", "description": fail_desc},
        ]
    else:
        choices = [
            {
                "value": value,
                "label": str(value),
                "key": str(value % 10),
                "tone": "point",
                "description": descriptions[i] if i < len(descriptions) else "",
            }
            for i, value in enumerate(dim["values"])
        ]
    return {
        "key": dim["key"],
        "title": dim["title"],
        "rubric": dim.get("rubric", ""),
        "binary": binary,
        "choices": choices,
    }


def _rubric(
    dimensions: list[dict[str, Any]],
    values: dict[str, Any],
    errors: dict[str, str],
    side: int | None = None,
) -> list[dict[str, Any]]:
    """The rubric blocks of one response (of one side of a pair), with the form's grades and
    errors."""
    blocks = []
    for dim in dimensions:
        view = _dimension_view(dim)
        if side is not None:
            # The rubric partial names ids and inputs after ``key``: make them per side.
            view["key"] = _field(side, dim["key"])
            view["side"] = SIDE_NAMES[side]
            view["side_label"] = f"Response {SIDE_LETTERS[side]}"
        view["value"] = values.get("labels", {}).get(view["key"])
        view["error"] = errors.get(view["key"], "")
        blocks.append(view)
    return blocks


def _form_errors(errors: dict[str, str], shown: set[str]) -> list[str]:
    """The errors not shown beside their field or panel: the page lists them above the buttons."""
    return [text for key, text in errors.items() if key not in shown]


def key_hints(dimensions: list[dict[str, Any]]) -> dict[str, Any]:
    """What the footer says the digits do: pass/fail only when a dimension is binary, a
    1..K scale only up to the largest K the item has."""
    ordinal = [len(d["choices"]) for d in dimensions if not d["binary"]]
    return {
        "binary": any(d["binary"] for d in dimensions),
        "top": max(ordinal) % 10 if ordinal else None,
        "top_label": max(ordinal) if ordinal else None,
    }


def _item_context(
    assignment: Assignment,
    *,
    client_key: uuid.UUID | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    open_panel: str = "",
) -> dict[str, Any]:
    item = queue.item_for_annotator(assignment)
    values = values or {}
    errors = errors or {}
    dimensions = _rubric(item["dimensions"], values, errors)
    return {
        "state": "item",
        "item": item,
        "assignment_id": item["assignment_id"],
        "dimensions": dimensions,
        "key_hints": key_hints(dimensions),
        "client_key": client_key or uuid.uuid4(),
        "values": values,
        "errors": errors,
        "form_errors": _form_errors(errors, {dim["key"] for dim in dimensions} | PANELS),
        "open_panel": open_panel,
        "skip_reasons": SKIP_REASONS,
        "flag_reasons": FLAG_REASONS,
    }


def _render(
    request: HtmxHttpRequest,
    study: Study,
    context: dict[str, Any],
    *,
    status: str = "",
    status_kind: str = "ok",
    http_status: int = 200,
) -> HttpResponse:
    context = {
        "study": study,
        "progress": _progress(study, request.user),
        "undoable": _undoable(study, request.user),
        "status": status,
        "status_kind": status_kind,
        "undo_window_seconds": UNDO_WINDOW_SECONDS,
        "history": history.recent_answers(study=study, annotator=request.user),
        **context,
    }
    template = f"{PAGE}#item" if request.htmx else PAGE
    return render(request, template, context, status=http_status)


def _closed_context(closed: QueueClosed) -> dict[str, Any]:
    reason = closed.reason.strip().rstrip(".")
    return {"state": "closed", "reason": f"{reason[:1].upper()}{reason[1:]}." if reason else ""}


def _render_next(
    request: HtmxHttpRequest, study: Study, *, status: str = "", status_kind: str = "ok"
) -> HttpResponse:
    try:
        if study.side_by_side:
            served = queue_pairs.next_pair(study=study, annotator=request.user)
        else:
            served = queue.next_item(study=study, annotator=request.user)
    except QueueClosed as closed:
        return _render(
            request, study, _closed_context(closed), status=status, status_kind=status_kind
        )
    if isinstance(served, queue_pairs.Pair):
        context = pair_context(served)
    else:
        context = _item_context(served)
    return _render(request, study, context, status=status, status_kind=status_kind)


def _after_post(
    request: HtmxHttpRequest, study: Study, status: str, status_kind: str = "ok"
) -> HttpResponse:
    """htmx: render the next item in place; plain form: message and redirect (PRG)."""
    if request.htmx:
        return _render_next(request, study, status=status, status_kind=status_kind)
    if status:
        level = messages.SUCCESS if status_kind == "ok" else messages.WARNING
        messages.add_message(request, level, status)
    return redirect("annotate-grade", slug=study.slug)


class GradeForm:
    """A posted grading form: a grade per dimension, a flag and a comment.

    One item's fields are ``label-<dimension key>``; a pair's are named by side
    (``label-left-<key>``, ``label-right-<key>``, ``sides=SIDES``), and ``labels`` is then
    keyed by side, as is ``flags`` (the flag's reason for each side ``flag_side`` names).
    ``errors`` is keyed by field as the page shows them (``<key>`` or ``left-<key>``, and
    ``flag``); ``values`` fills the form again. Without ``flag`` (a correction keeps the
    answer's flag) the flag fields are not read.
    """

    def __init__(
        self,
        request: HtmxHttpRequest,
        study: Study,
        *,
        sides: tuple[int, ...] = (),
        flag: bool = True,
    ) -> None:
        post = request.POST
        self.errors: dict[str, str] = {}
        shown: dict[str, int] = {}
        by_side: dict[int, dict[str, int]] = {side: {} for side in sides}
        dimensions = list(study.dimensions.all())
        for side in sides or (None,):
            for dim in dimensions:
                name, where = _field(side, dim.key), dim.title
                if side is not None:
                    where = f"{dim.title} of response {SIDE_LETTERS[side]}"
                try:
                    value = int(post.get(f"label-{name}", ""))
                except ValueError:
                    self.errors[name] = f"Pick a grade for {where}."
                    continue
                if value not in dim.scale_values():
                    self.errors[name] = f"{value} is not a grade for {where}."
                    continue
                shown[name] = value
                if side is not None:
                    by_side[side][dim.key] = value
        self.labels: Any = by_side if sides else shown
        self.flag_reason = ""
        self.flags: dict[int, str] = {}
        if flag:
            self.flag_reason = _reason(request, "flag", FLAG_REASONS)
            if post.get("flag_choice") == OTHER and not self.flag_reason:
                self.errors["flag"] = "Say why you flag it."
        self.comment = post.get("comment", "").strip()
        self.values: dict[str, Any] = {"labels": shown, "comment": self.comment}
        if flag:
            self.values["flag_choice"] = post.get("flag_choice", "")
            self.values["flag_other"] = post.get("flag_other", "")
        if flag and sides:
            flag_side = post.get("flag_side", "both")
            if flag_side not in FLAG_SIDES:
                self.errors["flag"] = (
                    f"Flag which response? {flag_side!r} is not one of {', '.join(FLAG_SIDES)}."
                )
            self.flags = {
                side: self.flag_reason
                for side in sides
                if self.flag_reason and flag_side in ("both", SIDE_NAMES[side])
            }
            self.values["flag_side"] = flag_side


def _client_key(request: HtmxHttpRequest) -> uuid.UUID:
    try:
        return uuid.UUID(request.POST.get("client_key", ""))
    except ValueError:
        # A missing key means a forged or truncated form: refuse rather than guess, since
        # a fresh key would defeat the double-submit protection.
        raise ValidationError("client_key is missing or malformed") from None


def _time_spent_ms(request: HtmxHttpRequest, assignment: Assignment) -> int:
    """What the browser measured, or the time since the lease without JavaScript; clamped."""
    raw = request.POST.get("time_spent_ms", "")
    try:
        spent = int(float(raw))
    except (ValueError, OverflowError):
        spent = int((timezone.now() - assignment.leased_at).total_seconds() * 1000)
    return max(0, min(spent, MAX_TIME_SPENT_MS))


def _reason(request: HtmxHttpRequest, prefix: str, choices: list[tuple[str, str]]) -> str:
    """The reason picked from the list, or the typed one for "other"; "" when none."""
    choice = request.POST.get(f"{prefix}_choice", "")
    if choice == OTHER:
        return request.POST.get(f"{prefix}_other", "").strip()[:REASON_MAX_LENGTH]
    return dict(choices).get(choice, "")


def _error_text(exc: ValidationError) -> dict[str, str]:
    """The service's errors keyed like the form: ``labels.<key>`` becomes ``<key>``."""
    if not hasattr(exc, "error_dict"):
        return {"__all__": " ".join(exc.messages)}
    errors = {}
    for field, texts in exc.message_dict.items():
        key = field.removeprefix("labels.")
        key = {"reason": "skip", "flag_reason": "flag"}.get(key, key)
        text = " ".join(texts)
        errors[key] = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    return errors


def _answered_values(answers: Answers) -> dict[str, Any]:
    """The form as answers filled it, to show them again (after an undo, for a correction):
    their grades, the comment and the flag."""
    prefetch_related_objects(list(answers.values()), "labels__dimension")
    labels = {
        _field(side, label.dimension.key): label.value
        for side, answer in answers.items()
        for label in answer.labels.all()
    }
    first = next(iter(answers.values()), None)
    values: dict[str, Any] = {
        "labels": labels,
        "comment": first.comment if first is not None else "",
        "flag_choice": "",
        "flag_other": "",
    }
    flagged = {side: answer for side, answer in answers.items() if answer.flagged}
    if flagged:
        side, answer = next(iter(flagged.items()))
        flag_codes = {text: code for code, text in FLAG_REASONS}
        values["flag_choice"] = flag_codes.get(answer.flag_reason, OTHER)
        values["flag_other"] = answer.flag_reason if values["flag_choice"] == OTHER else ""
        if side is not None:
            values["flag_side"] = "both" if len(flagged) == 2 else SIDE_NAMES[side]
    return values


# --------------------------------------------------------------------------- the rules
# One item and a pair are graded, skipped, undone and shown again by the same rules; a
# ``_Kind`` holds what differs: the page's state, the queue's calls, and the words.


@dataclass(frozen=True)
class _Kind[T]:
    """What the views of one item (``T`` = Assignment) and of a pair (``T`` = Pair) differ in."""

    sides: tuple[int, ...]  # the form's sides (GradeForm): none for an item
    context: Callable[..., dict[str, Any]]  # the page's state, as ``_item_context`` takes it
    halves: Callable[[T], tuple[Assignment, ...]]  # the leases it holds
    # The queue's calls. ``submit`` returns (replayed, what the queue refused of it).
    submit: Callable[[HtmxHttpRequest, T, GradeForm, uuid.UUID], tuple[bool, str]]
    skip: Callable[[HtmxHttpRequest, T, uuid.UUID, str], object]
    service_errors: Callable[[ValidationError], dict[str, str]]  # keyed like the form
    # What the annotator reads.
    saved: str  # + " and flagged." or "."
    skipped: str
    done: str  # answered already, under another client key
    lease_lost: str  # time ran out and someone else graded it: not saved
    lease_kept: str  # time ran out, nobody else graded it: saved
    undone: str  # the status over the item given back
    undone_again: str  # without JavaScript, the message over the page that serves it


def _invalid[T](
    request: HtmxHttpRequest,
    study: Study,
    kind: _Kind[T],
    target: T,
    *,
    client_key: uuid.UUID,
    values: dict[str, Any],
    errors: dict[str, str],
    open_panel: str = "",
) -> HttpResponse:
    """Show the same item (or pair) again with its values and errors, keeping the client key.

    The status names each error once (a pair's two sides may share one). htmx 2 does not
    swap 4xx responses by default, so htmx gets a 200 and plain forms the more precise 422.
    """
    context = kind.context(
        target, client_key=client_key, values=values, errors=errors, open_panel=open_panel
    )
    return _render(
        request,
        study,
        context,
        status="Not saved: " + " ".join(dict.fromkeys(errors.values())),
        status_kind="error",
        http_status=200 if request.htmx else 422,
    )


def _submit[T](request: HtmxHttpRequest, study: Study, kind: _Kind[T], target: T) -> HttpResponse:
    """Take the grading form of an item or a pair, and say what the queue made of it."""
    try:
        client_key = _client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)
    form = GradeForm(request, study, sides=kind.sides)
    if form.errors:
        return _invalid(
            request,
            study,
            kind,
            target,
            client_key=client_key,
            values=form.values,
            errors=form.errors,
            open_panel="flag" if "flag" in form.errors else "",
        )

    was_expired = any(half.is_expired() for half in kind.halves(target))
    try:
        replayed, refused = kind.submit(request, target, form, client_key)
    except ValidationError as exc:
        return _invalid(
            request,
            study,
            kind,
            target,
            client_key=client_key,
            values=form.values,
            errors=kind.service_errors(exc),
        )
    except LeaseExpired:
        return _after_post(request, study, kind.lease_lost, "warning")
    except AssignmentDone:
        return _after_post(request, study, kind.done, "warning")
    if refused:
        return _after_post(request, study, f"Saved, except that {refused}.", "warning")
    if replayed:
        return _after_post(request, study, "Already saved (it was not counted twice).")
    if was_expired:
        return _after_post(request, study, kind.lease_kept, "warning")
    return _after_post(request, study, kind.saved + (" and flagged." if form.flag_reason else "."))


def _skip[T](request: HtmxHttpRequest, study: Study, kind: _Kind[T], target: T) -> HttpResponse:
    """Skip an item or a pair, with the reason picked or typed."""
    try:
        client_key = _client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)
    reason = _reason(request, "skip", SKIP_REASONS)
    if not reason:
        return _invalid(
            request,
            study,
            kind,
            target,
            client_key=client_key,
            values={},
            errors={"skip": "Pick or type a reason to skip."},
            open_panel="skip",
        )
    try:
        kind.skip(request, target, client_key, reason)
    except ValidationError as exc:
        return _invalid(
            request,
            study,
            kind,
            target,
            client_key=client_key,
            values={},
            errors=kind.service_errors(exc),
            open_panel="skip",
        )
    except AssignmentDone:
        return _after_post(request, study, kind.done, "warning")
    return _after_post(request, study, kind.skipped)


def _undone[T](
    request: HtmxHttpRequest,
    study: Study,
    kind: _Kind[T],
    target: T,
    answers: Callable[[], Answers],
) -> HttpResponse:
    """After an undo: the item (or pair) again with the ``answers`` undone preselected; a
    plain form is sent to the page, which serves it next."""
    if not request.htmx:
        messages.info(request, kind.undone_again)
        return redirect("annotate-grade", slug=study.slug)
    undone = answers()
    skipped = any(answer.status == Annotation.Status.SKIPPED for answer in undone.values())
    status = "Skip undone." if skipped else kind.undone
    return _render(
        request, study, kind.context(target, values=_answered_values(undone)), status=status
    )


# --------------------------------------------------------------------------- one item


def _submit_item(
    request: HtmxHttpRequest, assignment: Assignment, form: GradeForm, client_key: uuid.UUID
) -> tuple[bool, str]:
    annotation = queue.submit_annotation(
        assignment_id=assignment.pk,
        annotator=request.user,
        client_key=client_key,
        labels=form.labels,
        comment=form.comment,
        flagged=bool(form.flag_reason),
        flag_reason=form.flag_reason,
        time_spent_ms=_time_spent_ms(request, assignment),
    )
    return getattr(annotation, "replayed", False), ""


def _skip_item(
    request: HtmxHttpRequest, assignment: Assignment, client_key: uuid.UUID, reason: str
) -> Annotation:
    return queue.skip_item(
        assignment_id=assignment.pk, annotator=request.user, client_key=client_key, reason=reason
    )


ITEM = _Kind[Assignment](
    sides=(),
    context=_item_context,
    halves=lambda assignment: (assignment,),
    submit=_submit_item,
    skip=_skip_item,
    service_errors=_error_text,
    saved="Saved",
    skipped="Skipped.",
    done="That item was already answered.",
    lease_lost="Not saved: your time on that item ran out and someone else graded it "
    "meanwhile. Here is the next one.",
    lease_kept="Saved. Your time on that item had run out, but nobody else had graded it, "
    "so your grade is kept.",
    undone="Undone. Your previous grade is preselected.",
    undone_again="Undone. Grade it again.",
)


@annotator_login_required
def study_home(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """One study for its annotator: progress so far and a start button."""
    study = _study_for_annotator(request, slug)
    return render(
        request,
        "annotate/grade_study.html",
        {
            "study": study,
            "progress": _progress(study, request.user),
            "dimensions": study.dimensions.all(),
        },
    )


@annotator_login_required
def grade(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The grading page with the annotator's current item (re-served while leased)."""
    study = _study_for_annotator(request, slug)
    return _render_next(request, study)


@annotator_login_required
@require_POST
def grade_submit(request: HtmxHttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    return _submit(request, study, ITEM, _own_assignment(study, request.user, assignment_id))


@annotator_login_required
@require_POST
def grade_skip(request: HtmxHttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    return _skip(request, study, ITEM, _own_assignment(study, request.user, assignment_id))


@annotator_login_required
@require_POST
def grade_undo(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Take back the last grade or skip (within the window) and show that item again."""
    study = _study_for_annotator(request, slug)
    annotation = get_object_or_404(
        Annotation,
        pk=parse_id(request.POST.get("annotation_id", "")) or 0,
        study=study,
        annotator=request.user,
    )
    try:
        # A side-by-side answer is undone with its pair; any other alone.
        undone = queue_pairs.undo_pair(
            annotation_id=annotation.pk,
            annotator=request.user,
            window_seconds=UNDO_WINDOW_SECONDS,
        )
    except UndoRefused as exc:
        return _after_post(request, study, f"Not undone: {exc.reason}.", "warning")
    if isinstance(undone, queue_pairs.Pair):
        pair = undone
        return _undone(request, study, PAIR, pair, lambda: queue_pairs.previous_values(pair))
    return _undone(request, study, ITEM, undone, lambda: {None: annotation})


@annotator_login_required
def grade_correct(request: HtmxHttpRequest, slug: str, annotation_id: int) -> HttpResponse:
    """Reopen one of the annotator's recent answers and replace its grades (a correction
    supersedes the old answer: ``history.correct_answer``)."""
    study = _study_for_annotator(request, slug)
    try:
        annotation = history.answer_for_correction(
            study=study, annotator=request.user, annotation_id=annotation_id
        )
    except Annotation.DoesNotExist:
        messages.warning(request, "That answer was corrected or undone already.")
        return redirect("annotate-grade", slug=study.slug)
    answered = _answered_values({None: annotation})
    values: dict[str, Any] = {"labels": answered["labels"], "comment": answered["comment"]}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = GradeForm(request, study, flag=False)
        labels, errors, values, comment = form.labels, form.errors, form.values, form.comment
        if not errors:
            try:
                history.correct_answer(
                    annotation_id=annotation.pk,
                    annotator=request.user,
                    labels=labels,
                    comment=comment,
                    flagged=annotation.flagged,
                    flag_reason=annotation.flag_reason,
                )
            except history.CorrectionRefused as exc:
                messages.warning(request, f"Not corrected: {exc.reason}.")
                return redirect("annotate-grade", slug=study.slug)
            except ValidationError as exc:
                errors = _error_text(exc)
            else:
                messages.success(request, "Corrected: your new grades replace the old ones.")
                return redirect("annotate-grade", slug=study.slug)
    item = history.item_for_correction(annotation)
    dimensions = _rubric(item["dimensions"], values, errors)
    context = {
        "study": study,
        "item": item,
        "annotation": annotation,
        "dimensions": dimensions,
        "key_hints": key_hints(dimensions),
        "values": values,
        "form_errors": _form_errors(errors, {d["key"] for d in dimensions}),
    }
    return render(request, "annotate/grade_correct.html", context, status=422 if errors else 200)


# --------------------------------------------------------------------------- side by side
# One prompt, two responses, each graded on every dimension (``queue_pairs`` owns the
# rules). The page is the single item's (its ``item`` partial and this module's rendering);
# the pair is shown by ``annotate/_grade_pair.html``. Form fields are named by side
# (``label-left-<dimension>``, ``label-right-<dimension>``), and the URLs carry the pair's
# random key, never an assignment id, so nothing on the page tells which response was
# picked first (the partner is more often the incumbent's).


def pair_context(
    pair: Pair,
    *,
    client_key: uuid.UUID | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    open_panel: str = "",
) -> dict[str, Any]:
    """The ``pair`` state of the page: the prompt, then each side's text and rubric blocks."""
    item = queue_pairs.pair_for_annotator(pair)
    values = values or {}
    errors = errors or {}
    sides = [
        {
            "name": SIDE_NAMES[side],
            "letter": SIDE_LETTERS[side],
            "text": item["responses"][side],
            "dimensions": _rubric(item["dimensions"], values, errors, side),
        }
        for side in SIDES
    ]
    fields = {dim["key"] for side in sides for dim in side["dimensions"]}
    return {
        "state": "pair",
        "item": item,
        "pair_key": pair.key,
        "sides": sides,
        "key_hints": key_hints(sides[0]["dimensions"]),
        "client_key": client_key or uuid.uuid4(),
        "values": values,
        "errors": errors,
        "form_errors": _form_errors(errors, fields | PANELS),
        "open_panel": open_panel,
        "skip_reasons": SKIP_REASONS,
        "flag_reasons": FLAG_REASONS,
        "flag_sides": [("both", "Both responses"), ("left", "Response A"), ("right", "Response B")],
    }


def _own_pair(study: Study, user: Any, pair_key: uuid.UUID) -> Pair:
    try:
        return queue_pairs.get_pair(pair_key=pair_key, annotator=user, study=study)
    except Assignment.DoesNotExist:
        raise Http404("No such pair to grade.") from None


def _service_errors(exc: ValidationError) -> dict[str, str]:
    """``left.labels.<key>`` → ``left-<key>`` (the form's field), other keys as they are."""
    errors = {}
    for field, text in _error_text(exc).items():
        side, _, rest = field.partition(".")
        if side in SIDE_NAMES.values() and rest.startswith("labels."):
            field = f"{side}-{rest.removeprefix('labels.')}"
        elif side in SIDE_NAMES.values():
            field = "__all__"
        errors[field] = text
    return errors


def _refusal_note(outcome: queue_pairs.PairOutcome) -> str:
    notes = []
    for side, refused in outcome.refused.items():
        letter = SIDE_LETTERS[side]
        if isinstance(refused, LeaseExpired):
            notes.append(
                f"response {letter} was not saved: your time ran out and someone else "
                "graded it meanwhile"
            )
        else:
            notes.append(f"response {letter} had already been answered")
    return "; ".join(notes)


def _submit_pair(
    request: HtmxHttpRequest, pair: Pair, form: GradeForm, client_key: uuid.UUID
) -> tuple[bool, str]:
    outcome = queue_pairs.submit_pair(
        pair_key=pair.key,
        annotator=request.user,
        client_key=client_key,
        labels=form.labels,
        comment=form.comment,
        flags=form.flags,
        time_spent_ms=_time_spent_ms(request, pair.left),
    )
    return outcome.replayed, _refusal_note(outcome)


def _skip_pair(
    request: HtmxHttpRequest, pair: Pair, client_key: uuid.UUID, reason: str
) -> queue_pairs.PairOutcome:
    return queue_pairs.skip_pair(
        pair_key=pair.key, annotator=request.user, client_key=client_key, reason=reason
    )


PAIR = _Kind[Pair](
    sides=SIDES,
    context=pair_context,
    halves=lambda pair: pair.halves,
    submit=_submit_pair,
    skip=_skip_pair,
    service_errors=_service_errors,
    saved="Both saved",
    skipped="Skipped both.",
    done="Those were already answered.",
    lease_lost="Not saved: your time on those responses ran out and someone else graded them "
    "meanwhile. Here is the next pair.",
    lease_kept="Saved. Your time on that pair had run out, but nobody else had graded it, "
    "so your grades are kept.",
    undone="Undone: both grades are back. Your previous grades are preselected.",
    undone_again="Undone. Grade both again.",
)


@annotator_login_required
@require_POST
def pair_submit(request: HtmxHttpRequest, slug: str, pair_key: uuid.UUID) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    return _submit(request, study, PAIR, _own_pair(study, request.user, pair_key))


@annotator_login_required
@require_POST
def pair_skip(request: HtmxHttpRequest, slug: str, pair_key: uuid.UUID) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    return _skip(request, study, PAIR, _own_pair(study, request.user, pair_key))


def grading_rows(studies: list[tuple[Study, str]], user: Any) -> list[dict[str, Any]]:
    """For the home page: each study the user annotates, with their progress in it."""
    return [
        {"study": study, "progress": _progress(study, user)}
        for study, role in studies
        if role == Membership.Role.ANNOTATOR
    ]
