"""An annotator's recent grades, and their correction.

The grading page lists the annotator's last :data:`HISTORY_SIZE` live answers in the study
(blind: the prompt's start and their own grades, nothing about the model). Any of them can
be reopened and corrected, without the 120 s limit of undo. A correction *supersedes*: the
old annotation is marked undone (kept, with its labels, for the audit) and a new one is
created in the same transaction, so the response keeps exactly one live answer from this
annotator (the database's ``one_live_annotation_per_response_and_annotator``), and the fit,
which reads live annotations only, sees the latest grades.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator

from accounts.services import record

from ..models import Annotation, Label, Response, Study
from . import queue

HISTORY_SIZE = 10


class CorrectionRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def recent_answers(*, study: Study, annotator: Any, limit: int = HISTORY_SIZE) -> list[dict]:
    """The annotator's last live grades and skips in the study, newest first."""
    rows = (
        Annotation.objects.live()
        .filter(study=study, annotator=annotator)
        .select_related("response__prompt")
        .prefetch_related("labels__dimension")
        .order_by("-created_at", "-id")[:limit]
    )
    out = []
    for a in rows:
        labels = sorted(a.labels.all(), key=lambda lab: (lab.dimension.position, lab.dimension_id))
        out.append(
            {
                "id": a.pk,
                "created_at": a.created_at,
                "skipped": a.status == Annotation.Status.SKIPPED,
                "prompt": Truncator(a.response.prompt.text).chars(70),
                "grades": [(lab.dimension.title, _grade_text(lab)) for lab in labels],
            }
        )
    return out


def _grade_text(label: Label) -> str:
    if label.dimension.is_binary:
        return "Pass" if label.value == 1 else "Fail"
    return str(label.value)


def answer_for_correction(*, study: Study, annotator: Any, annotation_id: int) -> Annotation:
    """The annotator's own live answer (``Annotation.DoesNotExist`` for anyone else's)."""
    return (
        Annotation.objects.live()
        .select_related("response")
        .get(pk=annotation_id, study=study, annotator=annotator)
    )


def item_for_correction(annotation: Annotation) -> dict[str, Any]:
    """What the correction page shows: the prompt and the response, blind (as
    ``queue.item_for_annotator``: never the arm, the model or a judge score)."""
    region, prompt, text = Response.objects.filter(pk=annotation.response_id).values_list(
        "region__name", "prompt__text", "text"
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
        for d in annotation.study.dimensions.all()
    ]
    return {"region": region, "prompt": prompt, "response": text, "dimensions": dimensions}


def correct_answer(
    *,
    annotation_id: int,
    annotator: Any,
    labels: dict[str, int],
    comment: str = "",
    flagged: bool = False,
    flag_reason: str = "",
    now: datetime | None = None,
) -> Annotation:
    """Replace the annotator's answer to a response by these grades (see the module).

    Raises ``Annotation.DoesNotExist`` for another annotator's answer, ``CorrectionRefused``
    when it was corrected or undone meanwhile or the user no longer grades in the study,
    ``ValidationError`` (by field) for grades off the scale.
    """
    flag_reason = flag_reason.strip() if flagged else ""
    with transaction.atomic():
        old = Annotation.objects.select_related("study").get(pk=annotation_id, annotator=annotator)
        study = old.study
        if not queue.can_grade(study=study, user=annotator):
            raise CorrectionRefused("you no longer grade in this study")
        queue.lock_response(old.response_id, skip_locked=False)
        old.refresh_from_db(fields=["undone_at"])
        if old.undone_at is not None:
            raise CorrectionRefused("this answer was corrected or undone already")
        values = queue.validate_labels(study=study, labels=labels)
        now = now or timezone.now()
        old.undone_at = now
        old.save(update_fields=["undone_at"])
        new = Annotation.objects.create(
            response_id=old.response_id,
            annotator=annotator,
            study=study,
            status=Annotation.Status.GRADED,
            comment=comment,
            flagged=bool(flag_reason),
            flag_reason=flag_reason[:200],
            time_spent_ms=old.time_spent_ms,
            created_at=now,
        )
        Label.objects.bulk_create(
            Label(annotation=new, dimension_id=dim_id, value=value)
            for dim_id, value in values.items()
        )
        record(
            actor=annotator,
            action="annotation.correct",
            study=study,
            target=new,
            details={"supersedes": old.pk, "labels": dict(labels), "was": old.status},
        )
        queue.notify_new_labels(study=study)
    return new
