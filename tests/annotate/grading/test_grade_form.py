"""GradeForm: one reader of the grading form, for one item and for a side-by-side pair."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from annotate.grading.queue_pairs import LEFT, RIGHT, SIDES
from annotate.grading.views import GradeForm

pytestmark = pytest.mark.django_db

GRADES = {"correctness": "1", "refusal": "0", "style": "4"}


def post(data: dict[str, str]):
    return RequestFactory().post("/", data)


def test_an_item_form_reads_the_grades_the_flag_and_the_comment(study):
    data = {f"label-{k}": v for k, v in GRADES.items()}
    form = GradeForm(post({**data, "flag_choice": "broken", "comment": " fine "}), study)
    assert form.errors == {}
    assert form.labels == {"correctness": 1, "refusal": 0, "style": 4}
    assert form.flag_reason == "Broken or truncated"
    assert form.comment == "fine"
    assert form.values["labels"] == form.labels


def test_an_item_form_says_what_is_missing_by_dimension(study):
    form = GradeForm(post({"label-correctness": "7", "flag_choice": "other"}), study)
    assert form.errors == {
        "correctness": "7 is not a grade for Correctness.",
        "refusal": "Pick a grade for Refusal behaviour.",
        "style": "Pick a grade for Style adherence.",
        "flag": "Say why you flag it.",
    }


def test_a_correction_form_does_not_read_the_flag(study):
    form = GradeForm(post({"label-correctness": "1", "flag_choice": "other"}), study, flag=False)
    assert "flag" not in form.errors
    assert set(form.values) == {"labels", "comment"}


def test_a_pair_form_names_its_fields_by_side(study):
    data = {f"label-{side}-{k}": v for side in ("left", "right") for k, v in GRADES.items()}
    del data["label-right-style"]
    form = GradeForm(post(data), study, sides=SIDES)
    assert form.labels[LEFT] == {"correctness": 1, "refusal": 0, "style": 4}
    assert form.labels[RIGHT] == {"correctness": 1, "refusal": 0}
    assert form.errors == {"right-style": "Pick a grade for Style adherence of response B."}
    assert form.values["labels"]["left-style"] == 4
