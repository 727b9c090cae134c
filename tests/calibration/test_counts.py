"""Counts from the database: closed forms on hand-made studies."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from django.utils import timezone

from annotate.models import Annotation, Arm, Label, Region, Response
from annotate.setup.services import rebuild_cells
from calibration.bayes.data import bin_scores
from calibration.counts import study_counts
from tests.calibration.helpers import grade, populate
from tests.factories import PromptFactory, ResponseFactory, UserFactory
from tests.scores import score_rows, scores_of, value_in_bin

pytestmark = pytest.mark.django_db

# The judge cuts of make_study()'s dimensions: binary judges, and a 1-5 Likert judge.
CUTS = {"correctness": [0.5], "refusal": [0.5], "style": [1.5, 2.5, 3.5, 4.5]}


@pytest.fixture
def graders(db):
    return [UserFactory(username=f"g{i}") for i in range(3)]


def _response(study, arm_key: str, region_key: str, bins: dict[str, int]) -> Response:
    """A response with a judge score in the given bin on each dimension of ``bins`` (none on
    the others)."""
    region = study.regions.get(key=region_key)
    prompt = PromptFactory(study=study, region=region)
    values = {d: value_in_bin(d, bins[d.key]) for d in study.dimensions.all() if d.key in bins}
    response = ResponseFactory(
        prompt=prompt, arm=study.arms.get(key=arm_key), scores=scores_of(values, "j")
    )
    rebuild_cells(study=study)  # as an import does: each response's cell holds its bins
    response.refresh_from_db()
    assert response.cell.split(".") == [str(bins.get(d.key, "")) for d in _dims(study)]
    return response


def _dims(study):
    return list(study.dimensions.order_by("position", "id"))


def test_majority_ties_skips_and_undos_give_the_closed_form_counts(study, graders):
    dims = {d.key: d for d in study.dimensions.all()}
    corr, style = dims["correctness"], dims["style"]
    a, b, c = graders
    # A: incumbent/eu, bin 1; two passes → y = 1.
    r = _response(study, "inc", "eu", {"correctness": 1, "style": 4})
    grade(r, a, {corr: 1, style: 4})
    grade(r, b, {corr: 1, style: 5})
    # B: incumbent/eu, bin 0; one pass one fail → tie → judge-only on correctness;
    # style 4 and 3 with pass_threshold 4 → also a tie.
    r = _response(study, "inc", "eu", {"correctness": 0, "style": 2})
    grade(r, a, {corr: 1, style: 4})
    grade(r, b, {corr: 0, style: 3})
    # C: cand1/us, bin 1; a fail, plus a skip (no label) → y = 0.
    r = _response(study, "cand1", "us", {"correctness": 1, "style": 0})
    grade(r, a, {corr: 0, style: 1})
    Annotation.objects.create(
        response=r, annotator=b, study=study, status="skipped", skip_reason="unclear"
    )
    # D: cand1/us, bin 0; its only grade was undone → judge-only.
    r = _response(study, "cand1", "us", {"correctness": 0, "style": 0})
    grade(r, a, {corr: 1, style: 5}, undone_at=timezone.now())
    # E: cand1/us, bin 0; 1, 1, 0 → y = 1; style 2, 5, 5 → pass.
    r = _response(study, "cand1", "us", {"correctness": 0, "style": 3})
    grade(r, a, {corr: 1, style: 2})
    grade(r, b, {corr: 1, style: 5})
    grade(r, c, {corr: 0, style: 5})
    # F: cand2/eu, no judge score (so no bin) on any dimension.
    r = _response(study, "cand2", "eu", {})
    grade(r, a, {corr: 1})

    data = study_counts(study=study)

    assert list(data.counts) == ["correctness", "refusal", "style"]
    cc = data.counts["correctness"]
    assert cc.arms == ("inc", "cand1", "cand2") and cc.regions == ("eu", "us")
    assert cc.n_bins == 2 and data.counts["style"].n_bins == 5
    jo = np.zeros((3, 2, 2), dtype=int)
    lab = np.zeros((3, 2, 2, 2), dtype=int)
    lab[0, 0, 1, 1] = 1  # A
    jo[0, 0, 0] = 1  # B (tie)
    lab[1, 1, 0, 1] = 1  # C
    jo[1, 1, 0] = 1  # D (undone)
    lab[1, 1, 1, 0] = 1  # E
    np.testing.assert_array_equal(cc.judge_only, jo)
    np.testing.assert_array_equal(cc.labelled, lab)

    sc = data.counts["style"]
    jo = np.zeros((3, 2, 5), dtype=int)
    lab = np.zeros((3, 2, 2, 5), dtype=int)
    lab[0, 0, 1, 4] = 1  # A: 4, 5 pass
    jo[0, 0, 2] = 1  # B: tie
    lab[1, 1, 0, 0] = 1  # C: 1 fails
    jo[1, 1, 0] = 1  # D: undone
    lab[1, 1, 1, 3] = 1  # E: 2, 5, 5 → pass
    np.testing.assert_array_equal(sc.judge_only, jo)
    np.testing.assert_array_equal(sc.labelled, lab)

    # Refusal has no judge scores at all.
    assert data.counts["refusal"].judge_only.sum() == 0
    # Graded responses: A, B, C, E, F (D's only grade was undone; C's skip is not a grade).
    assert data.n_labels == Annotation.objects.filter(study=study).count_graded_responses() == 5
    assert data.n_responses == 6
    np.testing.assert_allclose(data.traffic_shares, [0.6, 0.4])
    assert data.bins["style"] == {"cuts": None, "n_bins": 5}
    assert data.margins == {"correctness": 0.02, "refusal": 0.02, "style": 0.02}


def test_counts_match_a_per_response_recount(study):
    """Random study: the GROUP BY counts equal a plain Python recount with Dimension.passes."""
    populate(study, prompts_per_region=15, graded_share=0.5, annotators=3, seed=7)
    data = study_counts(study=study)
    arm_i = {
        a.pk: i
        for i, a in enumerate(sorted(study.arms.all(), key=lambda a: a.role != Arm.Role.INCUMBENT))
    }
    region_i = {
        g.pk: i for i, g in enumerate(Region.objects.filter(study=study).order_by("position"))
    }
    place = {
        pk: (arm_i[arm_id], region_i[region_id])
        for pk, arm_id, region_id in study.responses.values_list("pk", "arm_id", "region_id")
    }
    for dim in study.dimensions.all():
        votes: dict[int, Counter] = {}
        for label in Label.objects.filter(
            dimension=dim, annotation__status="graded", annotation__undone_at=None
        ).select_related("annotation"):
            votes.setdefault(label.annotation.response_id, Counter())[dim.passes(label.value)] += 1
        jo = np.zeros_like(data.counts[dim.key].judge_only)
        lab = np.zeros_like(data.counts[dim.key].labelled)
        rows = [row for row in score_rows(study) if row[1] == dim.pk]
        assert len(rows) == 2 * 15 * 3
        # Each cell's bin is the judge's value binned by the dimension's cuts.
        values, bins = [v for *_, v, _ in rows], [b for *_, b in rows]
        assert bins == bin_scores(values, CUTS[dim.key]).tolist()
        for response_id, _, _, _, b in rows:
            cell = place[response_id]
            v = votes.get(response_id, Counter())
            if v[True] > v[False]:
                lab[(*cell, 1, b)] += 1
            elif v[False] > v[True]:
                lab[(*cell, 0, b)] += 1
            else:
                jo[(*cell, b)] += 1
        np.testing.assert_array_equal(data.counts[dim.key].judge_only, jo)
        np.testing.assert_array_equal(data.counts[dim.key].labelled, lab)
        assert (
            data.counts[dim.key].judge_only.sum() + data.counts[dim.key].labelled.sum()
            == 2 * 15 * 3
        )
        assert lab.sum() > 0 and jo.sum() > 0
        # The model's joint cells hold the same responses and labels.
        d = list(data.counts).index(dim.key)
        assert data.cells is not None
        np.testing.assert_array_equal(data.cells.labelled[d].sum(axis=-1), lab.sum(axis=(2, 3)))
        np.testing.assert_array_equal(data.cells.passes[d].sum(axis=-1), lab[:, :, 1].sum(axis=-1))
    assert data.cells is not None
    assert data.cells.totals.sum() == 2 * 15 * 3
    for k, combo in enumerate(data.cells.combos.tolist()):
        cell = ".".join(str(b) for b in combo)
        per_arm_region = Counter(
            (arm_i[r.arm_id], region_i[r.region_id]) for r in study.responses.filter(cell=cell)
        )
        for (a, g), n in per_arm_region.items():
            assert data.cells.totals[a, g, k] == n


def test_counts_take_a_fixed_number_of_queries(study, django_assert_max_num_queries):
    populate(study, prompts_per_region=10, graded_share=0.5)
    # The first read of the stored cell totals recounts them (counts, then fences).
    with django_assert_max_num_queries(14):
        study_counts(study=study)
    with django_assert_max_num_queries(9):
        study_counts(study=study)


def test_bins_outside_the_dimension_cuts_are_refused(study):
    populate(study, prompts_per_region=2, graded_share=0.0)
    # Cells binned under finer cuts than the dimension has now (stale cells): judge values 1
    # fall in bin 3 of [0.25, 0.5, 0.75], which a binary judge with cuts [0.5] has not.
    correctness = study.dimensions.filter(key="correctness")
    correctness.update(judge_cuts=[0.25, 0.5, 0.75])
    rebuild_cells(study=study)
    assert {b for _, d, _, _, b in score_rows(study) if d == correctness.get().pk} == {0, 3}
    correctness.update(judge_cuts=[0.5])
    with pytest.raises(ValueError, match="judge bin 3 outside 0..1"):
        study_counts(study=study)
