"""My last answers and their correction (issue 14, item 6): the grading page lists the
annotator's last 10 answers; reopening one and saving supersedes it (never a duplicate),
and the fit's counts see the latest grades."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from annotate.grading import history, queue
from annotate.models import Annotation, Response, Study
from calibration.counts import study_counts
from tests.annotate.grading.test_grade_views import LABELS, add_items, grade_url
from tests.scores import cell_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(study):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    out = add_items(study, 14)
    # Every response in one cell, judge bin 0 on every dimension.
    Response.objects.filter(study=study).update(cell=cell_of(0, 0, 0))
    return out


def answer(study, user, labels=None) -> Annotation:
    assignment = queue.next_item(study=study, annotator=user)
    return queue.submit_annotation(
        assignment_id=assignment.pk,
        annotator=user,
        client_key=uuid.uuid4(),
        labels=labels or {"correctness": 1, "refusal": 0, "style": 4},
    )


def correct_url(study, annotation) -> str:
    return reverse("annotate-grade-correct", args=[study.slug, annotation.pk])


def test_the_grading_page_lists_my_last_ten_answers_with_a_correct_link(
    client, study, annotator, items
):
    answers = [answer(study, annotator) for _ in range(12)]
    client.force_login(annotator)
    html = client.get(grade_url(study)).content.decode()
    assert "My last 10 answers" in html
    for a in answers[-10:]:
        assert correct_url(study, a) in html
    assert correct_url(study, answers[0]) not in html  # older than the last 10


def test_a_correction_supersedes_the_old_answer_and_the_counts_see_the_new_grade(
    client, study, annotator, items
):
    old = answer(study, annotator)
    before = study_counts(study=study).counts["correctness"].labelled
    client.force_login(annotator)
    page = client.get(correct_url(study, old))
    assert page.status_code == 200 and 'value="1" data-key="1" required checked' in (
        page.content.decode()
    )
    r = client.post(
        correct_url(study, old),
        {**LABELS, "label-correctness": "0", "comment": "Misread the refund policy."},
    )
    assert r.status_code == 302 and r["Location"] == grade_url(study)

    live = Annotation.objects.filter(response=old.response, annotator=annotator, undone_at=None)
    (new,) = live  # exactly one live answer: superseded, not duplicated
    assert new.pk != old.pk and new.comment == "Misread the refund policy."
    assert {lab.dimension.key: lab.value for lab in new.labels.all()}["correctness"] == 0
    old.refresh_from_db()
    assert old.undone_at is not None
    event = AuditEvent.objects.get(action="annotation.correct")
    assert event.details["supersedes"] == old.pk

    after = study_counts(study=study).counts["correctness"].labelled
    graded = Annotation.objects.filter(study=study).count_graded_responses()
    assert after.sum() == before.sum() == graded == 1
    assert before[:, :, 1].sum() == 1 and after[:, :, 0].sum() == 1  # pass became fail


def test_a_correction_off_the_scale_is_refused_and_the_old_answer_stays(
    client, study, annotator, items
):
    old = answer(study, annotator)
    client.force_login(annotator)
    r = client.post(correct_url(study, old), {**LABELS, "label-style": "9"})
    assert r.status_code == 422 and "9 is not a grade for Style adherence" in r.content.decode()
    old.refresh_from_db()
    assert old.undone_at is None


def test_an_answer_corrected_already_cannot_be_corrected_twice_from_a_stale_tab(
    client, study, annotator, items
):
    old = answer(study, annotator)
    labels = {"correctness": 0, "refusal": 0, "style": 4}
    history.correct_answer(annotation_id=old.pk, annotator=annotator, labels=labels)
    client.force_login(annotator)
    r = client.post(correct_url(study, old), LABELS)
    assert r.status_code == 302
    assert Annotation.objects.filter(response=old.response, undone_at=None).count() == 1


def test_nobody_else_can_correct_my_answer(client, study, annotator, items):
    from annotate.models import Membership
    from tests.factories import MembershipFactory, UserFactory

    old = answer(study, annotator)
    dora = UserFactory(username="dora")
    MembershipFactory(study=study, user=dora, role=Membership.Role.ANNOTATOR)
    client.force_login(dora)
    r = client.post(correct_url(study, old), LABELS)
    assert r.status_code == 302  # "corrected or undone already": it is not hers to see
    old.refresh_from_db()
    assert old.undone_at is None


def test_the_progress_says_left_in_the_study_not_left_for_me(client, study, annotator, items):
    client.force_login(annotator)
    assert "Left in the study" in client.get(grade_url(study)).content.decode()
