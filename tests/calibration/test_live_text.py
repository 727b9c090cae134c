"""Text on the lead's pages that stays true (issue 14, item 7): fit numbers count within
their study, no flash outlives the fit it announced, times are relative and kept current,
and the counts that differ say why."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from calibration import services
from calibration.models import Fit
from tests.calibration.helpers import populate
from tests.factories import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    services._draws_cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fitted(study, fake_fitter):
    # Other studies' fits come first, as they do on a server with several studies.
    other = make_study(slug="other-study")
    for _ in range(3):
        Fit.objects.create(study=other, status=Fit.Status.FAILED)
    populate(study, prompts_per_region=10, graded_share=0.5, annotators=2)
    return services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)


def page(study, name="calibration-study"):
    return reverse(name, kwargs={"slug": study.slug})


def test_a_studys_first_fit_is_fit_1_whatever_other_studies_did(client, study, lead, fitted):
    assert fitted.pk > 1 and fitted.number == 1
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert "Verdicts from fit 1," in html and f"fit {fitted.pk}," not in html


def test_the_report_file_is_named_after_the_studys_fit_number(client, study, lead, fitted):
    client.force_login(lead)
    r = client.get(page(study, "calibration-report"))
    assert f'filename="{study.slug}-report-fit1.html"' in r["Content-Disposition"]
    assert "(fit 1)" in r.content.decode()


def test_refit_leaves_no_flash_that_would_outlive_the_fit(
    client, study, lead, fitted, django_capture_on_commit_callbacks
):
    client.force_login(lead)
    with django_capture_on_commit_callbacks():
        r = client.post(page(study, "calibration-refit"))
    html = client.get(r.url).content.decode()
    assert 'class="messages"' not in html
    # The live #progress section says it, and stops once the fit has landed.
    assert "Fit 2 is queued" in html
    services.run_fit(fit_id=Fit.objects.get(status="queued").pk)
    progress = client.get(page(study) + "?part=progress", HTTP_HX_REQUEST="true")
    assert "is queued" not in progress.content.decode()


def test_the_fit_time_is_a_relative_time_the_page_keeps_current(client, study, lead, fitted):
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert '<time datetime="' in html and "data-relative" in html
    assert "baton/relative-time.js" in html


def test_the_dashboard_says_why_the_fit_saw_fewer_grades_than_are_used(client, study, lead, fitted):
    from tests.calibration.helpers import grade

    response = study.responses.filter(annotations__isnull=True).first()
    grade(response, lead, dict.fromkeys(study.dimensions.all(), 1))
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert 'id="labels-since-fit"' in html
    assert f"from the {fitted.n_labels} graded when fit 1 started" in html


def test_the_agreement_page_names_what_each_count_counts(client, study, lead, fitted):
    client.force_login(lead)
    html = client.get(page(study, "calibration-annotators")).content.decode()
    assert "Responses graded twice or more" in html and "Grades compared" in html
