"""Audit picks: uniform over all the study's responses, recorded with their propensity."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from annotate.grading.queue import next_item, submit_annotation
from annotate.models import Assignment, Study
from calibration.audit_data import audit_response_ids
from tests.annotate.grading.queue_helpers import (
    GOOD_LABELS,
    add_annotator,
    add_responses,
    fake_selection_rule,
    key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_selection_rule(monkeypatch):
    fake_selection_rule(monkeypatch)


def _audit_only(study: Study) -> Study:
    # audit_share < 1 by constraint; 0.999 makes nearly every pick an audit pick.
    Study.objects.filter(pk=study.pk).update(overlap_share=0, audit_share=0.999)
    study.refresh_from_db()
    return study


def test_an_audit_pick_records_its_policy_and_propensity_over_all_responses(study, annotator):
    _audit_only(study)
    add_responses(study, 10)
    a = next_item(study=study, annotator=annotator, rng=np.random.default_rng(3))
    assert a.policy == Assignment.Policy.AUDIT
    assert a.probability == pytest.approx(0.999 / 10)


def test_an_audit_draw_on_a_graded_response_keeps_it_in_the_sample(study, annotator):
    """Uniform over *all* responses: a response graded earlier (by an active pick, say) is
    as likely to be drawn, and then joins the audit sample with the grade it has."""
    _audit_only(study)
    responses = add_responses(study, 6)
    other = add_annotator(study, "other")
    for _ in range(5):  # five of the six graded by someone else, through the queue
        Study.objects.filter(pk=study.pk).update(audit_share=0)
        a = next_item(study=study, annotator=other, rng=np.random.default_rng(_))
        submit_annotation(assignment_id=a.pk, annotator=other, client_key=key(), labels=GOOD_LABELS)
    Study.objects.filter(pk=study.pk).update(audit_share=0.999)
    seen = Counter()
    rng = np.random.default_rng(0)
    a = next_item(study=study, annotator=annotator, rng=rng)
    assert a.policy == Assignment.Policy.AUDIT  # the one ungraded response, in the end
    recorded = Assignment.objects.filter(policy=Assignment.Policy.AUDIT, study=study)
    for r in recorded:
        seen[r.response_id] += 1
    drawn_graded = set(seen) - {a.response_id}
    assert drawn_graded, "draws on graded responses are recorded"
    assert all(r.completed_at is not None for r in recorded if r.pk != a.pk)
    assert audit_response_ids(study) == set(seen)
    assert set(seen) <= {r.pk for r in responses}


def test_audit_draws_are_uniform_over_responses(study):
    _audit_only(study)
    add_responses(study, 8, cells=("0.0.1", "1.1.4"))
    rng = np.random.default_rng(1)
    counts: Counter[int] = Counter()
    for i in range(160):
        ann = add_annotator(study, f"a{i}")
        a = next_item(study=study, annotator=ann, rng=rng)
        counts[a.response_id] += a.policy == Assignment.Policy.AUDIT
        Assignment.objects.filter(pk=a.pk).delete()  # free it again
    n = np.array(list(counts.values()))
    assert len(counts) == 8 and n.min() >= 8  # 20 expected per response


def test_side_by_side_pairs_start_from_an_audit_pick_and_only_it_is_audited(study, annotator):
    """The pair queue asks next_item for its first half, so audit picks reach it too; the
    partner is drawn given the first (policy partner) and is not part of the audit."""
    from annotate.grading import queue_pairs
    from tests.annotate.grading.test_side_by_side import add_prompts

    Study.objects.filter(pk=study.pk).update(side_by_side=True, overlap_share=0,
                                             audit_share=0.999)  # fmt: skip
    study.refresh_from_db()
    add_prompts(study, 6)
    pair = queue_pairs.next_pair(study=study, annotator=annotator, rng=np.random.default_rng(2))
    policies = sorted(h.policy for h in pair.halves)
    assert policies == [Assignment.Policy.AUDIT, Assignment.Policy.PARTNER]
    audited = next(h for h in pair.halves if h.policy == Assignment.Policy.AUDIT)
    assert audit_response_ids(study) == {audited.response_id}
