"""Uploads imported by the worker: the ImportJob's life, its page and its API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from annotate.imports import importing
from annotate.imports import services as import_services
from annotate.imports.services import LOST_MESSAGE, STALE_AFTER, ProgressWriter, run_import_job
from annotate.models import ImportJob, Prompt, Response
from tests.annotate.imports.import_helpers import interaction, jsonl, snapshot
from tests.factories import UserFactory, make_study

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def upload(name: str, *lines) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, jsonl(*lines).getvalue(), content_type="application/jsonl")


def post_upload(client, study, file, **data):
    return client.post(
        reverse("annotate-upload", kwargs={"slug": study.slug}), {"file": file, **data}
    )


def job_url(job: ImportJob) -> str:
    return reverse("annotate-upload-job", kwargs={"slug": job.study.slug, "job_id": job.pk})


def api_job_url(job: ImportJob) -> str:
    return reverse("annotate-api-import-job", kwargs={"slug": job.study.slug, "job_id": job.pk})


def queued_job(study, user, *lines, name: str = "a.jsonl") -> ImportJob:
    """A job as the upload page leaves it before the worker has run it."""
    data = jsonl(*lines).getvalue()
    job = ImportJob(study=study, uploaded_by=user, filename=name, bytes_total=len(data))
    job.file.save(name, ContentFile(data), save=True)
    return job


# --------------------------------------------------------------------------- lifecycle


def test_an_upload_becomes_a_job_that_the_worker_imports(
    client, study, admin_user, media, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    file = upload("support.jsonl", interaction(1), interaction(2), interaction(3))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = post_upload(client, study, file)
    assert len(callbacks) == 1  # the task, enqueued once the job is committed
    job = ImportJob.objects.get()
    assert r.status_code == 302 and r["Location"] == job_url(job)
    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.filename, job.format, job.uploaded_by) == ("support.jsonl", "jsonl", admin_user)
    assert job.lines == 3
    assert job.bytes_total == file.size and job.bytes_processed == file.size
    assert (job.prompts_created, job.responses_created, job.scores_created) == (3, 9, 27)
    assert (job.prompts_updated, job.responses_updated, job.scores_updated) == (0, 0, 0)
    assert job.started_at <= job.finished_at
    assert Response.objects.filter(study=study).count() == 9
    # The file is gone once the job has ended.
    assert job.file.name == "" and stored_files(media) == []
    upload_event = AuditEvent.objects.get(action="data.upload")
    assert upload_event.actor == admin_user and upload_event.details["via"] == "upload"
    assert upload_event.details["bytes"] == file.size
    done = AuditEvent.objects.get(action="data.import")
    assert done.actor == admin_user and done.details["job"] == job.pk
    assert done.details["responses"]["created"] == 9


def test_a_job_waits_queued_with_its_file_until_the_worker_runs_it(study, admin_user, media):
    job = queued_job(study, admin_user, interaction(1))
    assert job.status == ImportJob.Status.QUEUED
    assert len(stored_files(media)) == 1
    assert not Prompt.objects.exists()

    assert run_import_job(job_id=job.pk).status == ImportJob.Status.SUCCEEDED
    # A second run of the task (a duplicate) finds nothing to do.
    assert run_import_job(job_id=job.pk) is None
    assert Prompt.objects.filter(study=study).count() == 1
    assert stored_files(media) == []


def test_the_worker_reports_progress_while_it_reads(study, admin_user, monkeypatch):
    monkeypatch.setattr(importing, "PROGRESS_EVERY", 2)
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        ProgressWriter, "__call__", lambda self, done, total: calls.append((done, total))
    )
    job = queued_job(study, admin_user, *(interaction(n) for n in range(5)))

    run_import_job(job_id=job.pk)

    assert [total for _, total in calls] == [job.bytes_total] * 3  # after 2 and 4, then the end
    assert calls[-1][0] == job.bytes_total


def test_a_failed_job_shows_the_problems_with_their_lines_and_imports_nothing(
    client, study, admin_user, media, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        post_upload(client, study, upload("a.jsonl", interaction(1)))
    before = snapshot(study)
    bad = upload("bad.jsonl", interaction(2), interaction(3, region="mars"), interaction(4))
    with django_capture_on_commit_callbacks(execute=True):
        r = post_upload(client, study, bad)
    job = ImportJob.objects.get(filename="bad.jsonl")
    assert job.status == ImportJob.Status.FAILED
    assert snapshot(study) == before  # line 2 was fine, and still nothing was written
    assert job.error_count == 1
    assert job.problem_lines() == [
        "bad.jsonl:2: region: unknown region 'mars' (expected one of eu, us)"
    ]
    assert stored_files(media) == []

    page = client.get(r["Location"]).content.decode()
    assert "nothing was imported" in page
    assert "<td>bad.jsonl:2</td>" in page and "unknown region &#x27;mars&#x27;" in page
    event = AuditEvent.objects.get(action="data.import_failed")
    assert event.details["problems"] == 1 and event.details["first"].startswith("bad.jsonl:2:")


def test_a_job_counts_more_problems_than_it_keeps(client, study, admin_user, monkeypatch):
    monkeypatch.setattr(import_services, "ERRORS_KEPT", 2)
    lines = [interaction(n, region="mars") for n in range(5)]
    job = queued_job(study, admin_user, *lines, name="many.jsonl")
    run_import_job(job_id=job.pk)
    job.refresh_from_db()
    assert (job.error_count, len(job.errors), job.errors_not_shown) == (5, 2, 3)
    assert [p["line"] for p in job.errors] == [1, 2]
    client.force_login(admin_user)
    body = client.get(job_url(job)).content.decode()
    assert "5 problems in many.jsonl, first line first (the first 2 are shown)" in body


def test_an_internal_error_fails_the_job_with_a_message(study, admin_user, media):
    job = queued_job(study, admin_user, interaction(1))
    job.file.storage.delete(job.file.name)  # as when the worker does not share MEDIA_ROOT
    job = run_import_job(job_id=job.pk)
    assert job.status == ImportJob.Status.FAILED
    assert "share MEDIA_ROOT" in job.error_message
    assert AuditEvent.objects.get(action="data.import_failed").details["job"] == job.pk


# --------------------------------------------------------------------------- lost workers


def test_a_job_whose_worker_died_is_marked_failed_when_next_read(
    client, study, admin_user, media, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - STALE_AFTER - timedelta(minutes=1)
    lost = queued_job(study, admin_user, interaction(1), name="lost.jsonl")
    alive = queued_job(study, admin_user, interaction(2), name="alive.jsonl")
    ImportJob.objects.filter(pk=lost.pk).update(
        status="running", started_at=long_ago, progress_at=long_ago
    )
    ImportJob.objects.filter(pk=alive.pk).update(
        status="running", started_at=long_ago, progress_at=timezone.now()
    )
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        body = client.get(job_url(lost)).content.decode()
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == ImportJob.Status.FAILED and lost.error_message == LOST_MESSAGE
    assert lost.finished_at is not None and lost.file.name == ""
    assert "worker stopped answering" in body
    assert alive.status == ImportJob.Status.RUNNING  # progress a moment ago: alive
    assert [p.name for p in stored_files(media)] == [Path(alive.file.name).name]


def test_a_job_declared_lost_while_it_ran_rolls_its_import_back(study, admin_user, monkeypatch):
    # Another process marked the job failed while it ran (as expire_lost_jobs does): its
    # outcome is no longer stored, so the import must not be either.
    job = queued_job(study, admin_user, interaction(1))
    monkeypatch.setattr(import_services, "_finish", lambda job, **fields: False)
    run_import_job(job_id=job.pk)
    assert not Prompt.objects.exists()  # "failed" always means nothing was imported
    assert not AuditEvent.objects.filter(action="data.import").exists()


# --------------------------------------------------------------------------- the page


def test_the_fragment_polls_every_second_while_the_job_runs(client, study, admin_user):
    job = queued_job(study, admin_user, interaction(1))
    client.force_login(admin_user)
    r = client.get(job_url(job), **HTMX)
    body = r.content.decode()
    assert r.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="import-job"')  # the fragment only
    assert 'hx-trigger="every 1s"' in body and f'hx-get="{job_url(job)}"' in body
    assert "Waiting for a worker" in body
    assert '<label for="import-progress">' in body and '<progress id="import-progress"' in body

    ImportJob.objects.filter(pk=job.pk).update(
        status="running", bytes_processed=job.bytes_total // 2, progress_at=timezone.now()
    )
    body = client.get(job_url(job), **HTMX).content.decode()
    half = job.bytes_total // 2
    assert f'value="{half}"' in body and f"({100 * half // job.bytes_total}%)" in body
    assert 'hx-trigger="every 1s"' in body


def test_the_fragment_stops_polling_when_the_job_has_ended(client, study, admin_user):
    job = queued_job(study, admin_user, interaction(1), interaction(2))
    run_import_job(job_id=job.pk)
    client.force_login(admin_user)
    r = client.get(job_url(job), **HTMX)
    body = r.content.decode()
    assert r.status_code == 286  # htmx stops polling, and swaps the final state in
    assert "hx-trigger" not in body
    assert 'id="import-counts"' in body and 'value="100"' in body
    assert reverse("annotate-setup-members", kwargs={"slug": study.slug}) in body


def test_the_job_page_without_htmx_is_a_whole_page_with_a_refresh_link(client, study, admin_user):
    job = queued_job(study, admin_user, interaction(1))
    client.force_login(admin_user)
    r = client.get(job_url(job))
    body = r.content.decode()
    assert r.status_code == 200 and "<html" in body
    assert f'<a href="{job_url(job)}">Refresh</a>' in body


def test_a_job_of_another_study_is_not_found(client, study, admin_user):
    other = make_study(slug="other-study")
    job = queued_job(other, admin_user, interaction(1))
    client.force_login(admin_user)
    r = client.get(reverse("annotate-upload-job", kwargs={"slug": study.slug, "job_id": job.pk}))
    assert r.status_code == 404


def test_the_upload_page_lists_recent_uploads(client, study, admin_user):
    job = queued_job(study, admin_user, interaction(1), name="recent.jsonl")
    client.force_login(admin_user)
    body = client.get(reverse("annotate-upload", kwargs={"slug": study.slug})).content.decode()
    assert f'<a href="{job_url(job)}">recent.jsonl</a>' in body


# --------------------------------------------------------------------------- size limit


def test_the_upload_page_refuses_a_file_over_the_size_limit(
    client, study, admin_user, settings, media
):
    settings.IMPORT_MAX_UPLOAD_BYTES = 100
    client.force_login(admin_user)
    file = upload("big.jsonl", interaction(1))
    assert file.size > 100
    r = post_upload(client, study, file)
    assert r.status_code == 400
    body = r.content.decode()
    assert f"The file is {file.size} bytes; the largest upload accepted is 100 bytes" in body
    assert "IMPORT_MAX_UPLOAD_BYTES" in body
    assert not ImportJob.objects.exists() and stored_files(media) == []


@pytest.mark.parametrize("query", ["", "?async=1"])
def test_the_api_refuses_a_file_over_the_size_limit(study, admin_user, settings, query):
    settings.IMPORT_MAX_UPLOAD_BYTES = 100
    api = APIClient()
    api.force_authenticate(admin_user)
    url = reverse("annotate-api-import", kwargs={"slug": study.slug}) + query
    r = api.post(url, {"file": upload("big.jsonl", interaction(1))}, format="multipart")
    assert r.status_code == 400
    assert "largest upload accepted is 100 bytes" in r.json()["file"][0]
    assert not ImportJob.objects.exists() and not Prompt.objects.exists()


# --------------------------------------------------------------------------- API


def test_the_api_imports_in_the_worker_on_request(
    study, admin_user, lead, django_capture_on_commit_callbacks
):
    api = APIClient()
    api.force_authenticate(admin_user)
    url = reverse("annotate-api-import", kwargs={"slug": study.slug}) + "?async=1"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = api.post(url, {"file": upload("a.jsonl", interaction(1))}, format="multipart")
    assert r.status_code == 202, r.content
    job = ImportJob.objects.get()
    assert r.json()["status"] == "queued" and r.json()["id"] == job.pk
    assert r["Location"] == r.json()["url"] == f"http://testserver{api_job_url(job)}"
    assert AuditEvent.objects.get(action="data.upload").details["via"] == "api"

    for callback in callbacks:  # what the worker would do
        callback()
    lead_api = APIClient()
    lead_api.force_authenticate(lead)  # leads may watch an import, not start one
    status = lead_api.get(api_job_url(job))
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "succeeded" and body["percent"] == 100
    assert body["responses"] == {"created": 3, "updated": 0}
    assert body["problems"] == [] and body["problem_count"] == 0


def test_the_api_job_status_lists_the_problems(study, admin_user):
    job = queued_job(study, admin_user, interaction(1), interaction(2, region="mars"))
    run_import_job(job_id=job.pk)
    api = APIClient()
    api.force_authenticate(admin_user)
    body = api.get(api_job_url(job)).json()
    assert body["status"] == "failed" and body["problem_count"] == 1
    assert body["problems"][0]["line"] == 2 and body["problems"][0]["field"] == "region"


@pytest.mark.parametrize(("persona", "status"), [("annotator", 403), ("outsider", 404)])
def test_annotators_and_outsiders_cannot_read_a_job(request, study, admin_user, persona, status):
    job = queued_job(study, admin_user, interaction(1))
    api = APIClient()
    api.force_authenticate(request.getfixturevalue(persona))
    assert api.get(api_job_url(job)).status_code == status


def test_the_job_status_is_in_the_openapi_schema(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    path = next(p for p in schema["paths"] if p.endswith("/imports/{job_id}/"))
    ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/ImportJob")
    post = next(v for p, v in schema["paths"].items() if p.endswith("/imports/"))["post"]
    assert "202" in post["responses"] and any(p["name"] == "async" for p in post["parameters"])


def test_the_django_admin_lists_import_jobs(client, study, admin_user):
    queued_job(study, admin_user, interaction(1), name="in-admin.jsonl")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    r = client.get(reverse("admin:annotate_importjob_changelist"))
    assert r.status_code == 200 and "in-admin.jsonl" in r.content.decode()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_outside_the_import_transaction_and_throttled(study, admin_user):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite allows one writer, which the import holds")
    job = queued_job(study, admin_user, interaction(1))
    ImportJob.objects.filter(pk=job.pk).update(status="running")
    writer = ProgressWriter(job.pk, interval=60)
    other = connections.create_connection("default")
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            ImportJob.objects.filter(pk=job.pk).values("pk").first()
            writer(40, 100)
            writer(80, 100)  # within the interval: not written
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT bytes_processed FROM annotate_importjob WHERE id = %s", [job.pk]
                )
                assert cursor.fetchone() == (40,)
            raise RuntimeError("the import failed")
    finally:
        writer.close()
        other.close()
    job.refresh_from_db()
    assert job.bytes_processed == 40 and writer.writes == 1  # survived the rollback


def test_the_data_step_lists_the_uploads_with_their_status(client, study, admin_user):
    done = queued_job(study, admin_user, interaction(1), name="first.jsonl")
    run_import_job(job_id=done.pk)
    waiting = queued_job(study, admin_user, interaction(2), name="second.jsonl")
    client.force_login(admin_user)
    body = client.get(reverse("annotate-setup-data", kwargs={"slug": study.slug})).content.decode()
    assert f'<a href="{job_url(waiting)}">second.jsonl</a>' in body
    assert f'<a href="{job_url(done)}">first.jsonl</a>' in body
    assert "<td>Succeeded</td><td>3</td>" in body and "<td>Queued</td>" in body


def test_a_refused_import_ends_its_task_as_failed_with_the_first_problem(study, admin_user):
    from annotate.tasks import ImportRefused, run_import

    job = queued_job(study, admin_user, interaction(1), interaction(2, region="mars"))
    with pytest.raises(ImportRefused, match=r"refused: 1 problem\(s\); first: .*line 2"):
        run_import.call(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    good = queued_job(study, admin_user, interaction(3), name="b.jsonl")
    assert run_import.call(good.pk) == ImportJob.Status.SUCCEEDED
    assert run_import.call(good.pk) == "skipped"  # not queued any more
