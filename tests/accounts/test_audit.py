"""The audit log: what record() stores, and the admin page that lists a study's events."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from accounts.models import AuditEvent
from accounts.services import record

pytestmark = pytest.mark.django_db


def test_record_keeps_who_what_where_and_details(study, admin_user):
    dim = study.dimensions.get(key="style")
    event = record(
        actor=admin_user,
        action="dimension.update",
        target=dim,
        details={"changes": {"margin": [0.02, 0.05]}, "share": Decimal("0.5")},
    )
    event.refresh_from_db()
    assert event.study == study and event.study_slug == study.slug  # from target.study
    assert event.actor_username == "alice"
    assert (event.target_type, event.target_id) == ("annotate.dimension", str(dim.pk))
    assert event.target_repr == "Style adherence"
    assert event.details == {"changes": {"margin": [0.02, 0.05]}, "share": "0.5"}


def test_record_by_the_system(study):
    event = record(actor=None, action="export.report", study=study)
    assert event.actor is None and event.actor_username == ""
    assert record(actor=AnonymousUser(), action="x").actor is None


def test_events_outlive_their_user(study, admin_user):
    record(actor=admin_user, action="study.update", study=study)
    admin_user.delete()
    event = AuditEvent.objects.get()
    assert event.actor is None and event.actor_username == "alice"


def test_admins_read_their_studys_audit_log(client, study, admin_user, lead):
    record(
        actor=admin_user,
        action="dimension.update",
        study=study,
        details={"changes": {"margin": [0.02, 0.05]}},
    )
    record(actor=lead, action="export.report", study=study)
    client.force_login(admin_user)
    r = client.get(reverse("accounts-audit", kwargs={"slug": study.slug}))
    assert r.status_code == 200
    body = r.content.decode()
    assert "dimension.update" in body and "0.02 → 0.05" in body and "export.report" in body
    r = client.get(reverse("accounts-audit", kwargs={"slug": study.slug}), {"action": "export"})
    assert [e.action for e in r.context["page"]] == ["export.report"]


@pytest.mark.parametrize(
    ("persona", "status"), [("lead", 403), ("annotator", 403), ("outsider", 404)]
)
def test_others_cannot_read_the_audit_log(client, request, study, persona, status):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("accounts-audit", kwargs={"slug": study.slug})).status_code == status


def test_undoing_a_grade_is_recorded(study, annotator):
    from annotate.grading import queue
    from annotate.models import Annotation
    from tests.factories import PromptFactory, ResponseFactory

    response = ResponseFactory(
        prompt=PromptFactory(study=study, region=study.regions.first()), arm=study.incumbent
    )
    annotation = Annotation.objects.create(study=study, response=response, annotator=annotator)
    queue.undo_annotation(annotation_id=annotation.pk, annotator=annotator)
    event = AuditEvent.objects.get(action="annotation.undo")
    assert event.actor == annotator and event.study == study
    assert event.target_id == str(annotation.pk)
    assert event.details == {"response_id": response.pk, "status": "graded"}


def test_imports_and_exports_are_recorded(client, study, admin_user, lead, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from tests.annotate.imports.import_helpers import interaction, jsonl

    client.force_login(admin_user)
    upload = SimpleUploadedFile("batch.jsonl", jsonl(interaction(1), interaction(2)).read())
    r = client.post(reverse("annotate-api-import", kwargs={"slug": study.slug}), {"file": upload})
    assert r.status_code == 201, r.content
    event = AuditEvent.objects.get(action="data.import")
    assert event.actor == admin_user and event.study == study
    assert event.details["via"] == "api" and event.details["file"] == "batch.jsonl"
    assert event.details["responses"]["created"] == 6

    client.force_login(lead)
    r = client.get(reverse("annotate-api-labels-as", kwargs={"slug": study.slug, "format": "csv"}))
    assert r.status_code == 200
    b"".join(r.streaming_content)
    event = AuditEvent.objects.get(action="export.labels", actor=lead)
    assert event.details == {"format": "csv", "via": "api"}

    call_command("exportlabels", "--study", study.slug, "-o", str(tmp_path / "labels.csv"))
    event = AuditEvent.objects.filter(action="export.labels", actor=None).get()
    assert event.details["via"] == "manage.py exportlabels"


def test_uploads_through_the_page_are_recorded(
    client, study, admin_user, settings, tmp_path, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.annotate.imports.import_helpers import interaction, jsonl

    settings.MEDIA_ROOT = tmp_path
    client.force_login(admin_user)
    upload = SimpleUploadedFile("page.jsonl", jsonl(interaction(7)).read())
    with django_capture_on_commit_callbacks(execute=True):  # the import task runs on commit
        r = client.post(reverse("annotate-upload", kwargs={"slug": study.slug}), {"file": upload})
    assert r.status_code == 302
    uploaded = AuditEvent.objects.get(action="data.upload")
    assert uploaded.details["via"] == "upload" and uploaded.details["file"] == "page.jsonl"
    event = AuditEvent.objects.get(action="data.import")
    assert event.actor == admin_user and event.details["lines"] == 1
    assert event.details["job"] == uploaded.details["job"]
