"""Rough edges of the first hour (issue 14, item 8): styled 403 and 404 pages, a favicon,
a slug derived from the study's name."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.models import Study
from tests.factories import StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_403_is_a_page_of_the_app_that_says_why_and_links_home(client, annotator, study):
    client.force_login(annotator)
    r = client.get(reverse("calibration-annotators", kwargs={"slug": study.slug}))
    html = r.content.decode()
    assert r.status_code == 403
    assert "baton.css" in html and "You cannot open this page" in html
    assert "Your role in this study (annotator) does not allow this." in html
    assert f'href="{reverse("home")}"' in html


def test_a_404_is_a_page_of_the_app(client, outsider, study):
    client.force_login(outsider)
    r = client.get(reverse("calibration-study", kwargs={"slug": study.slug}))
    assert r.status_code == 404 and "baton.css" in r.content.decode()
    assert "Nothing here" in r.content.decode()


def test_favicon_ico_is_not_a_404(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 301 and r["Location"].endswith("baton/favicon.svg")


def test_every_page_links_its_icon(client, admin_user):
    client.force_login(admin_user)
    assert 'rel="icon"' in client.get(reverse("home")).content.decode()


def test_a_new_study_without_a_slug_gets_one_from_its_name(client):
    client.force_login(UserFactory(username="staff", is_staff=True))
    StudyFactory(slug="support-bot-v2", name="Taken")
    data = {
        "name": "Support bot v2!",
        "slug": "",
        "description": "",
        "instructions": "",
        "confidence": "0.95",
        "label_budget": "100",
        "exploration_share": "0.15",
        "overlap_share": "0.1",
        "lease_seconds": "600",
        "refit_every": "20",
    }
    r = client.post(reverse("annotate-setup-create"), data)
    assert r.status_code == 302, r.context["form"].errors
    assert Study.objects.filter(name="Support bot v2!", slug="support-bot-v2-2").exists()


def test_a_django_log_line_is_printed_once_even_under_debug():
    import logging
    import logging.config

    from django.conf import settings
    from django.utils.log import DEFAULT_LOGGING

    # What Django does at start-up: its defaults, then the project's LOGGING.
    logging.config.dictConfig(DEFAULT_LOGGING)
    logging.config.dictConfig(settings.LOGGING)
    tasks = logging.getLogger("django.tasks")
    handlers = []
    logger: logging.Logger | None = tasks
    while logger is not None:
        handlers += logger.handlers
        logger = logger.parent if logger.propagate else None
    assert len(handlers) == 1
    assert logging.getLogger("pytensor").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("arviz").getEffectiveLevel() == logging.WARNING


def test_the_audit_log_names_an_import_by_its_study_slug_not_its_id(study):
    from annotate.models import ImportJob

    job = ImportJob.objects.create(study=study, filename="interactions.jsonl")
    assert f"into {study.slug} (" in str(job)


def test_the_audit_log_names_a_fit_by_its_number_in_the_study(study):
    from calibration.models import Fit

    other = StudyFactory(slug="other")
    Fit.objects.create(study=other)
    fit = Fit.objects.create(study=study)
    assert str(fit).startswith(f"fit 1 of {study.name} (id {fit.pk},")
