"""The OpenAPI schema says what the API really answers (mismatches found by test_api_fuzz)."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operation(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return schema["paths"][path][method]


@pytest.mark.django_db
def test_a_fit_request_is_documented_as_the_202_it_answers(schema, study, lead, client):
    responses = operation(schema, "/api/studies/{slug}/fits/", "post")["responses"]
    assert "202" in responses and "201" not in responses
    client.force_login(lead)
    assert client.post(f"/api/studies/{study.slug}/fits/").status_code == 202


def test_every_operation_documents_its_refusals(schema):
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            documented = set(op["responses"])
            where = f"{method.upper()} {path}"
            assert {"403", "404", "503"} <= documented, where
            if "requestBody" in op:
                assert {"400", "415"} <= documented, where
    detail = operation(schema, "/api/studies/{slug}/posterior/", "get")["responses"]["403"]
    assert detail["content"]["application/json"]["schema"]["required"] == ["detail"]


@pytest.mark.django_db
def test_a_refusal_has_the_documented_shape(study, annotator, client):
    client.force_login(annotator)
    response = client.get(f"/api/studies/{study.slug}/posterior/")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}


@pytest.mark.django_db
def test_an_api_url_that_matches_no_pattern_answers_json(annotator, client):
    client.force_login(annotator)
    # "abc" is not an assignment id: the URL resolver refuses it before any view runs.
    response = client.post("/api/assignments/abc/submit/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_a_refused_label_export_is_labelled_json(study, annotator, client):
    client.force_login(annotator)
    for url in (f"/api/studies/{study.slug}/labels.csv", f"/api/studies/{study.slug}/labels/"):
        response = client.get(url)
        assert response.status_code == 403
        assert response["Content-Type"] == "application/json"
        assert "detail" in response.json()


@pytest.mark.django_db
def test_an_import_form_error_matches_the_documented_400(schema, study, admin_user, client):
    documented = operation(schema, "/api/studies/{slug}/imports/", "post")["responses"]["400"]
    shapes = documented["content"]["application/json"]["schema"]["oneOf"]
    assert {s["type"] for s in shapes} == {"array", "object"}  # problems, or form errors
    client.force_login(admin_user)
    response = client.post(f"/api/studies/{study.slug}/imports/", {})
    assert response.status_code == 400
    assert response.json() == {"file": ["No file was submitted."]}


def test_the_queue_operations_link_next_submit_undo_submit(schema):
    """Links let a client (and the stateful fuzzing) carry ids from one answer to the next."""
    links = {
        op["operationId"]: {
            status: {
                name: (link["operationId"], link["parameters"]) for name, link in r["links"].items()
            }
            for status, r in op["responses"].items()
            if "links" in r
        }
        for operations in schema["paths"].values()
        for op in operations.values()
    }
    from_item = ("annotate_submit", {"assignment_id": "$response.body#/assignment_id"})
    assert links["annotate_next_item"]["200"]["SubmitThisItem"] == from_item
    assert links["annotate_submit"]["201"]["UndoThisAnswer"] == (
        "annotate_undo",
        {"annotation_id": "$response.body#/id"},
    )
    assert links["annotate_undo"]["200"]["SubmitThisItem"] == from_item
