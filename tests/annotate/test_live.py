"""What counts as a live grade, defined once (``annotate.models``): the ORM helpers, the SQL
fragments that say the same for plain SQL, and the main consumers agreeing with them.

An annotation stops counting when it is undone; a correction marks the old answer undone
and creates a new one. A skip is live but is not a grade.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotate.grading import history, queue
from annotate.imports.exporting import label_rows
from annotate.models import Annotation, Dimension, Label, live_grade_sql, live_sql
from calibration import selection
from calibration.counts import graded_classes
from calibration.dashboards import label_progress
from calibration.services import graded_per_arm
from tests.annotate.grading.test_grade_views import add_items

pytestmark = pytest.mark.django_db

GRADES = {"correctness": 1, "refusal": 0, "style": 4}


@pytest.fixture
def answers(study, annotator) -> dict[str, Annotation]:
    """One answer of each kind, by one annotator on responses of their own."""
    responses = add_items(study, 5)
    dims = {d.key: d for d in Dimension.objects.filter(study=study)}
    now = timezone.now()

    def answer(i: int, *, skipped: bool = False, undone: bool = False) -> Annotation:
        a = Annotation.objects.create(
            response=responses[i],
            annotator=annotator,
            study=study,
            status=Annotation.Status.SKIPPED if skipped else Annotation.Status.GRADED,
            skip_reason="unclear" if skipped else "",
            created_at=now - timedelta(minutes=10 - i),
            undone_at=now if undone else None,
        )
        if not skipped:
            for key, value in GRADES.items():
                Label.objects.create(annotation=a, dimension=dims[key], value=value)
        return a

    out = {
        "live": answer(0),
        "undone": answer(1, undone=True),
        "skipped": answer(2, skipped=True),
        "undone skip": answer(3, skipped=True, undone=True),
        "superseded": answer(4),
    }
    out["correction"] = history.correct_answer(
        annotation_id=out["superseded"].pk,
        annotator=annotator,
        labels={"correctness": 0, "refusal": 1, "style": 2},
    )
    return out


def ids(answers: dict[str, Annotation], *names: str) -> set[int]:
    return {answers[n].pk for n in names}


def sql_ids(condition: str) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT a.id FROM {Annotation._meta.db_table} a WHERE {condition}")
        return {row[0] for row in cursor.fetchall()}


def test_a_correction_marks_the_old_answer_undone(answers):
    answers["superseded"].refresh_from_db()
    assert answers["superseded"].undone_at is not None
    assert answers["correction"].undone_at is None


def test_live_answers_are_the_ones_not_undone_graded_or_skipped(answers):
    assert set(Annotation.objects.live().values_list("pk", flat=True)) == ids(
        answers, "live", "skipped", "correction"
    )


def test_live_grades_are_live_and_graded(answers):
    assert set(Annotation.objects.live_grades().values_list("pk", flat=True)) == ids(
        answers, "live", "correction"
    )


def test_labels_follow_their_annotation(answers):
    # Skips carry no labels, so the labels of live answers are those of live grades.
    for labels in (Label.objects.of_live(), Label.objects.of_live_grades()):
        assert set(labels.values_list("annotation_id", flat=True)) == ids(
            answers, "live", "correction"
        )
    assert Label.objects.of_live_grades().count() == 2 * len(GRADES)


def test_the_sql_fragments_select_the_same_rows_as_the_helpers(answers):
    assert sql_ids(live_sql("a")) == set(Annotation.objects.live().values_list("pk", flat=True))
    assert sql_ids(live_grade_sql("a")) == set(
        Annotation.objects.live_grades().values_list("pk", flat=True)
    )


def test_the_consumers_count_the_live_grades(study, annotator, answers):
    live = Annotation.objects.live_grades().filter(study=study)
    graded = set(live.values_list("response_id", flat=True))
    assert len(graded) == 2
    assert Annotation.objects.filter(study=study).count_graded_responses() == len(graded)
    state = queue.study_state(study_id=study.pk, annotator=annotator, now=timezone.now())
    assert state.graded == len(graded)
    assert sum(graded_per_arm(study=study).values()) == len(graded)
    assert label_progress(study)["used"] == len(graded)
    assert set(graded_classes(study=study, dimensions=list(study.dimensions.all()))) == graded
    progress = queue.annotator_progress(study=study, annotator=annotator)
    assert (progress["graded_total"], progress["skipped"]) == (2, 1)
    assert progress["budget_used"] == len(graded)


def test_what_is_available_is_what_has_no_live_grade(study, answers):
    # No leases here: every response without a live grade may be given out, skipped or not.
    available = set(selection.available_responses(study=study).values_list("pk", flat=True))
    graded = set(Annotation.objects.live_grades().values_list("response_id", flat=True))
    assert available == set(study.responses.values_list("pk", flat=True)) - graded
    assert answers["skipped"].response_id in available


def test_the_export_holds_the_labels_of_live_answers(study, answers):
    rows = list(label_rows(study=study))
    assert len(rows) == Label.objects.of_live().filter(annotation__study=study).count()
    assert {r["value"] for r in rows if r["dimension"] == "style"} == {4, 2}
