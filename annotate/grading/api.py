"""The annotation queue over HTTP: next item, submit, skip, undo (services in queue.py).

Only members of the study with the *annotator* role may call these (see ``queue.can_grade``
for why leads and admins do not grade): a non-member gets 404 (the study is not disclosed),
another role 403. Someone else's assignment or annotation is a 404 / 403 likewise.

Every refusal of the queue itself is HTTP 409 with ``{"code", "reason"}``: ``queue_closed``
(study not active, budget spent, every verdict settled, nothing left), ``lease_expired``,
``assignment_done``, ``undo_refused``. Validation errors are 400 keyed by field
(``labels.<dimension key>``, ``flag_reason``, ``reason``, ``client_key``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import Annotation, Assignment, Membership, Study
from . import queue
from .serializers import (
    AnnotationResultSerializer,
    AnnotatorItemSerializer,
    QueueRefusalSerializer,
    SkipSerializer,
    SubmitSerializer,
)

UNDO_WINDOW_SECONDS = 120

REFUSAL = OpenApiResponse(QueueRefusalSerializer, description="The queue refuses; see reason.")


def _study_for_grader(user: Any, slug: str) -> Study:
    membership = (
        Membership.objects.filter(study__slug=slug, user_id=user.pk).select_related("study").first()
    )
    if membership is None:
        raise Http404("No such study.")
    if membership.role != Membership.Role.ANNOTATOR:
        raise DRFPermissionDenied("Only the study's annotators grade in it.")
    return membership.study


def _refusal(error: queue.QueueError) -> Response:
    return Response({"code": error.code, "reason": error.reason}, status=status.HTTP_409_CONFLICT)


def _invalid(error: ValidationError) -> DRFValidationError:
    return DRFValidationError(
        error.message_dict if hasattr(error, "error_dict") else error.messages
    )


def _annotation_payload(annotation: Annotation) -> dict[str, Any]:
    # A fresh grade carries the labels it was stored with; a replay reads them back.
    labels = getattr(annotation, "label_values", None)
    if labels is None:
        labels = dict(annotation.labels.values_list("dimension__key", "value"))
    return {
        "id": annotation.pk,
        "status": annotation.status,
        "replayed": bool(getattr(annotation, "replayed", False)),
        "labels": labels,
        "skip_reason": annotation.skip_reason,
        "flagged": annotation.flagged,
        "created_at": annotation.created_at,
        "undo_until": annotation.created_at + timedelta(seconds=UNDO_WINDOW_SECONDS),
    }


def _stored(annotation: Annotation) -> Response:
    code = status.HTTP_200_OK if getattr(annotation, "replayed", False) else 201
    return Response(AnnotationResultSerializer(_annotation_payload(annotation)).data, status=code)


@extend_schema(
    operation_id="annotate_next_item",
    request=None,
    responses={200: AnnotatorItemSerializer, 409: REFUSAL},
    summary="The annotator's current item (re-served) or a new one leased to them.",
)
@api_view(["POST"])
def next_item(request: Request, slug: str) -> Response:
    study = _study_for_grader(request.user, slug)
    try:
        # Side by side is a mode of the page: a pair's partner stays there (queue_pairs).
        assignment = queue.next_item(study=study, annotator=request.user, partners=False)
    except queue.QueueClosed as closed:
        return _refusal(closed)
    return Response(AnnotatorItemSerializer(queue.item_for_annotator(assignment)).data)


@extend_schema(
    operation_id="annotate_submit",
    request=SubmitSerializer,
    responses={
        201: AnnotationResultSerializer,
        200: OpenApiResponse(AnnotationResultSerializer, description="Replay of a client_key."),
        409: REFUSAL,
    },
    summary="Grade the assigned response; idempotent by client_key.",
)
@api_view(["POST"])
def submit(request: Request, assignment_id: int) -> Response:
    return _answer(request, assignment_id, SubmitSerializer, queue.submit_annotation)


@extend_schema(
    operation_id="annotate_skip",
    request=SkipSerializer,
    responses={201: AnnotationResultSerializer, 200: AnnotationResultSerializer, 409: REFUSAL},
    summary="Skip the assigned response, saying why; it stays in the pool for others.",
)
@api_view(["POST"])
def skip(request: Request, assignment_id: int) -> Response:
    return _answer(request, assignment_id, SkipSerializer, queue.skip_item)


def _answer(
    request: Request,
    assignment_id: int,
    serializer_class: type[serializers.Serializer],
    service: Callable[..., Annotation],
) -> Response:
    """Validate, call the queue service for one assignment, map its refusals to HTTP."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        annotation = service(
            assignment_id=assignment_id, annotator=request.user, **data.validated_data
        )
    except Assignment.DoesNotExist:
        raise Http404("No such assignment of yours.") from None
    except ValidationError as invalid:
        raise _invalid(invalid) from None
    except PermissionDenied as denied:
        raise DRFPermissionDenied(str(denied)) from None
    except queue.QueueError as refused:
        return _refusal(refused)
    return _stored(annotation)


@extend_schema(
    operation_id="annotate_undo",
    request=None,
    responses={200: AnnotatorItemSerializer, 409: REFUSAL},
    summary="Undo your recent grade or skip; the same response comes back to you.",
)
@api_view(["POST"])
def undo(request: Request, annotation_id: int) -> Response:
    try:
        assignment = queue.undo_annotation(
            annotation_id=annotation_id,
            annotator=request.user,
            window_seconds=UNDO_WINDOW_SECONDS,
        )
    except Annotation.DoesNotExist:
        raise Http404("No such annotation.") from None
    except PermissionDenied as denied:
        raise DRFPermissionDenied(str(denied)) from None
    except queue.QueueError as refused:
        return _refusal(refused)
    return Response(AnnotatorItemSerializer(queue.item_for_annotator(assignment)).data)
