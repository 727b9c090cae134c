"""The annotator's grading page: serve an item, take a grade, a skip or an undo.

Every view is scoped to one study through ``_study_for_annotator`` and only ever shows
what ``queue.item_for_annotator`` returns, so that no model name, arm or judge score can
reach the annotator. The queue service owns the rules (leases, idempotency, budget);
these views parse the form, call it, and render the next item.

With htmx the forms post in the background and the ``item`` partial of
``annotate/grade_page.html`` is swapped in; without JavaScript they post and redirect.

A study graded side by side shows a pair (one prompt, two responses) on the same page: its
views are at the end. One :class:`GradeForm` reads the grades of an item and of a pair.

Who may grade: only members whose role in the study is *annotator*. Leads and admins see
model names and judge scores elsewhere in Baton, so their grades would not be blind;
they get a 403 that says so. Users with no role in the study get a 404, so that the page
does not even confirm the study exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
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
# What the annotator reads of a pair: letters, so that "left" is never mistaken for a grade.
SIDE_LETTERS = {LEFT: "A", RIGHT: "B"}
FLAG_SIDES = ("both", "left", "right")


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


def _field(side: int, dimension_key: str) -> str:
    """A pair's form field of one side's dimension: ``left-<key>``."""
    return f"{SIDE_NAMES[side]}-{dimension_key}"


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
    dimensions = [_dimension_view(dim) for dim in item["dimensions"]]
    for dim in dimensions:
        dim["value"] = values.get("labels", {}).get(dim["key"])
        dim["error"] = (errors or {}).get(dim["key"], "")
    own_fields = {dim["key"] for dim in dimensions} | {"flag", "skip"}
    return {
        "state": "item",
        "item": item,
        "assignment_id": item["assignment_id"],
        "dimensions": dimensions,
        "key_hints": key_hints(dimensions),
        "client_key": client_key or uuid.uuid4(),
        "values": values,
        "errors": errors or {},
        "form_errors": [text for key, text in (errors or {}).items() if key not in own_fields],
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


def _invalid(
    request: HtmxHttpRequest,
    study: Study,
    assignment: Assignment,
    *,
    client_key: uuid.UUID,
    values: dict[str, Any],
    errors: dict[str, str],
    open_panel: str = "",
) -> HttpResponse:
    """Show the same item again with its values and errors, keeping the client key.

    htmx 2 does not swap 4xx responses by default, so htmx gets a 200 and plain forms
    the more precise 422.
    """
    context = _item_context(
        assignment,
        client_key=client_key,
        values=values,
        errors=errors,
        open_panel=open_panel,
    )
    return _render(
        request,
        study,
        context,
        status="Not saved: " + " ".join(errors.values()),
        status_kind="error",
        http_status=200 if request.htmx else 422,
    )


class GradeForm:
    """A posted grading form: a grade per dimension, a flag and a comment.

    One item's fields are ``label-<dimension key>``; a pair's are named by side
    (``label-left-<key>``, ``label-right-<key>``, ``sides=SIDES``), and ``labels`` is then
    keyed by side. ``errors`` is keyed by field as the page shows them (``<key>`` or
    ``left-<key>``, and ``flag``); ``values`` fills the form again. Without ``flag`` (a
    correction keeps the answer's flag) the flag fields are not read.
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
                name, where = dim.key, dim.title
                if side is not None:
                    name = _field(side, dim.key)
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
        if flag:
            self.flag_reason = _reason(request, "flag", FLAG_REASONS)
            if post.get("flag_choice") == OTHER and not self.flag_reason:
                self.errors["flag"] = "Say why you flag it."
        self.comment = post.get("comment", "").strip()
        self.values: dict[str, Any] = {"labels": shown, "comment": self.comment}
        if flag:
            self.values["flag_choice"] = post.get("flag_choice", "")
            self.values["flag_other"] = post.get("flag_other", "")


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
    assignment = _own_assignment(study, request.user, assignment_id)
    try:
        client_key = _client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)

    form = GradeForm(request, study)
    labels, errors, values = form.labels, form.errors, form.values
    flag_reason, comment = form.flag_reason, form.comment
    if errors:
        return _invalid(
            request,
            study,
            assignment,
            client_key=client_key,
            values=values,
            errors=errors,
            open_panel="flag" if "flag" in errors else "",
        )

    was_expired = assignment.is_expired()
    try:
        annotation = queue.submit_annotation(
            assignment_id=assignment.pk,
            annotator=request.user,
            client_key=client_key,
            labels=labels,
            comment=comment,
            flagged=bool(flag_reason),
            flag_reason=flag_reason,
            time_spent_ms=_time_spent_ms(request, assignment),
        )
    except ValidationError as exc:
        return _invalid(
            request,
            study,
            assignment,
            client_key=client_key,
            values=values,
            errors=_error_text(exc),
        )
    except LeaseExpired:
        return _after_post(
            request,
            study,
            "Not saved: your time on that item ran out and someone else graded it "
            "meanwhile. Here is the next one.",
            "warning",
        )
    except AssignmentDone:
        return _after_post(request, study, "That item was already answered.", "warning")
    if getattr(annotation, "replayed", False):
        return _after_post(request, study, "Already saved (it was not counted twice).")
    if was_expired:
        return _after_post(
            request,
            study,
            "Saved. Your time on that item had run out, but nobody else had graded it, "
            "so your grade is kept.",
            "warning",
        )
    return _after_post(request, study, "Saved" + (" and flagged." if flag_reason else "."))


@annotator_login_required
@require_POST
def grade_skip(request: HtmxHttpRequest, slug: str, assignment_id: int) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    assignment = _own_assignment(study, request.user, assignment_id)
    try:
        client_key = _client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)
    reason = _reason(request, "skip", SKIP_REASONS)
    if not reason:
        return _invalid(
            request,
            study,
            assignment,
            client_key=client_key,
            values={},
            errors={"skip": "Pick or type a reason to skip."},
            open_panel="skip",
        )
    try:
        queue.skip_item(
            assignment_id=assignment.pk,
            annotator=request.user,
            client_key=client_key,
            reason=reason,
        )
    except ValidationError as exc:
        return _invalid(
            request,
            study,
            assignment,
            client_key=client_key,
            values={},
            errors=_error_text(exc),
            open_panel="skip",
        )
    except AssignmentDone:
        return _after_post(request, study, "That item was already answered.", "warning")
    return _after_post(request, study, "Skipped.")


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
        if not request.htmx:
            messages.info(request, "Undone. Grade both again.")
            return redirect("annotate-grade", slug=study.slug)
        return render_undone(request, study, undone)
    assignment = undone
    skipped = annotation.status == Annotation.Status.SKIPPED
    if not request.htmx:
        messages.info(request, "Undone. Grade it again.")
        return redirect("annotate-grade", slug=study.slug)
    flag_codes = {text: code for code, text in FLAG_REASONS}
    flag_choice = flag_codes.get(annotation.flag_reason, OTHER) if annotation.flagged else ""
    values = {
        "labels": {
            label.dimension.key: label.value
            for label in annotation.labels.select_related("dimension")
        },
        "comment": annotation.comment,
        "flag_choice": flag_choice,
        "flag_other": annotation.flag_reason if flag_choice == OTHER else "",
    }
    status = "Skip undone." if skipped else "Undone. Your previous grade is preselected."
    return _render(request, study, _item_context(assignment, values=values), status=status)


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
    values: dict[str, Any] = {
        "labels": {
            lab.dimension.key: lab.value for lab in annotation.labels.select_related("dimension")
        },
        "comment": annotation.comment,
    }
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
    dimensions = [_dimension_view(dim) for dim in item["dimensions"]]
    for dim in dimensions:
        dim["value"] = values["labels"].get(dim["key"])
        dim["error"] = errors.get(dim["key"], "")
    context = {
        "study": study,
        "item": item,
        "annotation": annotation,
        "dimensions": dimensions,
        "key_hints": key_hints(dimensions),
        "values": values,
        "form_errors": [t for k, t in errors.items() if k not in {d["key"] for d in dimensions}],
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
    sides = []
    fields = set()
    for side in SIDES:
        dimensions = []
        for dim in item["dimensions"]:
            view = _dimension_view(dim)
            # The rubric partial names ids and inputs after ``key``: make them per side.
            view["key"] = _field(side, dim["key"])
            view["side"] = SIDE_NAMES[side]
            view["side_label"] = f"Response {SIDE_LETTERS[side]}"
            view["value"] = values.get("labels", {}).get(view["key"])
            view["error"] = errors.get(view["key"], "")
            fields.add(view["key"])
            dimensions.append(view)
        sides.append(
            {
                "name": SIDE_NAMES[side],
                "letter": SIDE_LETTERS[side],
                "text": item["responses"][side],
                "dimensions": dimensions,
            }
        )
    return {
        "state": "pair",
        "item": item,
        "pair_key": pair.key,
        "sides": sides,
        "key_hints": key_hints(sides[0]["dimensions"]),
        "client_key": client_key or uuid.uuid4(),
        "values": values,
        "errors": errors,
        "form_errors": [
            text for key, text in errors.items() if key not in fields | {"flag", "skip"}
        ],
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


def _invalid_pair(
    request: HtmxHttpRequest,
    study: Study,
    pair: Pair,
    *,
    client_key: uuid.UUID,
    values: dict[str, Any],
    errors: dict[str, str],
    open_panel: str = "",
) -> HttpResponse:
    """The same pair again with its values and errors (htmx 200, plain form 422)."""
    context = pair_context(
        pair, client_key=client_key, values=values, errors=errors, open_panel=open_panel
    )
    return _render(
        request,
        study,
        context,
        status="Not saved: " + " ".join(dict.fromkeys(errors.values())),
        status_kind="error",
        http_status=200 if request.htmx else 422,
    )


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


@annotator_login_required
@require_POST
def pair_submit(request: HtmxHttpRequest, slug: str, pair_key: uuid.UUID) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    pair = _own_pair(study, request.user, pair_key)
    try:
        client_key = _client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)

    form = GradeForm(request, study, sides=SIDES)
    errors, flag_reason = form.errors, form.flag_reason
    flag_side = request.POST.get("flag_side", "both")
    if flag_side not in FLAG_SIDES:
        errors["flag"] = (
            f"Flag which response? {flag_side!r} is not one of {', '.join(FLAG_SIDES)}."
        )
    flags = {
        side: flag_reason
        for side in SIDES
        if flag_reason and flag_side in ("both", SIDE_NAMES[side])
    }
    values = {**form.values, "flag_side": flag_side}
    if errors:
        return _invalid_pair(
            request,
            study,
            pair,
            client_key=client_key,
            values=values,
            errors=errors,
            open_panel="flag" if "flag" in errors else "",
        )

    was_expired = any(half.is_expired() for half in pair.halves)
    try:
        outcome = queue_pairs.submit_pair(
            pair_key=pair.key,
            annotator=request.user,
            client_key=client_key,
            labels=form.labels,
            comment=form.comment,
            flags=flags,
            time_spent_ms=_time_spent_ms(request, pair.left),
        )
    except ValidationError as exc:
        return _invalid_pair(
            request, study, pair, client_key=client_key, values=values, errors=_service_errors(exc)
        )
    except LeaseExpired:
        return _after_post(
            request,
            study,
            "Not saved: your time on those responses ran out and someone else graded them "
            "meanwhile. Here is the next pair.",
            "warning",
        )
    except AssignmentDone:
        return _after_post(request, study, "Those were already answered.", "warning")
    if outcome.refused:
        return _after_post(
            request, study, f"Saved, except that {_refusal_note(outcome)}.", "warning"
        )
    if outcome.replayed:
        return _after_post(request, study, "Already saved (it was not counted twice).")
    if was_expired:
        return _after_post(
            request,
            study,
            "Saved. Your time on that pair had run out, but nobody else had graded it, "
            "so your grades are kept.",
            "warning",
        )
    return _after_post(request, study, "Both saved" + (" and flagged." if flags else "."))


@annotator_login_required
@require_POST
def pair_skip(request: HtmxHttpRequest, slug: str, pair_key: uuid.UUID) -> HttpResponse:
    study = _study_for_annotator(request, slug)
    pair = _own_pair(study, request.user, pair_key)
    try:
        client_key = _client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)
    reason = _reason(request, "skip", SKIP_REASONS)
    if not reason:
        return _invalid_pair(
            request,
            study,
            pair,
            client_key=client_key,
            values={},
            errors={"skip": "Pick or type a reason to skip."},
            open_panel="skip",
        )
    try:
        queue_pairs.skip_pair(
            pair_key=pair.key, annotator=request.user, client_key=client_key, reason=reason
        )
    except AssignmentDone:
        return _after_post(request, study, "Those were already answered.", "warning")
    return _after_post(request, study, "Skipped both.")


def render_undone(request: HtmxHttpRequest, study: Study, pair: Pair) -> HttpResponse:
    """After ``undo_pair``: the pair again, its previous grades preselected."""
    flag_codes = {text: code for code, text in FLAG_REASONS}
    previous = queue_pairs.previous_values(pair)
    labels: dict[str, int] = {}
    flagged: dict[int, Annotation] = {}
    for side, annotation in previous.items():
        for label in annotation.labels.all():
            labels[_field(side, label.dimension.key)] = label.value
        if annotation.flagged:
            flagged[side] = annotation
    values: dict[str, Any] = {"labels": labels}
    if previous:
        values["comment"] = next(iter(previous.values())).comment
    if flagged:
        reason = next(iter(flagged.values())).flag_reason
        choice = flag_codes.get(reason, OTHER)
        values["flag_choice"] = choice
        values["flag_other"] = reason if choice == OTHER else ""
        values["flag_side"] = "both" if len(flagged) == 2 else SIDE_NAMES[next(iter(flagged))]
    skipped = any(a.status == Annotation.Status.SKIPPED for a in previous.values())
    status = (
        "Skip undone."
        if skipped
        else "Undone: both grades are back. Your previous grades are preselected."
    )
    return _render(request, study, pair_context(pair, values=values), status=status)


def grading_rows(studies: list[tuple[Study, str]], user: Any) -> list[dict[str, Any]]:
    """For the home page: each study the user annotates, with their progress in it."""
    return [
        {"study": study, "progress": _progress(study, user)}
        for study, role in studies
        if role == Membership.Role.ANNOTATOR
    ]
