"""The import service behind its three doors: manage.py, the REST API, the upload page."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from annotate.models import Prompt, Response
from tests.annotate.imports.import_helpers import csv_rows, interaction, jsonl

pytestmark = pytest.mark.django_db


def upload(name: str, *lines) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, jsonl(*lines).getvalue(), content_type="application/jsonl")


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --------------------------------------------------------------------------- manage.py


def test_importstudy_prints_the_report(study, tmp_path):
    path = tmp_path / "support.jsonl"
    path.write_bytes(jsonl(interaction(1), interaction(2)).getvalue())
    out = StringIO()
    call_command("importstudy", str(path), "--study", study.slug, stdout=out)
    assert "support.jsonl (jsonl) into study support-bot: 2 interactions" in out.getvalue()
    assert "responses          6 created" in out.getvalue()
    assert Response.objects.filter(study=study).count() == 6


def test_importstudy_prints_the_problems_to_stderr_and_exits_1(study, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(csv_rows(1).replace("region", "segment", 1))
    err = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("importstudy", str(path), "--study", study.slug, stderr=err)
    assert info.value.returncode == 1
    assert err.getvalue().startswith("bad.csv:1: header: the header is")
    assert "nothing was written" in str(info.value)
    assert not Prompt.objects.exists()


def test_importstudy_names_an_unknown_study(study, tmp_path):
    with pytest.raises(CommandError, match="no study with slug 'nope'"):
        call_command("importstudy", str(tmp_path / "x.jsonl"), "--study", "nope")


# --------------------------------------------------------------------------- API


def test_an_admin_imports_through_the_api(study, admin_user):
    url = reverse("annotate-api-import", kwargs={"slug": study.slug})
    response = api_as(admin_user).post(
        url, {"file": upload("a.jsonl", interaction(1))}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json()["responses"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert response.json()["cuts_fixed"]["style"] == [1.5, 2.5, 3.5, 4.5]


def test_the_api_answers_400_with_the_problems(study, admin_user):
    url = reverse("annotate-api-import", kwargs={"slug": study.slug})
    response = api_as(admin_user).post(
        url,
        {"file": upload("a.jsonl", interaction(1), interaction(2, region="mars"))},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json() == [
        {
            "file": "a.jsonl",
            "line": 2,
            "field": "region",
            "message": "unknown region 'mars'",
            "expected": "one of eu, us",
        }
    ]
    assert not Prompt.objects.exists()


def test_the_api_takes_an_explicit_format(study, admin_user):
    url = reverse("annotate-api-import", kwargs={"slug": study.slug})
    file = SimpleUploadedFile("export.txt", csv_rows(1).encode(), content_type="text/plain")
    response = api_as(admin_user).post(url, {"file": file, "format": "csv"}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["format"] == "csv"


def test_the_api_asks_for_a_file(study, admin_user):
    url = reverse("annotate-api-import", kwargs={"slug": study.slug})
    response = api_as(admin_user).post(url, {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()


@pytest.mark.parametrize(
    ("persona", "status"), [("lead", 403), ("annotator", 403), ("outsider", 404)]
)
def test_only_admins_may_import(request, study, persona, status):
    user = request.getfixturevalue(persona)
    url = reverse("annotate-api-import", kwargs={"slug": study.slug})
    response = api_as(user).post(
        url, {"file": upload("a.jsonl", interaction(1))}, format="multipart"
    )
    assert response.status_code == status
    assert not Prompt.objects.exists()


def test_anonymous_users_cannot_import(study):
    url = reverse("annotate-api-import", kwargs={"slug": study.slug})
    response = APIClient().post(
        url, {"file": upload("a.jsonl", interaction(1))}, format="multipart"
    )
    assert response.status_code in (401, 403)


# --------------------------------------------------------------------------- upload page


def test_the_upload_page_shows_what_the_study_expects(client, study, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("annotate-upload", kwargs={"slug": study.slug}))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'enctype="multipart/form-data"' in body
    assert "<code>cand2</code>" in body and "<code>style</code>" in body


def test_the_upload_page_imports_through_a_job_and_shows_the_report(
    client, study, admin_user, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):  # the task runs on commit
        response = client.post(
            reverse("annotate-upload", kwargs={"slug": study.slug}),
            {"file": upload("a.jsonl", interaction(1), interaction(2)), "format": ""},
        )
    response = client.get(response["Location"])
    assert response.status_code == 200
    assert response.context["job"].responses_created == 6
    assert 'id="import-counts"' in response.content.decode()


def test_the_upload_page_lists_the_problems_with_their_lines(
    client, study, admin_user, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("annotate-upload", kwargs={"slug": study.slug}),
            {"file": upload("a.jsonl", interaction(1), interaction(2, region="mars"))},
        )
    response = client.get(response["Location"])
    assert response.status_code == 200
    body = response.content.decode()
    assert "a.jsonl:2" in body and "unknown region &#x27;mars&#x27;" in body
    assert not Prompt.objects.exists()


@pytest.mark.parametrize(
    ("persona", "status"), [("lead", 403), ("annotator", 403), ("outsider", 404)]
)
def test_only_admins_see_the_upload_page(request, client, study, persona, status):
    client.force_login(request.getfixturevalue(persona))
    response = client.get(reverse("annotate-upload", kwargs={"slug": study.slug}))
    assert response.status_code == status


def test_the_upload_page_sends_anonymous_users_to_log_in(client, study):
    response = client.get(reverse("annotate-upload", kwargs={"slug": study.slug}))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
