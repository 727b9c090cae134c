"""Stored per-cell totals: a pick reads them instead of counting the responses."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotate.models import Annotation, Response
from calibration.models import CellTotal
from calibration.selection import (
    available_counts,
    forget_cell_totals,
    pick_cell,
    refresh_cell_totals,
)
from tests.factories import PromptFactory, ResponseFactory, make_study


@pytest.fixture(autouse=True)
def _fresh_caches():
    forget_cell_totals()
    yield
    forget_cell_totals()


@pytest.fixture
def study(db):
    return make_study(slug="totals", candidates=1)


def _add(study, arm_key: str, cell: str, n: int) -> list[Response]:
    arm = study.arms.get(key=arm_key)
    region = study.regions.order_by("position", "id").first()
    return [
        ResponseFactory(prompt=PromptFactory(study=study, region=region), arm=arm, cell=cell)
        for _ in range(n)
    ]


def _stored(study) -> dict[tuple[str, str], int]:
    return {
        (t.arm.key, t.cell): t.responses
        for t in CellTotal.objects.filter(study=study).select_related("arm")
    }


def _sql_touching_responses(study) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        available_counts(study=study)
    return [q["sql"] for q in ctx.captured_queries if "annotate_response" in q["sql"]]


def test_refresh_counts_every_cell_of_the_study(study):
    _add(study, "inc", "0.1.2", 3)
    _add(study, "cand1", "1.1.4", 2)
    other = make_study(slug="other", candidates=1)
    _add(other, "inc", "0.1.2", 5)
    assert refresh_cell_totals(study=study) == 2
    assert _stored(study) == {("inc", "0.1.2"): 3, ("cand1", "1.1.4"): 2}
    assert not CellTotal.objects.filter(study=other).exists()


def test_the_first_pick_counts_and_later_picks_only_read_the_totals(study):
    _add(study, "inc", "0.0.0", 4)
    assert not CellTotal.objects.filter(study=study).exists()
    assert available_counts(study=study)[0][3] == 4
    assert _stored(study) == {("inc", "0.0.0"): 4}
    # Fresh totals: the only statements on the responses table are the watermark probe
    # (MAX(id), read from the primary key) and none that groups or counts them.
    touching = _sql_touching_responses(study)
    assert touching, "the watermark probe reads the responses table"
    assert not [sql for sql in touching if "GROUP BY" in sql or "COUNT(" in sql.upper()]


def test_responses_added_after_counting_are_counted_at_the_next_pick(study):
    _add(study, "inc", "0.0.0", 2)
    assert available_counts(study=study) == [(study.incumbent.pk, _region(study), "0.0.0", 2)]
    _add(study, "inc", "0.0.0", 3)
    _add(study, "cand1", "1.0.1", 1)
    counts = {(a, c): n for a, _, c, n in available_counts(study=study)}
    cand1 = study.arms.get(key="cand1").pk
    assert counts == {(study.incumbent.pk, "0.0.0"): 5, (cand1, "1.0.1"): 1}


def test_forgetting_a_study_recounts_it_after_re_binning(study):
    responses = _add(study, "inc", "0.0.0", 4)
    available_counts(study=study)
    # Re-binning rewrites cells in place (no new response, so no watermark change).
    Response.objects.filter(pk__in=[r.pk for r in responses[:3]]).update(cell="1.1.1")
    assert _stored(study) == {("inc", "0.0.0"): 4}
    forget_cell_totals(study.pk)
    assert not CellTotal.objects.filter(study=study).exists()
    counts = {c: n for _, _, c, n in available_counts(study=study)}
    assert counts == {"0.0.0": 1, "1.1.1": 3}


def test_busy_responses_keep_their_cell_after_a_recount(study):
    responses = _add(study, "inc", "0.0.0", 3)
    user = _user()
    Annotation.objects.create(response=responses[0], annotator=user, study=study)
    assert {c: n for _, _, c, n in available_counts(study=study)} == {"0.0.0": 2}
    # The graded response moves to another cell: the per-process cache of busy cells
    # must follow the recount, not keep the old cell.
    Response.objects.filter(pk=responses[0].pk).update(cell="1.1.1")
    forget_cell_totals(study.pk)
    assert {c: n for _, _, c, n in available_counts(study=study)} == {"0.0.0": 2}


def test_a_pick_carries_the_size_of_its_cell(study):
    _add(study, "inc", "0.0.0", 3)
    responses = _add(study, "cand1", "1.0.1", 2)
    Annotation.objects.create(response=responses[0], annotator=_user(), study=study)
    picks = [pick_cell(study=study, rng=np.random.default_rng(seed)) for seed in range(20)]
    sizes = {p.cell: p.total for p in picks}
    assert sizes == {"0.0.0": 3, "1.0.1": 2}  # total, graded or not
    assert {p.cell: p.probability for p in picks} == {
        "0.0.0": pytest.approx(1 / 4),
        "1.0.1": pytest.approx(1 / 4),
    }


def _region(study) -> int:
    return study.regions.order_by("position", "id").first().pk


def _user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get_or_create(username="grader")[0]


def test_labels_since_a_fit_take_the_majority_per_dimension(study):
    from datetime import timedelta

    from annotate.models import Label
    from calibration.models import Fit
    from calibration.selection import labels_since

    (response,) = _add(study, "cand1", "1.0.3", 1)
    dims = {d.key: d for d in study.dimensions.all()}
    fit = Fit.objects.create(
        study=study, status=Fit.Status.SUCCEEDED, started_at=timezone.now() - timedelta(minutes=1)
    )
    grades = [
        {"correctness": 1, "refusal": 0, "style": 5},
        {"correctness": 1, "refusal": 1, "style": 2},
        {"correctness": 0, "style": 3},
    ]
    for i, values in enumerate(grades):
        user = get_user_model().objects.create(username=f"g{i}")
        ann = Annotation.objects.create(response=response, annotator=user, study=study)
        for key, value in values.items():
            Label.objects.create(annotation=ann, dimension=dims[key], value=value)
    ((arm, region, cell, ys),) = labels_since(study=study, fit=fit)
    assert (arm, region, cell) == (response.arm_id, response.region_id, "1.0.3")
    # correctness 2 of 3 pass; refusal 1–1 is a tie (no y); style passes at 4: 1 of 3.
    assert ys == {dims["correctness"].pk: 1, dims["style"].pk: 0}


def test_a_re_import_that_moves_responses_between_cells_updates_the_totals(db):
    from annotate.imports.importing import import_file
    from tests.annotate.imports.import_helpers import interaction, jsonl

    study = make_study(slug="reimport", candidates=2)
    first = {"correctness": 0, "refusal": 0, "style": 1}
    import_file(
        jsonl(interaction(1, scores=first), interaction(2, scores=first)),
        study=study,
        filename="a.jsonl",
    )
    assert sum(n for *_, n in available_counts(study=study)) == 6
    # Same ids, same texts, other judge scores: no new response, cells change in place.
    moved = {"correctness": 1, "refusal": 1, "style": 5}
    import_file(
        jsonl(interaction(1, scores=moved), interaction(2, scores=first)),
        study=study,
        filename="b.jsonl",
    )
    cells = dict(Response.objects.filter(study=study).values_list("pk", "cell"))
    want: dict[str, int] = {}
    for cell in cells.values():
        want[cell] = want.get(cell, 0) + 1
    assert len(want) == 2, "the re-import should have moved three responses"
    assert {c: n for _, _, c, n in _grouped(available_counts(study=study))} == want


def _grouped(rows):
    totals: dict[str, int] = {}
    for _, _, c, n in rows:
        totals[c] = totals.get(c, 0) + n
    return [(None, None, c, n) for c, n in totals.items()]


class _Rank:
    """An rng whose next uniform integer is the rank asked for."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def integers(self, low: int, high: int | None = None) -> int:
        return self.rank


@pytest.mark.parametrize("every", [1, 2, 3, 1024])
def test_a_fenced_draw_reaches_each_response_of_a_cell_at_exactly_one_rank(
    study, monkeypatch, every
):
    from annotate.grading import queue
    from calibration import totals

    monkeypatch.setattr(totals, "FENCE_EVERY", every)
    cell = _add(study, "cand1", "1.0.3", 7)
    _add(study, "inc", "1.0.3", 4)  # another cell, interleaved ids: not reached
    cell += _add(study, "cand1", "1.0.3", 4)
    refresh_cell_totals(study=study)
    forget_cell_totals()
    key = (cell[0].arm_id, cell[0].region_id, "1.0.3")
    fences = {(r[0], r[1], r[2]): r[7] for r in totals.stored_totals(study)}
    every_stored, ids = fences[key]
    ranked = sorted(r.pk for r in cell)
    assert every_stored == every and list(ids) == ranked[::every]
    pick = queue._Pick(*key, "active", 0.1, None, None, total=len(cell), fences=(every, ids))
    drawn = [
        queue._offset_candidate(study=study, pick=pick, total=len(cell), rng=_Rank(k))
        for k in range(len(cell))
    ]
    assert drawn == ranked  # rank k gives the k-th id: a uniform rank, a uniform response
