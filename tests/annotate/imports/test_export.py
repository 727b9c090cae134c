"""Exporting human labels: one row per live label, as CSV or JSONL, to admins and leads."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotate.imports.exporting import LABEL_COLUMNS, label_rows, write_labels
from annotate.imports.importing import import_file
from annotate.models import Annotation, Dimension, Label, Response
from tests.annotate.imports.import_helpers import interaction, jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def graded(study, annotator):
    """Two annotations by charlie: one graded on every dimension, one undone."""
    import_file(jsonl(interaction(1), interaction(2)), study=study, filename="a.jsonl")
    dims = {d.key: d for d in Dimension.objects.filter(study=study)}
    first = Response.objects.get(prompt__external_id="q-000001", arm__key="cand1")
    annotation = Annotation.objects.create(
        response=first,
        annotator=annotator,
        study=study,
        flagged=True,
        flag_reason="odd tone",
        created_at=datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
    )
    for key, value in (("correctness", 1), ("refusal", 0), ("style", 3)):
        Label.objects.create(annotation=annotation, dimension=dims[key], value=value)
    undone = Annotation.objects.create(
        response=Response.objects.get(prompt__external_id="q-000002", arm__key="inc"),
        annotator=annotator,
        study=study,
        undone_at=datetime(2026, 11, 29, 9, 5, tzinfo=UTC),
    )
    Label.objects.create(annotation=undone, dimension=dims["correctness"], value=0)
    return study


def test_one_row_per_live_label_with_its_pass_verdict(graded):
    rows = list(label_rows(study=graded))
    assert [(r["dimension"], r["value"], r["passed"]) for r in rows] == [
        ("correctness", 1, True),
        ("refusal", 0, False),
        ("style", 3, False),  # style passes at 4 and above
    ]
    assert rows[0] == {
        "study": "support-bot",
        "prompt_id": "q-000001",
        "region": "eu",
        "arm": "cand1",
        "annotator": "charlie",
        "dimension": "correctness",
        "value": 1,
        "passed": True,
        "status": "graded",
        "flagged": True,
        "created_at": "2026-11-29T09:00:00+00:00",
    }


def test_csv_export_has_a_header_and_one_line_per_label(graded):
    out = io.StringIO()
    assert write_labels(study=graded, fmt="csv", out=out) == 3
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert rows[1] == [
        "support-bot", "q-000001", "eu", "cand1", "charlie", "correctness", "1", "1",
        "graded", "1", "2026-11-29T09:00:00+00:00",
    ]  # fmt: skip
    assert len(rows) == 4


def test_jsonl_export_has_one_object_per_line(graded):
    out = io.StringIO()
    assert write_labels(study=graded, fmt="jsonl", out=out) == 3
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["dimension"] for x in lines] == ["correctness", "refusal", "style"]
    assert lines[2]["passed"] is False and lines[0]["flagged"] is True


def test_an_empty_study_exports_a_header_only(study):
    out = io.StringIO()
    assert write_labels(study=study, fmt="csv", out=out) == 0
    assert out.getvalue().strip() == ",".join(LABEL_COLUMNS)


def test_exportlabels_writes_to_stdout_or_a_file(graded, tmp_path):
    out = StringIO()
    call_command("exportlabels", "--study", graded.slug, "--format", "jsonl", stdout=out)
    assert len(out.getvalue().splitlines()) == 3
    target = tmp_path / "labels.csv"
    err = StringIO()
    call_command("exportlabels", "--study", graded.slug, "-o", str(target), stderr=err)
    assert target.read_text().count("\n") == 4
    assert "3 labels written" in err.getvalue()


@pytest.mark.parametrize(
    ("path", "query", "content_type", "lines"),
    [
        ("annotate-api-labels", "", "text/csv", 4),
        ("annotate-api-labels", "?format=jsonl", "application/x-ndjson", 3),
        ("annotate-api-labels-as", "", "text/csv", 4),
    ],
)
def test_admins_download_the_labels_streamed(graded, admin_user, path, query, content_type, lines):
    kwargs = {"slug": graded.slug}
    if path == "annotate-api-labels-as":
        kwargs["format"] = "csv"
    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.get(reverse(path, kwargs=kwargs) + query)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith(content_type)
    body = b"".join(response.streaming_content).decode()
    assert len(body.splitlines()) == lines
    assert "attachment" in response["Content-Disposition"]


def test_labels_jsonl_suffix_gives_jsonl(graded, lead):
    client = APIClient()
    client.force_authenticate(lead)
    response = client.get(f"/api/studies/{graded.slug}/labels.jsonl")
    assert response.status_code == 200
    first = json.loads(b"".join(response.streaming_content).decode().splitlines()[0])
    assert first["annotator"] == "charlie"


@pytest.mark.parametrize(("persona", "status"), [("annotator", 403), ("outsider", 404)])
def test_annotators_and_outsiders_cannot_export(request, graded, persona, status):
    client = APIClient()
    client.force_authenticate(request.getfixturevalue(persona))
    response = client.get(reverse("annotate-api-labels", kwargs={"slug": graded.slug}))
    assert response.status_code == status


def test_an_unknown_export_format_is_not_found(graded, admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.get(f"/api/studies/{graded.slug}/labels.xlsx")
    assert response.status_code == 404
