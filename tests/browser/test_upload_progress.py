"""An admin uploads a file on the upload page and watches its import job to the end."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile

from annotate.imports.services import run_import_job
from annotate.models import ImportJob, Membership, Response
from tests.annotate.imports.import_helpers import interaction
from tests.browser.conftest import log_in, screenshot
from tests.factories import MembershipFactory, UserFactory, make_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    study = make_study()
    admin = UserFactory(username="alice", is_staff=True)
    MembershipFactory(study=study, user=admin, role=Membership.Role.ADMIN)
    return study


def _jsonl(n: int, **extra) -> bytes:
    return "".join(json.dumps(interaction(i, **extra)) + "\n" for i in range(n)).encode()


def test_an_upload_runs_as_a_job_and_ends_with_its_counts(page, live_server, world, tmp_path):
    study = world
    path = tmp_path / "support.jsonl"
    path.write_bytes(_jsonl(40))
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/studies/{study.slug}/setup/data/")
    page.click("text=Upload responses and judge scores")
    page.set_input_files("#id_file", str(path))
    page.click("button:has-text('Import')")

    # The immediate backend (tests) has run the job by the time the page answers.
    job_box = page.locator("#import-job[data-status=succeeded]")
    job_box.wait_for()
    assert page.url.startswith(f"{live_server.url}/studies/{study.slug}/upload/")
    progress = page.get_by_role("progressbar", name="Import finished")
    assert progress.get_attribute("value") == "100"
    counts = page.locator("#import-counts")
    assert counts.locator("tr", has_text="Responses").locator("td").first.inner_text() == "120"
    assert counts.locator("tr", has_text="Judge scores").locator("td").first.inner_text() == "360"
    assert "40 interactions (JSONL)" in job_box.inner_text()
    screenshot(page, "setup_upload_progress")
    assert Response.objects.filter(study=study).count() == 120
    assert page.js_errors == []

    page.click("text=Next: people")
    page.wait_for_url(f"{live_server.url}/studies/{study.slug}/setup/people/")


def test_the_page_follows_a_queued_job_until_it_ends(page, live_server, world):
    """The fragment polls every second: the page changes by itself when the worker is done."""
    study = world
    data = _jsonl(3) + json.dumps(interaction(9, region="mars")).encode() + b"\n"
    job = ImportJob(study=study, filename="late.jsonl", bytes_total=len(data))
    job.file.save("late.jsonl", ContentFile(data), save=True)
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/studies/{study.slug}/upload/{job.pk}/")
    page.locator("#import-job[data-status=queued]").wait_for()
    bar = page.get_by_role("progressbar", name="Waiting for a worker")
    assert bar.get_attribute("value") is None  # indeterminate until something is known

    run_import_job(job_id=job.pk)  # what the worker does

    failed = page.locator("#import-job[data-status=failed]")
    failed.wait_for(timeout=10_000)  # within a poll or two, without reloading the page
    assert "nothing was imported" in failed.inner_text()
    row = page.locator("#import-problems tbody tr").first
    assert row.locator("td").first.inner_text() == "late.jsonl:4"
    assert "unknown region 'mars'" in row.inner_text()
    screenshot(page, "setup_upload_progress_failed")
    # Polling has stopped: no further requests for the job in the next 2.5 s.
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if f"/upload/{job.pk}/" in r.url else None)
    page.wait_for_timeout(2500)
    assert polls == []
    assert page.js_errors == []
