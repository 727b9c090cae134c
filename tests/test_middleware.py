"""Project middleware: a database that cannot be reached gives a clear 503, not a 500 page."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError

from calibration import services


def _database_gone(*args, **kwargs):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed')


@pytest.mark.django_db
@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_api_answers_503_json_when_the_database_is_unreachable(
    error, study, lead, client, monkeypatch
):
    def gone(*args, **kwargs):
        raise error("connection already closed")

    monkeypatch.setattr(services, "latest_fit", gone)
    client.force_login(lead)
    response = client.get(f"/api/studies/{study.slug}/posterior/")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "database_unavailable" and "unavailable" in body["detail"]


@pytest.mark.django_db
def test_a_page_answers_503_text_when_the_database_is_unreachable(study, lead, client, monkeypatch):
    monkeypatch.setattr(services, "latest_fit", _database_gone)
    client.force_login(lead)
    response = client.get(f"/studies/{study.slug}/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")
    assert b"database is unavailable" in response.content


@pytest.mark.django_db
def test_other_errors_are_left_to_django(study, lead, client, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(services, "latest_fit", broken)
    client.raise_request_exception = False
    client.force_login(lead)
    assert client.get(f"/api/studies/{study.slug}/posterior/").status_code == 500
