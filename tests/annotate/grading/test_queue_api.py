"""The queue's HTTP API: statuses, the keys that matter, and blindness of the payload."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotate.grading import queue
from annotate.models import Annotation, Dimension, Study
from tests.annotate.grading.queue_helpers import (
    GOOD_LABELS,
    add_annotator,
    add_responses,
    fake_selection_rule,
    key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def uniform_picks(monkeypatch):
    fake_selection_rule(monkeypatch)


@pytest.fixture
def solo(study):
    """No overlap picks, so each test sees plain leases."""
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    return study


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def next_url(study) -> str:
    return reverse("annotate-api-next", kwargs={"slug": study.slug})


def submit_url(assignment_id: int) -> str:
    return reverse("annotate-api-submit", kwargs={"assignment_id": assignment_id})


def skip_url(assignment_id: int) -> str:
    return reverse("annotate-api-skip", kwargs={"assignment_id": assignment_id})


def undo_url(annotation_id: int) -> str:
    return reverse("annotate-api-undo", kwargs={"annotation_id": annotation_id})


def test_next_gives_the_annotator_an_item(solo, annotator):
    add_responses(solo, 2)
    res = client_for(annotator).post(next_url(solo))
    assert res.status_code == 200
    assert res.json()["assignment_id"] > 0
    assert [d["key"] for d in res.json()["dimensions"]] == ["correctness", "refusal", "style"]


def test_the_annotator_payload_never_reveals_the_model(solo, annotator):
    (response,) = add_responses(solo, 1)
    for dimension in Dimension.objects.filter(study=solo):
        response.set_score(dimension, 0.8137, "gpt-judge-9")
    response.save()
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    assert set(item) == {
        "assignment_id",
        "expires_at",
        "region",
        "prompt",
        "response",
        "dimensions",
    }
    undo_item = client.post(
        undo_url(
            client.post(
                submit_url(item["assignment_id"]),
                {"client_key": str(key()), "labels": GOOD_LABELS},
                format="json",
            ).json()["id"]
        )
    ).json()
    for payload in (item, undo_item):
        text = json.dumps(payload)
        for arm in solo.arms.all():
            assert arm.model_name not in text
            assert f'"{arm.key}"' not in text
        for leak in ("arm", "model", "judge", "score", "metadata", "0.8137", "secret", "policy"):
            assert leak not in text, leak


def test_outsiders_get_404_and_other_roles_403(solo, lead, admin_user, outsider):
    add_responses(solo, 1)
    assert client_for(outsider).post(next_url(solo)).status_code == 404
    assert client_for(lead).post(next_url(solo)).status_code == 403
    assert client_for(admin_user).post(next_url(solo)).status_code == 403
    assert APIClient().post(next_url(solo)).status_code in {401, 403}


def test_a_closed_queue_answers_409_with_its_reason(solo, annotator):
    add_responses(solo, 1)
    Study.objects.filter(pk=solo.pk).update(status=Study.Status.DECIDED)
    res = client_for(annotator).post(next_url(solo))
    assert res.status_code == 409
    assert res.json()["code"] == "queue_closed"
    assert "not active" in res.json()["reason"]


def test_a_spent_budget_answers_409(solo, annotator):
    Study.objects.filter(pk=solo.pk).update(label_budget=1)
    add_responses(solo, 3)
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    client.post(
        submit_url(item["assignment_id"]),
        {"client_key": str(key()), "labels": GOOD_LABELS},
        format="json",
    )
    res = client.post(next_url(solo))
    assert res.status_code == 409
    assert res.json()["reason"] == queue.REASON_BUDGET


def test_submit_answers_201_then_200_on_a_replay(solo, annotator):
    add_responses(solo, 2)
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    body = {
        "client_key": str(key()),
        "labels": GOOD_LABELS,
        "comment": "ok",
        "flagged": True,
        "flag_reason": "contains an email address",
        "time_spent_ms": 5300,
    }
    first = client.post(submit_url(item["assignment_id"]), body, format="json")
    again = client.post(submit_url(item["assignment_id"]), body, format="json")
    assert first.status_code == 201
    assert first.json()["replayed"] is False
    assert first.json()["labels"] == GOOD_LABELS
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["id"] == first.json()["id"]
    assert Annotation.objects.filter(annotator=annotator).count() == 1
    stored = Annotation.objects.get()
    assert stored.flagged and stored.time_spent_ms == 5300 and stored.comment == "ok"


def test_submit_refuses_labels_off_the_scale_naming_the_field(solo, annotator):
    add_responses(solo, 1)
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    res = client.post(
        submit_url(item["assignment_id"]),
        {"client_key": str(key()), "labels": {**GOOD_LABELS, "style": 9}},
        format="json",
    )
    assert res.status_code == 400
    assert "labels.style" in res.json()
    res = client.post(submit_url(item["assignment_id"]), {"labels": GOOD_LABELS}, format="json")
    assert res.status_code == 400
    assert "client_key" in res.json()


def test_someone_elses_assignment_is_not_found(solo, annotator):
    add_responses(solo, 1)
    item = client_for(annotator).post(next_url(solo)).json()
    other = add_annotator(solo, "dora")
    res = client_for(other).post(
        submit_url(item["assignment_id"]),
        {"client_key": str(key()), "labels": GOOD_LABELS},
        format="json",
    )
    assert res.status_code == 404


def test_a_late_grade_after_someone_else_graded_answers_409(solo, annotator):
    add_responses(solo, 1)
    item = client_for(annotator).post(next_url(solo)).json()
    # The lease runs out; someone else takes the response and grades it.
    leased = solo.assignments.get().leased_at
    solo.assignments.update(
        leased_at=leased.replace(year=2000), expires_at=leased.replace(year=2001)
    )
    other = add_annotator(solo, "dora")
    theirs = client_for(other).post(next_url(solo)).json()
    client_for(other).post(
        submit_url(theirs["assignment_id"]),
        {"client_key": str(key()), "labels": GOOD_LABELS},
        format="json",
    )
    res = client_for(annotator).post(
        submit_url(item["assignment_id"]),
        {"client_key": str(key()), "labels": GOOD_LABELS},
        format="json",
    )
    assert res.status_code == 409
    assert res.json()["code"] == "lease_expired"


def test_skip_needs_a_reason_and_records_it(solo, annotator):
    add_responses(solo, 1)
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    assert client.post(skip_url(item["assignment_id"]), {"client_key": str(key())}).status_code == (
        400
    )
    res = client.post(
        skip_url(item["assignment_id"]), {"client_key": str(key()), "reason": "not English"}
    )
    assert res.status_code == 201
    assert res.json()["status"] == "skipped"
    assert res.json()["skip_reason"] == "not English"
    other = add_annotator(solo, "dora")
    assert client_for(other).post(next_url(solo)).status_code == 200


def test_undo_gives_the_same_response_back_then_refuses_a_second_time(solo, annotator):
    add_responses(solo, 2)
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    done = client.post(
        submit_url(item["assignment_id"]),
        {"client_key": str(key()), "labels": GOOD_LABELS},
        format="json",
    ).json()
    reopened = client.post(undo_url(done["id"]))
    assert reopened.status_code == 200
    assert reopened.json()["response"] == item["response"]
    assert reopened.json()["assignment_id"] != item["assignment_id"]
    again = client.post(undo_url(done["id"]))
    assert again.status_code == 409
    assert again.json()["code"] == "undo_refused"


def test_nobody_undoes_someone_elses_annotation(solo, annotator):
    add_responses(solo, 1)
    client = client_for(annotator)
    item = client.post(next_url(solo)).json()
    done = client.post(
        submit_url(item["assignment_id"]),
        {"client_key": str(key()), "labels": GOOD_LABELS},
        format="json",
    ).json()
    other = add_annotator(solo, "dora")
    assert client_for(other).post(undo_url(done["id"])).status_code == 403
    assert client_for(other).post(undo_url(999_999)).status_code == 404


def test_the_openapi_schema_describes_the_queue(admin_user, client):
    client.force_login(admin_user)
    res = client.get(reverse("api-schema"), {"format": "json"})
    assert res.status_code == 200
    paths = res.json()["paths"]
    assert "/api/studies/{slug}/next/" in paths
    submit = paths["/api/assignments/{assignment_id}/submit/"]["post"]
    assert {"200", "201", "409"} <= set(submit["responses"])
    assert "/api/assignments/{assignment_id}/skip/" in paths
    assert "/api/annotations/{annotation_id}/undo/" in paths
