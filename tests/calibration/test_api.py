"""Fits API and study page: leads and admins see verdicts; annotators and outsiders do not."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from calibration import services
from calibration.models import Fit
from tests.calibration.helpers import populate, worker_alive
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def fitted(study, fake_fitter):
    populate(study, prompts_per_region=10, graded_share=0.5)
    return services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)


def urls(study) -> dict[str, str]:
    return {
        "posterior": reverse("calibration-api-posterior", kwargs={"slug": study.slug}),
        "fits": reverse("calibration-api-fits", kwargs={"slug": study.slug}),
    }


@pytest.mark.parametrize("who", ["lead", "admin_user", "superuser"])
def test_leads_and_admins_read_the_posterior(request, who, study, fitted, api):
    user = (
        UserFactory(username="root", is_superuser=True)
        if who == "superuser"
        else request.getfixturevalue(who)
    )
    api.force_authenticate(user)
    response = api.get(urls(study)["posterior"])
    assert response.status_code == 200
    body = response.json()
    assert body["fit"]["id"] == fitted.pk and body["fit"]["n_labels"] == fitted.n_labels
    assert body["trustworthy"] is True
    assert [c["arm"] for c in body["candidates"]] == ["cand1", "cand2"]
    cell = body["candidates"][0]["dimensions"][0]
    assert {"verdict", "mean", "lower", "upper", "p_noninferior", "regions", "judge"} <= set(cell)
    assert {"p_differs", "arms"} <= set(cell["judge"])
    assert set(body["dimensions"][0]["diagnostics"]) >= {"max_rhat", "min_ess_bulk", "divergences"}


def test_annotator_cannot_see_verdicts_or_judge_behaviour(study, fitted, annotator, api):
    api.force_authenticate(annotator)
    for url in urls(study).values():
        assert api.get(url).status_code == 403
    assert api.post(urls(study)["fits"]).status_code == 403
    assert Fit.objects.count() == 1


def test_outsider_does_not_learn_the_study_exists(study, fitted, outsider, api):
    api.force_authenticate(outsider)
    for url in urls(study).values():
        assert api.get(url).status_code == 404
    assert api.post(urls(study)["fits"]).status_code == 404


def test_anonymous_is_refused(study, fitted, api):
    assert api.get(urls(study)["posterior"]).status_code in (401, 403)


def test_no_posterior_yet_says_so(study, lead, api):
    api.force_authenticate(lead)
    response = api.get(urls(study)["posterior"])
    assert response.status_code == 404
    assert "No posterior yet" in response.json()["detail"]


def test_lead_triggers_a_fit_and_a_second_trigger_coalesces(
    study, lead, api, fake_fitter, django_capture_on_commit_callbacks
):
    populate(study, prompts_per_region=5, graded_share=0.5)
    api.force_authenticate(lead)
    with django_capture_on_commit_callbacks() as callbacks:
        first = api.post(urls(study)["fits"])
        second = api.post(urls(study)["fits"])
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and first.json()["status"] == "queued"
    assert first.json()["requested_by"] == "bob" and len(callbacks) == 1
    callbacks[0]()  # the worker runs it
    history = api.get(urls(study)["fits"]).json()
    assert history["count"] == 1 and history["results"][0]["status"] == "succeeded"
    assert "draws" not in history["results"][0]


def test_history_lists_failed_fits_too(study, lead, api, fitted, fake_fitter):
    fake_fitter.fail = True
    services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    api.force_authenticate(lead)
    results = api.get(urls(study)["fits"]).json()["results"]
    assert [r["status"] for r in results] == ["failed", "succeeded"]
    assert "sampler exploded" in results[0]["error"]
    # ... and the posterior still serves the good one.
    assert api.get(urls(study)["posterior"]).json()["fit"]["id"] == fitted.pk


# --- the study page and its refit button ----------------------------------------------


def test_lead_sees_the_latest_fit_on_the_study_page(client, study, lead, fitted):
    client.force_login(lead)
    response = client.get(reverse("calibration-study", kwargs={"slug": study.slug}))
    assert response.status_code == 200
    assert response.context["fit"] == fitted
    assert "nova-1" in response.content.decode()


def test_annotator_is_sent_to_grading_not_to_verdicts(client, study, annotator, fitted):
    client.force_login(annotator)
    response = client.get(reverse("calibration-study", kwargs={"slug": study.slug}))
    assert response.status_code == 302
    assert response.url == reverse("annotate-study-home", kwargs={"slug": study.slug})
    refit = client.post(reverse("calibration-refit", kwargs={"slug": study.slug}))
    assert refit.status_code == 403
    assert Fit.objects.count() == 1


def test_outsider_gets_404_on_the_study_page(client, study, outsider):
    client.force_login(outsider)
    assert client.get(reverse("calibration-study", kwargs={"slug": study.slug})).status_code == 404
    refit = client.post(reverse("calibration-refit", kwargs={"slug": study.slug}))
    assert refit.status_code == 404


def test_refit_button_queues_one_fit(client, study, lead, django_capture_on_commit_callbacks):
    client.force_login(lead)
    url = reverse("calibration-refit", kwargs={"slug": study.slug})
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url)
        client.post(url)  # a double click coalesces
    assert response.status_code == 302 and len(callbacks) == 1
    fit = Fit.objects.get()
    assert fit.status == "queued" and fit.requested_by == lead and fit.trigger == "manual"
    assert client.get(url).status_code == 405  # POST only


# --- manage.py runfits ------------------------------------------------------------------


def test_runfits_fits_in_process(study, fake_fitter, capsys):
    populate(study, prompts_per_region=5, graded_share=0.5)
    call_command("runfits", "--study", study.slug)
    fit = Fit.objects.get()
    assert fit.status == "succeeded"
    out = capsys.readouterr().out
    assert f"fit {fit.pk} of {study.slug}: succeeded" in out and "nova-1" in out


def test_runfits_refuses_while_another_fit_runs(study, fake_fitter):
    from django.utils import timezone

    running = Fit.objects.create(study=study, status="running", started_at=timezone.now())
    with worker_alive(running.pk), pytest.raises(CommandError, match="another fit"):
        call_command("runfits", "--study", study.slug)
    with pytest.raises(CommandError, match="no study"):
        call_command("runfits", "--study", "nope")
