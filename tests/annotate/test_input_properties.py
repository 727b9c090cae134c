"""Property-based (Hypothesis): hostile numbers, ids and lines get a refusal naming the field.

Every reader of client input that takes numbers or ids — the import parser (JSONL and CSV),
the queue API's serializers, the setup forms, the number helpers and the grading page's
posts — is fed generated input, valid and not: nothing may raise (which would be a 500 or
an "internal error" job), and every refusal must name a field. Each test counts the inputs
it ran and asserts the count; together they run more than 10,000 (``TOTAL_MIN``). Fixed
seeds (``derandomize``), no example database: CI runs the same inputs every time.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django import forms as django_forms
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotate.grading import queue
from annotate.grading.serializers import SkipSerializer, SubmitSerializer
from annotate.imports import importing, parsing
from annotate.imports.schema import Schema
from annotate.models import Study
from annotate.numbers import (
    DB_ID_MAX,
    DB_INT_MAX,
    parse_decimal,
    parse_finite_floats,
    parse_id,
    parse_int,
)
from annotate.setup.forms import DimensionForm, RegionFormSet, StudyForm
from tests.annotate.grading.queue_helpers import GOOD_LABELS, add_responses, fake_selection_rule
from tests.annotate.imports.import_helpers import ARMS, interaction

pytestmark = pytest.mark.django_db

RUN = Counter()  # inputs run, per test
TOTAL_MIN = 10_000


def fuzz(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# --------------------------------------------------------------------------- strategies

# Text a person or a script could type into a number field.
NUMBER_TEXT = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=1, max_value=20).map(lambda e: f"9e{'9' * e}"),
    st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n),
    st.sampled_from(["²", "٣", "７", "1_000", " 12 ", "0x1f", "1e", "-", "+", "", "nan", "inf"]),
    st.text(max_size=12),
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# Raw JSON text to splice into a line: values, and what json.dumps would not write.
RAW_JSON = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.integers(min_value=4200, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=60, max_value=200).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(["NaN", "-Infinity", "1e400", "-1e999", '"\\ud800"', "tru", "{", "]", '"']),
)

PATHS = [
    (),
    ("id",),
    ("region",),
    ("prompt",),
    ("judge",),
    ("metadata",),
    ("responses",),
    *[("responses", arm) for arm in ARMS],
    *[("responses", arm, field) for arm in ARMS for field in ("text", "scores", "metadata")],
    *[
        ("responses", arm, "scores", dim)
        for arm in ARMS
        for dim in ("correctness", "refusal", "style")
    ],
    ("responses", "cand1", "scores", "style", "value"),
    ("responses", "cand1", "scores", "style", "judge"),
    ("extra",),
]
MARK = "@@SPLICE@@"


def spliced(path: tuple[str, ...], raw: str) -> bytes:
    """interaction(1) as JSON with ``raw`` as the value at ``path``."""
    line: Any = interaction(1)
    line["responses"]["cand1"]["scores"]["style"] = {"value": 3, "judge": "j"}
    if not path:
        return raw.encode()
    node = line
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = MARK
    return json.dumps(line).replace(json.dumps(MARK), raw).encode()


def related(field: str, path: tuple[str, ...]) -> bool:
    """The refusal names the spliced field, one inside it, or the object that holds it."""
    where = ".".join(path)
    return field.startswith(where) or where.startswith(field.split("[")[0])


# --------------------------------------------------------------------------- import parser


@pytest.fixture
def schema(study) -> Schema:
    return Schema.of(study)


def parse(parser: Any, data: bytes, schema: Schema) -> tuple[list, list]:
    sink = parsing.Problems("f", parsing.MAX_PROBLEMS)
    staged = list(parser(io.BytesIO(data), schema, sink))
    return staged, sink.items


def test_a_jsonl_line_with_any_value_spliced_anywhere_is_parsed_or_refused_by_field(schema):
    @fuzz(2000)
    @given(path=st.sampled_from(PATHS), raw=RAW_JSON)
    def check(path: tuple[str, ...], raw: str) -> None:
        RUN["jsonl"] += 1
        staged, problems = parse(parsing.parse_jsonl, spliced(path, raw) + b"\n", schema)
        assert len(staged) + len(problems) == 1
        for p in problems:
            assert p.line == 1 and p.field and p.message
            assert p.field in ("json", "encoding", "line") or related(p.field, path), (p, path)

    check()
    assert RUN["jsonl"] >= 2000


def test_any_bytes_on_a_jsonl_line_are_parsed_or_refused_by_field(schema):
    @fuzz(3000)
    @given(data=st.binary(max_size=300))
    def check(data: bytes) -> None:
        RUN["bytes"] += 1
        staged, problems = parse(parsing.parse_jsonl, data, schema)
        assert all(p.field and p.line >= 1 for p in problems)
        assert not staged or not problems

    check()
    assert RUN["bytes"] >= 3000


CSV_CELL = st.one_of(NUMBER_TEXT, st.text(max_size=10), st.sampled_from(['"', '""', "a\nb", ","]))


def test_a_csv_row_of_any_cells_is_parsed_or_refused_by_field(schema):
    header = ",".join(parsing.CSV_COLUMNS)

    @fuzz(1000)
    @given(cells=st.lists(CSV_CELL, min_size=1, max_size=9), keep=st.integers(0, 6))
    def check(cells: list[str], keep: int) -> None:
        RUN["csv"] += 1
        # Half the time a row that is right but for the generated cells from ``keep`` on.
        good = ["q-1", "eu", "Question?", "inc", "Answer.", "correctness", "1"]
        row = good[:keep] + cells if keep else cells
        text = header + "\n" + ",".join(_csv_quote(c) for c in row) + "\n"
        _, problems = parse(parsing.parse_csv, text.encode(), schema)
        assert all(p.field and p.message and p.line >= 1 for p in problems)

    check()
    assert RUN["csv"] >= 1000


def _csv_quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\n\r') else cell


def test_hostile_lines_through_import_file_are_refused_never_raised(study):
    @fuzz(100)
    @given(path=st.sampled_from(PATHS), raw=RAW_JSON)
    def check(path: tuple[str, ...], raw: str) -> None:
        RUN["import_file"] += 1
        try:
            importing.import_file(
                io.BytesIO(spliced(path, raw) + b"\n"), study=study, filename="x.jsonl"
            )
        except importing.ImportFailed as failed:
            assert all(p.field for p in failed.problems)

    check()
    assert RUN["import_file"] >= 100


# --------------------------------------------------------------------------- number helpers


def test_typed_integers_and_ids_are_read_within_bounds_or_not_at_all():
    @fuzz(2500)
    @given(raw=NUMBER_TEXT)
    def check(raw: str) -> None:
        RUN["ints"] += 1
        value = parse_int(raw)
        assert value is None or -DB_INT_MAX <= value <= DB_INT_MAX
        pk = parse_id(raw)
        assert pk is None or 1 <= pk <= DB_ID_MAX
        if pk is not None:
            assert raw.strip().isascii() and int(raw) == pk

    check()
    assert RUN["ints"] >= 2500


def test_typed_decimals_and_float_lists_are_finite_or_refused():
    @fuzz(1000)
    @given(raw=NUMBER_TEXT, more=st.lists(NUMBER_TEXT, max_size=3))
    def check(raw: str, more: list[str]) -> None:
        RUN["floats"] += 1
        value = parse_decimal(raw, max_abs=Decimal(1000))
        assert value is None or (value.is_finite() and abs(value) <= 1000)
        if value is not None:
            assert value + Decimal(1) - value >= 0  # arithmetic is safe
        try:
            floats = parse_finite_floats(",".join([raw, *more]))
        except django_forms.ValidationError as e:
            assert "number" in e.messages[0]
        else:
            assert all(math.isfinite(f) for f in floats)

    check()
    assert RUN["floats"] >= 1000


# --------------------------------------------------------------------------- serializers

SUBMIT_KEYS = ["client_key", "labels", "comment", "flagged", "flag_reason", "time_spent_ms"]


def test_the_submit_and_skip_serializers_refuse_any_body_by_field():
    body = st.dictionaries(
        st.sampled_from([*SUBMIT_KEYS, "reason", "x"]),
        st.one_of(
            JSON_VALUES,
            st.uuids().map(str),
            st.dictionaries(st.sampled_from(list(GOOD_LABELS) + ["x"]), JSON_VALUES, max_size=4),
            st.integers(min_value=-(2**70), max_value=2**70),
        ),
        max_size=7,
    )

    @fuzz(600)
    @given(data=body)
    def check(data: dict[str, Any]) -> None:
        RUN["serializers"] += 1
        submit = SubmitSerializer(data=data)
        if submit.is_valid():
            assert 0 <= submit.validated_data["time_spent_ms"] <= DB_INT_MAX
            assert all(isinstance(v, int) for v in submit.validated_data["labels"].values())
        else:
            assert set(submit.errors) <= {*SUBMIT_KEYS, "non_field_errors"}
        skip = SkipSerializer(data=data)
        if not skip.is_valid():
            assert set(skip.errors) <= {"client_key", "reason", "non_field_errors"}

    check()
    assert RUN["serializers"] >= 600


# --------------------------------------------------------------------------- forms


def _assert_named(form: django_forms.BaseForm) -> None:
    assert set(form.errors) <= {*form.fields, "__all__"}, form.errors


def test_study_settings_with_any_numbers_are_saved_or_refused_by_field(study):
    numbers = ["confidence", "label_budget", "exploration_share", "overlap_share"]
    numbers += ["lease_seconds", "refit_every"]

    @fuzz(400)
    @given(values=st.fixed_dictionaries(dict.fromkeys(numbers, NUMBER_TEXT)))
    def check(values: dict[str, str]) -> None:
        RUN["study form"] += 1
        form = StudyForm({"name": "S", "slug": "s-x", "description": "", **values})
        if form.is_valid():
            data = form.cleaned_data
            assert all(math.isfinite(data[k]) for k in numbers)
            assert data["label_budget"] <= 2**63 - 1
        else:
            _assert_named(form)

    check()
    assert RUN["study form"] >= 400


def test_a_dimension_with_any_numbers_is_saved_or_refused_by_field(study):
    d = study.dimensions.get(key="style")
    numbers = ["scale_max", "pass_threshold", "margin", "judge_min", "judge_max"]
    numbers += ["judge_bins", "position"]

    @fuzz(300)
    @given(
        values=st.fixed_dictionaries(dict.fromkeys(numbers, NUMBER_TEXT)),
        cuts=st.lists(NUMBER_TEXT, max_size=4).map(", ".join),
        kind=st.sampled_from(["continuous", "likert", "binary"]),
    )
    def check(values: dict[str, str], cuts: str, kind: str) -> None:
        RUN["dimension form"] += 1
        data = {"key": d.key, "title": d.title, "rubric": "", "scale": "ordinal"}
        data |= {"judge_score_type": kind, "judge_cuts_text": cuts, **values}
        form = DimensionForm(
            data, instance=Study.objects.get(pk=study.pk).dimensions.get(pk=d.pk), study=study
        )
        if form.is_valid():
            assert all(math.isfinite(c) for c in form.cleaned_data.get("judge_cuts") or [])
        else:
            _assert_named(form)

    check()
    assert RUN["dimension form"] >= 300


def test_region_shares_of_any_text_are_summed_or_refused_by_field(study):
    eu, us = study.regions.order_by("position")

    @fuzz(300)
    @given(a=NUMBER_TEXT, b=NUMBER_TEXT)
    def check(a: str, b: str) -> None:
        RUN["region formset"] += 1
        data = {
            "form-TOTAL_FORMS": "2",
            "form-INITIAL_FORMS": "2",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
        }
        for i, (region, share) in enumerate(((eu, a), (us, b))):
            data |= {
                f"form-{i}-id": str(region.pk),
                f"form-{i}-key": region.key,
                f"form-{i}-name": region.name,
                f"form-{i}-traffic_share": share,
                f"form-{i}-position": str(i),
            }
        formset = RegionFormSet(data, study=study)
        total = formset.share_total()
        assert total is None or total.is_finite()
        if not formset.is_valid():
            for form in formset.forms:
                _assert_named(form)

    check()
    assert RUN["region formset"] >= 300


# --------------------------------------------------------------------------- pages and API


@pytest.fixture
def leased(study, annotator, monkeypatch):
    fake_selection_rule(monkeypatch)
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_responses(study, 2)
    return queue.next_item(study=study, annotator=annotator)


def test_the_grading_page_answers_any_posted_numbers_without_a_server_error(
    client, study, annotator, leased
):
    client.force_login(annotator)
    submit = reverse("annotate-grade-submit", args=[study.slug, leased.pk])
    undo = reverse("annotate-grade-undo", args=[study.slug])

    @fuzz(150)
    @given(
        labels=st.fixed_dictionaries({f"label-{k}": NUMBER_TEXT for k in GOOD_LABELS}),
        spent=NUMBER_TEXT,
        annotation_id=NUMBER_TEXT,
    )
    def check(labels: dict[str, str], spent: str, annotation_id: str) -> None:
        RUN["page"] += 1
        # A fresh client key each time: a valid grade is stored, then undone below.
        posted = {"client_key": str(uuid.uuid4()), "time_spent_ms": spent, **labels}
        assert client.post(submit, posted).status_code < 500
        assert client.post(undo, {"annotation_id": annotation_id}).status_code < 500

    check()
    assert RUN["page"] >= 150


def test_the_queue_api_answers_any_submit_body_by_field(study, annotator, leased):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(annotator)
    url = reverse("annotate-api-submit", kwargs={"assignment_id": leased.pk})

    @fuzz(150)
    @given(
        labels=st.dictionaries(st.sampled_from(list(GOOD_LABELS)), JSON_VALUES, max_size=3),
        spent=st.one_of(st.integers(min_value=-(2**80), max_value=2**80), JSON_VALUES),
    )
    def check(labels: dict[str, Any], spent: Any) -> None:
        RUN["api"] += 1
        body = {"client_key": str(uuid.uuid4()), "labels": labels, "time_spent_ms": spent}
        # Sent as text: json.dumps writes NaN and Infinity, which DRF's encoder refuses.
        res = api.post(url, json.dumps(body), content_type="application/json")
        assert res.status_code < 500
        if res.status_code == 400 and "detail" in res.json():
            # NaN and Infinity are not JSON: the body as a whole is refused.
            assert "JSON parse error" in res.json()["detail"]
        elif res.status_code == 400:
            assert set(res.json()) <= {*SUBMIT_KEYS, *(f"labels.{k}" for k in GOOD_LABELS)}

    check()
    assert RUN["api"] >= 150


def test_more_than_ten_thousand_inputs_were_generated():
    """Runs last in this file (pytest keeps file order): the sum of the counts above."""
    if len(RUN) < 12:
        pytest.skip("only part of this file ran")
    assert sum(RUN.values()) >= TOTAL_MIN, RUN
