"""The grading page in side-by-side mode: one prompt, two responses, each graded on every
dimension (``annotate.grading.queue_pairs`` owns the rules).

It reuses the single-item page (``annotate/grade_page.html``, its ``item`` partial and
``views``' rendering): the pair is shown by ``annotate/_grade_pair.html``. Form
fields are named by side (``label-left-<dimension>``, ``label-right-<dimension>``), and
the URLs carry the pair's random key, never an assignment id, so nothing on the page tells
which response was picked first (the partner is more often the incumbent's).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_POST

from ..models import Annotation, Assignment, Study
from . import queue_pairs, views
from .queue import AssignmentDone, LeaseExpired
from .queue_pairs import LEFT, RIGHT, SIDE_NAMES, SIDES, Pair
from .views import (
    FLAG_REASONS,
    OTHER,
    SKIP_REASONS,
    HtmxHttpRequest,
    annotator_login_required,
)

# What the annotator reads: letters, so that "left" is never mistaken for a grade.
SIDE_LETTERS = {LEFT: "A", RIGHT: "B"}
FLAG_SIDES = ("both", "left", "right")


def _field(side: int, dimension_key: str) -> str:
    return f"{SIDE_NAMES[side]}-{dimension_key}"


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
            view = views._dimension_view(dim)
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
        "key_hints": views.key_hints(sides[0]["dimensions"]),
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


def _invalid(
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
    return views._render(
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
    for field, text in views._error_text(exc).items():
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
    study = views._study_for_annotator(request, slug)
    pair = _own_pair(study, request.user, pair_key)
    try:
        client_key = views._client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)

    dimensions = list(study.dimensions.all())
    labels: dict[int, dict[str, int]] = {LEFT: {}, RIGHT: {}}
    shown: dict[str, int] = {}
    errors: dict[str, str] = {}
    for side in SIDES:
        for dim in dimensions:
            name = _field(side, dim.key)
            where = f"{dim.title} of response {SIDE_LETTERS[side]}"
            try:
                value = int(request.POST.get(f"label-{name}", ""))
            except ValueError:
                errors[name] = f"Pick a grade for {where}."
                continue
            if value not in dim.scale_values():
                errors[name] = f"{value} is not a grade for {where}."
                continue
            labels[side][dim.key] = value
            shown[name] = value
    flag_reason = views._reason(request, "flag", FLAG_REASONS)
    if request.POST.get("flag_choice") == OTHER and not flag_reason:
        errors["flag"] = "Say why you flag it."
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
    comment = request.POST.get("comment", "").strip()
    values = {
        "labels": shown,
        "comment": comment,
        "flag_choice": request.POST.get("flag_choice", ""),
        "flag_other": request.POST.get("flag_other", ""),
        "flag_side": flag_side,
    }
    if errors:
        return _invalid(
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
            labels=labels,
            comment=comment,
            flags=flags,
            time_spent_ms=views._time_spent_ms(request, pair.left),
        )
    except ValidationError as exc:
        return _invalid(
            request, study, pair, client_key=client_key, values=values, errors=_service_errors(exc)
        )
    except LeaseExpired:
        return views._after_post(
            request,
            study,
            "Not saved: your time on those responses ran out and someone else graded them "
            "meanwhile. Here is the next pair.",
            "warning",
        )
    except AssignmentDone:
        return views._after_post(request, study, "Those were already answered.", "warning")
    if outcome.refused:
        return views._after_post(
            request, study, f"Saved, except that {_refusal_note(outcome)}.", "warning"
        )
    if outcome.replayed:
        return views._after_post(request, study, "Already saved (it was not counted twice).")
    if was_expired:
        return views._after_post(
            request,
            study,
            "Saved. Your time on that pair had run out, but nobody else had graded it, "
            "so your grades are kept.",
            "warning",
        )
    return views._after_post(request, study, "Both saved" + (" and flagged." if flags else "."))


@annotator_login_required
@require_POST
def pair_skip(request: HtmxHttpRequest, slug: str, pair_key: uuid.UUID) -> HttpResponse:
    study = views._study_for_annotator(request, slug)
    pair = _own_pair(study, request.user, pair_key)
    try:
        client_key = views._client_key(request)
    except ValidationError:
        return HttpResponse("Missing client key.", status=400)
    reason = views._reason(request, "skip", SKIP_REASONS)
    if not reason:
        return _invalid(
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
        return views._after_post(request, study, "Those were already answered.", "warning")
    return views._after_post(request, study, "Skipped both.")


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
    return views._render(request, study, pair_context(pair, values=values), status=status)
