"""The annotation queue's rules, service by service (annotate/grading/queue.py)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from annotate import hooks
from annotate.grading import queue
from annotate.grading.queue import (
    AssignmentDone,
    LeaseExpired,
    QueueClosed,
    UndoRefused,
    annotator_progress,
    item_for_annotator,
    next_item,
    skip_item,
    submit_annotation,
    undo_annotation,
)
from annotate.models import Annotation, Assignment, Label, Study
from tests.annotate.grading.queue_helpers import (
    GOOD_LABELS,
    add_annotator,
    add_responses,
    fake_selection_rule,
    key,
)

pytestmark = pytest.mark.django_db
# The hooks as shipped, kept before any test's fake replaces them.
REAL_PICK_CELL, REAL_SELECTION_STATUS = hooks.pick_cell, hooks.selection_status


@pytest.fixture(autouse=True)
def no_selection_rule(monkeypatch):
    """Tests run against the uniform fallback unless they install a fake selection rule."""
    fake_selection_rule(monkeypatch)


def test_the_real_selection_rule_without_a_fit_picks_uniformly(study, annotator, monkeypatch):
    from calibration import selection

    monkeypatch.setattr(hooks, "pick_cell", REAL_PICK_CELL)
    monkeypatch.setattr(hooks, "selection_status", REAL_SELECTION_STATUS)
    selection.forget_cell_totals()
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    responses = add_responses(study, 8, cells=("0.0.1", "1.0.2"))
    assignment = next_item(study=study, annotator=annotator)
    assert assignment.policy == Assignment.Policy.UNIFORM
    assert assignment.probability == pytest.approx(1 / 8)
    assert assignment.response_id in {r.pk for r in responses}
    selection.forget_cell_totals()


@pytest.fixture
def no_overlap(study):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    study.refresh_from_db()
    return study


def grade(assignment, annotator, **kwargs):
    return submit_annotation(
        assignment_id=assignment.pk,
        annotator=annotator,
        client_key=kwargs.pop("client_key", key()),
        labels=kwargs.pop("labels", GOOD_LABELS),
        **kwargs,
    )


# --------------------------------------------------------------------------- leasing


def test_next_item_leases_a_response_for_the_study_lease_time(study, annotator, no_overlap):
    (response,) = add_responses(study, 1)
    now = timezone.now()
    assignment = next_item(study=study, annotator=annotator, now=now)
    assert assignment.response_id == response.pk
    assert assignment.annotator == annotator
    assert assignment.expires_at == now + timedelta(seconds=study.lease_seconds)
    assert assignment.policy == Assignment.Policy.UNIFORM
    assert assignment.probability == pytest.approx(1.0)
    assert assignment.completed_at is None


def test_a_reload_re_serves_the_open_assignment_instead_of_burning_an_item(
    study, annotator, no_overlap
):
    add_responses(study, 5)
    first = next_item(study=study, annotator=annotator)
    again = next_item(study=study, annotator=annotator)
    assert again.pk == first.pk
    assert Assignment.objects.filter(annotator=annotator).count() == 1


def test_a_response_is_never_leased_to_two_annotators_at_once(study, annotator, no_overlap):
    add_responses(study, 2)
    other = add_annotator(study, "dora")
    third = add_annotator(study, "erin")
    a = next_item(study=study, annotator=annotator)
    b = next_item(study=study, annotator=other)
    assert a.response_id != b.response_id
    with pytest.raises(QueueClosed) as closed:
        next_item(study=study, annotator=third)
    assert closed.value.reason == queue.REASON_NOTHING_LEFT


def test_an_expired_lease_goes_back_to_the_pool(study, annotator, no_overlap):
    add_responses(study, 1)
    other = add_annotator(study, "dora")
    now = timezone.now()
    mine = next_item(study=study, annotator=annotator, now=now)
    with pytest.raises(QueueClosed):
        next_item(study=study, annotator=other, now=now + timedelta(seconds=5))
    later = now + timedelta(seconds=study.lease_seconds + 1)
    theirs = next_item(study=study, annotator=other, now=later)
    assert theirs.response_id == mine.response_id


def test_the_uniform_fallback_records_one_over_the_available_responses(
    study, annotator, no_overlap
):
    responses = add_responses(study, 6)
    other = add_annotator(study, "dora")
    grade(next_item(study=study, annotator=other), other)  # 5 left
    next_item(study=study, annotator=add_annotator(study, "erin"))  # 4 left unleased
    assignment = next_item(study=study, annotator=annotator)
    assert assignment.probability == pytest.approx(1 / 4)
    assert assignment.response_id in {r.pk for r in responses}


def test_draws_inside_the_pool_are_uniform(study, annotator, no_overlap):
    responses = add_responses(study, 4)
    rng = np.random.default_rng(7)
    seen: Counter[int] = Counter()
    now = timezone.now()
    for i in range(240):
        # Each lease expires before the next request, so all four stay available.
        at = now + timedelta(seconds=(study.lease_seconds + 1) * i)
        seen[next_item(study=study, annotator=annotator, now=at, rng=rng).response_id] += 1
    assert set(seen) == {r.pk for r in responses}
    assert min(seen.values()) > 35  # expected 60 each (sd 6.7)


def test_draws_over_a_large_study_use_its_id_range_and_stay_uniform(
    study, annotator, no_overlap, monkeypatch
):
    monkeypatch.setattr(queue, "LARGE_STUDY", 3)
    responses = add_responses(study, 5)
    other = add_annotator(study, "dora")
    graded = grade(next_item(study=study, annotator=other), other)
    rng = np.random.default_rng(11)
    seen: Counter[int] = Counter()
    now = timezone.now()
    for i in range(200):
        at = now + timedelta(seconds=(study.lease_seconds + 1) * i)
        assignment = next_item(study=study, annotator=annotator, now=at, rng=rng)
        assert assignment.probability == pytest.approx(1 / 4)
        seen[assignment.response_id] += 1
    assert set(seen) == {r.pk for r in responses} - {graded.response_id}
    assert min(seen.values()) > 30  # expected 50 each (sd 6.1)


def test_only_the_study_annotators_can_ask_for_items(study, lead, admin_user, outsider):
    add_responses(study, 1)
    for user in (lead, admin_user, outsider):
        with pytest.raises(PermissionDenied):
            next_item(study=study, annotator=user)


# --------------------------------------------------------------------------- closing


def test_a_study_that_is_not_active_gives_no_items(study, annotator):
    add_responses(study, 3)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.DRAFT)
    with pytest.raises(QueueClosed) as closed:
        next_item(study=study, annotator=annotator)
    assert "not active" in closed.value.reason


def test_a_spent_budget_closes_the_queue_with_its_reason(study, annotator, no_overlap):
    Study.objects.filter(pk=study.pk).update(label_budget=2)
    add_responses(study, 5)
    grade(next_item(study=study, annotator=annotator), annotator)
    grade(next_item(study=study, annotator=annotator), annotator)
    with pytest.raises(QueueClosed) as closed:
        next_item(study=study, annotator=annotator)
    assert closed.value.reason == queue.REASON_BUDGET


def test_open_leases_of_others_reserve_the_last_of_the_budget(study, annotator, no_overlap):
    Study.objects.filter(pk=study.pk).update(label_budget=1)
    add_responses(study, 5)
    next_item(study=study, annotator=add_annotator(study, "dora"))
    with pytest.raises(QueueClosed) as closed:
        next_item(study=study, annotator=annotator)
    assert closed.value.reason == queue.REASON_BUDGET_RESERVED


def test_a_settled_study_closes_the_queue_with_the_selection_rule_reason(
    study, annotator, monkeypatch
):
    add_responses(study, 3)
    fake_selection_rule(monkeypatch, status=(False, "every verdict is settled"))
    with pytest.raises(QueueClosed) as closed:
        next_item(study=study, annotator=annotator)
    assert closed.value.reason == "every verdict is settled"


# --------------------------------------------------------------------------- selection


def test_a_cell_pick_is_drawn_inside_the_cell_and_recorded(
    study, annotator, no_overlap, monkeypatch
):
    responses = add_responses(study, 12, cells=("0.0.1", "1.1.5"))
    target = responses[3]
    pick = queue._Pick(
        arm_id=target.arm_id,
        region_id=target.region_id,
        cell=target.cell,
        policy="active",
        probability=0.5,
        score=0.25,
        fit_id=41,
    )
    fake_selection_rule(monkeypatch, pick=pick)
    in_cell = [
        r
        for r in responses
        if (r.arm_id, r.region_id, r.cell) == (target.arm_id, target.region_id, target.cell)
    ]
    assert len(in_cell) == 2
    assignment = next_item(study=study, annotator=annotator)
    assert assignment.response_id in {r.pk for r in in_cell}
    assert assignment.policy == "active"
    assert assignment.score == 0.25
    assert assignment.fit_id == 41
    assert assignment.probability == 0.5  # the rule's probability is per response already


def test_a_cell_with_nothing_available_falls_back_to_uniform(
    study, annotator, no_overlap, monkeypatch
):
    responses = add_responses(study, 3)
    pick = queue._Pick(
        arm_id=responses[0].arm_id,
        region_id=responses[0].region_id,
        cell="no-such-cell",
        policy="active",
        probability=0.9,
        score=1.0,
        fit_id=5,
    )
    fake_selection_rule(monkeypatch, pick=pick)
    assignment = next_item(study=study, annotator=annotator)
    assert assignment.policy == Assignment.Policy.UNIFORM
    assert assignment.probability == pytest.approx(1 / 3)
    assert assignment.score is None
    assert assignment.fit_id == 5


def test_overlap_picks_give_a_graded_response_a_second_annotator(study, annotator):
    Study.objects.filter(pk=study.pk).update(overlap_share=0.99)
    responses = add_responses(study, 3)
    first = add_annotator(study, "dora")
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    graded = grade(next_item(study=study, annotator=first), first)
    Study.objects.filter(pk=study.pk).update(overlap_share=0.99)
    second = next_item(study=study, annotator=annotator, rng=np.random.default_rng(1))
    assert second.policy == Assignment.Policy.OVERLAP
    assert second.response_id == graded.response_id
    assert second.probability == pytest.approx(0.99)
    grade(second, annotator)
    # Two grades now: a third annotator gets a fresh response, not a third grade.
    third = next_item(study=study, annotator=add_annotator(study, "erin"))
    assert third.response_id != graded.response_id
    assert third.response_id in {r.pk for r in responses}


def test_an_overlap_pick_never_goes_back_to_the_first_grader(study, annotator):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_responses(study, 2)
    graded = grade(next_item(study=study, annotator=annotator), annotator)
    Study.objects.filter(pk=study.pk).update(overlap_share=0.99)
    again = next_item(study=study, annotator=annotator)
    assert again.response_id != graded.response_id
    assert again.policy != Assignment.Policy.OVERLAP


# --------------------------------------------------------------------------- submitting


def test_a_submission_stores_the_labels_and_completes_the_assignment(
    study, annotator, no_overlap, django_capture_on_commit_callbacks
):
    add_responses(study, 2)
    assignment = next_item(study=study, annotator=annotator)
    with django_capture_on_commit_callbacks(execute=False):
        annotation = grade(
            assignment, annotator, comment="fine", flagged=True, flag_reason="PII inside"
        )
    assert annotation.status == Annotation.Status.GRADED
    assert annotation.replayed is False
    assert annotation.flagged and annotation.flag_reason == "PII inside"
    stored = dict(
        Label.objects.filter(annotation=annotation).values_list("dimension__key", "value")
    )
    assert stored == GOOD_LABELS
    assignment.refresh_from_db()
    assert assignment.completed_at is not None


def test_a_resubmission_with_the_same_client_key_returns_the_first_annotation(
    study, annotator, no_overlap
):
    add_responses(study, 2)
    assignment = next_item(study=study, annotator=annotator)
    client_key = key()
    first = grade(assignment, annotator, client_key=client_key)
    again = grade(assignment, annotator, client_key=client_key, labels={"whatever": 3})
    assert again.pk == first.pk
    assert again.replayed is True
    assert Annotation.objects.filter(annotator=annotator).count() == 1


def test_a_second_submission_with_another_key_is_refused(study, annotator, no_overlap):
    add_responses(study, 2)
    assignment = next_item(study=study, annotator=annotator)
    grade(assignment, annotator)
    with pytest.raises(AssignmentDone):
        grade(assignment, annotator)
    assert Annotation.objects.filter(annotator=annotator).count() == 1


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({"correctness": 1, "refusal": 0}, "labels.style"),
        ({"correctness": 2, "refusal": 0, "style": 4}, "labels.correctness"),
        ({"correctness": 1, "refusal": 0, "style": 0}, "labels.style"),
        ({"correctness": 1, "refusal": 0, "style": 6}, "labels.style"),
        ({"correctness": True, "refusal": 0, "style": 4}, "labels.correctness"),
        ({"correctness": "1", "refusal": 0, "style": 4}, "labels.correctness"),
        ({**GOOD_LABELS, "tone": 1}, "labels"),
    ],
)
def test_labels_must_cover_every_dimension_on_its_scale(
    study, annotator, no_overlap, labels, field
):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    with pytest.raises(ValidationError) as invalid:
        grade(assignment, annotator, labels=labels)
    assert field in invalid.value.message_dict
    assert not Annotation.objects.exists()


def test_a_flag_needs_a_reason(study, annotator, no_overlap):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    with pytest.raises(ValidationError) as invalid:
        grade(assignment, annotator, flagged=True)
    assert "flag_reason" in invalid.value.message_dict


def test_nobody_submits_on_someone_elses_assignment(study, annotator, no_overlap):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    with pytest.raises(Assignment.DoesNotExist):
        grade(assignment, add_annotator(study, "dora"))


def test_a_late_submission_is_kept_when_nobody_else_graded_the_response(
    study, annotator, no_overlap
):
    add_responses(study, 1)
    now = timezone.now()
    assignment = next_item(study=study, annotator=annotator, now=now)
    late = now + timedelta(seconds=study.lease_seconds * 3)
    # Someone else even holds the response now, but has not graded it.
    other = add_annotator(study, "dora")
    assert next_item(study=study, annotator=other, now=late).response_id == assignment.response_id
    annotation = grade(assignment, annotator, now=late)
    assert annotation.status == Annotation.Status.GRADED


def test_a_late_submission_is_refused_when_someone_else_graded_it(study, annotator, no_overlap):
    add_responses(study, 1)
    now = timezone.now()
    assignment = next_item(study=study, annotator=annotator, now=now)
    late = now + timedelta(seconds=study.lease_seconds + 5)
    other = add_annotator(study, "dora")
    grade(next_item(study=study, annotator=other, now=late), other, now=late)
    with pytest.raises(LeaseExpired) as refused:
        grade(assignment, annotator, now=late + timedelta(seconds=1))
    assert "ran out" in refused.value.reason
    assert not Annotation.objects.filter(annotator=annotator).exists()


def test_a_late_overlap_submission_is_kept_beside_the_first_grade(study, annotator):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_responses(study, 1)
    first = add_annotator(study, "dora")
    grade(next_item(study=study, annotator=first), first)
    Study.objects.filter(pk=study.pk).update(overlap_share=0.99)
    now = timezone.now()
    second = next_item(study=study, annotator=annotator, now=now)
    assert second.policy == Assignment.Policy.OVERLAP
    annotation = grade(second, annotator, now=now + timedelta(seconds=study.lease_seconds + 1))
    assert annotation.status == Annotation.Status.GRADED


def test_new_grades_tell_the_calibration_side_after_commit(
    study, annotator, no_overlap, monkeypatch, django_capture_on_commit_callbacks
):
    add_responses(study, 1)
    calls = []
    monkeypatch.setattr(hooks, "note_new_labels", lambda *, study: calls.append(study.pk))
    assignment = next_item(study=study, annotator=annotator)
    with django_capture_on_commit_callbacks(execute=True):
        grade(assignment, annotator)
    assert calls == [study.pk]


# --------------------------------------------------------------------------- skipping


def test_a_skip_is_recorded_with_its_reason_and_others_still_get_the_response(
    study, annotator, no_overlap
):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    skipped = skip_item(
        assignment_id=assignment.pk, annotator=annotator, client_key=key(), reason="not English"
    )
    assert skipped.status == Annotation.Status.SKIPPED
    assert skipped.skip_reason == "not English"
    assignment.refresh_from_db()
    assert assignment.completed_at is not None
    with pytest.raises(QueueClosed):
        next_item(study=study, annotator=annotator)  # not back to the skipper
    other = add_annotator(study, "dora")
    assert next_item(study=study, annotator=other).response_id == assignment.response_id


def test_a_skip_needs_a_reason(study, annotator, no_overlap):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    with pytest.raises(ValidationError) as invalid:
        skip_item(assignment_id=assignment.pk, annotator=annotator, client_key=key(), reason=" ")
    assert "reason" in invalid.value.message_dict


def test_a_skip_is_idempotent_by_client_key(study, annotator, no_overlap):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    client_key = key()
    first = skip_item(
        assignment_id=assignment.pk, annotator=annotator, client_key=client_key, reason="x"
    )
    again = skip_item(
        assignment_id=assignment.pk, annotator=annotator, client_key=client_key, reason="x"
    )
    assert first.pk == again.pk
    assert again.replayed is True


# --------------------------------------------------------------------------- undo


def test_undo_within_the_window_reopens_the_same_response(study, annotator, no_overlap):
    Study.objects.filter(pk=study.pk).update(label_budget=1)
    add_responses(study, 3)
    now = timezone.now()
    assignment = next_item(study=study, annotator=annotator, now=now)
    annotation = grade(assignment, annotator, now=now)
    with pytest.raises(QueueClosed):
        next_item(study=study, annotator=annotator, now=now)  # budget 1 is spent
    reopened = undo_annotation(
        annotation_id=annotation.pk, annotator=annotator, now=now + timedelta(seconds=60)
    )
    annotation.refresh_from_db()
    assert annotation.undone_at is not None
    assert annotation.labels.count() == 3  # kept for audit
    assert reopened.response_id == assignment.response_id
    assert reopened.completed_at is None
    assert reopened.policy == assignment.policy
    # The undone grade no longer counts: the queue is open and serves the reopened item.
    later = now + timedelta(seconds=61)
    assert next_item(study=study, annotator=annotator, now=later).pk == reopened.pk
    again = grade(reopened, annotator, labels={**GOOD_LABELS, "style": 2}, now=later)
    assert again.pk != annotation.pk


def test_undo_is_refused_after_the_window(study, annotator, no_overlap):
    add_responses(study, 1)
    now = timezone.now()
    annotation = grade(next_item(study=study, annotator=annotator, now=now), annotator, now=now)
    with pytest.raises(UndoRefused):
        undo_annotation(
            annotation_id=annotation.pk, annotator=annotator, now=now + timedelta(seconds=121)
        )


def test_undo_is_refused_for_someone_elses_annotation(study, annotator, no_overlap):
    add_responses(study, 1)
    annotation = grade(next_item(study=study, annotator=annotator), annotator)
    with pytest.raises(PermissionDenied):
        undo_annotation(annotation_id=annotation.pk, annotator=add_annotator(study, "dora"))


def test_undo_twice_is_refused(study, annotator, no_overlap):
    add_responses(study, 1)
    annotation = grade(next_item(study=study, annotator=annotator), annotator)
    undo_annotation(annotation_id=annotation.pk, annotator=annotator)
    with pytest.raises(UndoRefused):
        undo_annotation(annotation_id=annotation.pk, annotator=annotator)


def test_a_skip_can_be_undone_too(study, annotator, no_overlap):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    skipped = skip_item(
        assignment_id=assignment.pk, annotator=annotator, client_key=key(), reason="unsure"
    )
    reopened = undo_annotation(annotation_id=skipped.pk, annotator=annotator)
    assert reopened.response_id == assignment.response_id


# --------------------------------------------------------------------------- views


def test_progress_counts_grades_skips_and_what_is_left(study, annotator, no_overlap):
    Study.objects.filter(pk=study.pk).update(label_budget=10)
    study.refresh_from_db()
    add_responses(study, 5)
    grade(next_item(study=study, annotator=annotator), annotator)
    grade(next_item(study=study, annotator=annotator), annotator)
    assignment = next_item(study=study, annotator=annotator)
    skip_item(assignment_id=assignment.pk, annotator=annotator, client_key=key(), reason="x")
    progress = annotator_progress(study=study, annotator=annotator)
    assert progress == {
        "graded_today": 2,
        "graded_total": 2,
        "skipped": 1,
        "budget": 10,
        "budget_used": 2,
        "budget_left": 8,
        "left_in_study": 2,
    }


def test_the_annotator_item_never_shows_which_model_wrote_the_response(
    study, annotator, no_overlap
):
    add_responses(study, 1)
    assignment = next_item(study=study, annotator=annotator)
    item = item_for_annotator(assignment)
    assert set(item) == {
        "assignment_id",
        "expires_at",
        "region",
        "prompt",
        "response",
        "dimensions",
    }
    text = repr(item)
    for arm in study.arms.all():
        assert arm.model_name not in text
        assert arm.key not in text
    assert "secret" not in text
    style = item["dimensions"][2]
    assert style["values"] == [1, 2, 3, 4, 5]
    assert style["point_descriptions"][0] == "Off-style"
