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
