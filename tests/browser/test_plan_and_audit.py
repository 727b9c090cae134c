"""Issue 13 in Chromium: a held verdict said in words, the frozen plan, and a re-plan.
Screenshots go to test-output/screenshots/plan_*.png."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse

from annotate.models import Annotation, Dimension, Study
from calibration import audit_data, services
from calibration.bayes.audit import AuditEstimate
from calibration.models import Fit, Replan
from tests.browser.conftest import log_in, screenshot
from tests.calibration.helpers import FakeFitter, populate
from tests.factories import MembershipFactory, UserFactory, make_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def graded(monkeypatch) -> dict[str, Any]:
    """A graded study whose fake fits say go everywhere, with an audit that disagrees."""
    cache.clear()
    services._draws_cache.clear()
    fitter = FakeFitter()
    monkeypatch.setattr(services, "get_fitter", lambda: fitter)
    far = AuditEstimate(mean=-0.45, se=0.01, lower=-0.47, upper=-0.43, n=40)
    monkeypatch.setattr(
        audit_data, "audit_estimates",
        lambda *, study, weights: dict.fromkeys(
            [(c, d.key) for c in ("cand1", "cand2") for d in study.dimensions.all()], far
        ),
    )  # fmt: skip
    study = make_study()
    lead, admin = UserFactory(username="bob"), UserFactory(username="alice")
    MembershipFactory(study=study, user=lead, role="lead")
    MembershipFactory(study=study, user=admin, role="admin")
    populate(study, prompts_per_region=40, graded_share=0.5)
    graded_n = Annotation.objects.filter(study=study).values("response_id").distinct().count()
    Study.objects.filter(pk=study.pk).update(label_budget=graded_n + 4, audit_share=0.1)
    Dimension.objects.filter(study=study).update(margin=0.5)
    study.refresh_from_db()
    fit = services.fit_now(study=study)
    assert fit.status == Fit.Status.SUCCEEDED
    return {"study": study, "fit": fit}


def test_a_held_verdict_is_said_in_words_beside_the_bar(page, live_server, graded):
    study = graded["study"]
    log_in(page, live_server.url, "bob")
    page.goto(live_server.url + reverse("calibration-study", kwargs={"slug": study.slug}))
    matrix = page.locator(".decision-matrix")
    matrix.locator(".held").first.wait_for()
    assert "held: the model and the audit disagree" in matrix.inner_text()
    assert "needs " in matrix.inner_text() and "of the budget" in matrix.inner_text()
    assert "Audit (uniform sample, 40 grades)" in matrix.inner_text()
    assert "Held" in page.locator(".recommendation").inner_text()
    screenshot(page, "plan_held_overview")
    page.goto(live_server.url + reverse(
        "calibration-pair", kwargs={"slug": study.slug, "arm": "cand1"}
    ))  # fmt: skip
    held = page.locator("p.held").first
    assert "model and the audit disagree" in held.inner_text()
    assert page.js_errors == []
    screenshot(page, "plan_held_pair")


def test_the_plan_is_frozen_in_the_settings_once_grading_started(page, live_server, graded):
    study = graded["study"]
    log_in(page, live_server.url, "alice")
    page.goto(live_server.url + reverse("annotate-setup-study", kwargs={"slug": study.slug}))
    budget = page.locator("#id_label_budget")
    assert budget.is_disabled() and page.locator("#id_confidence").is_disabled()
    assert page.locator("#id_audit_share").is_disabled()
    assert "Frozen since grading started" in page.locator("body").inner_text()
    screenshot(page, "plan_frozen_settings")


def test_a_replan_asks_for_confirmation_and_is_listed(page, live_server, graded):
    study = graded["study"]
    log_in(page, live_server.url, "alice")
    page.goto(live_server.url + reverse("calibration-study", kwargs={"slug": study.slug}))
    with page.expect_navigation():
        page.get_by_role("link", name="Plan").click()
    assert "Frozen since grading started" in page.locator("#plan").inner_text()
    page.locator("#id_label_budget").fill(str(study.label_budget * 2))
    page.locator("#id_reason").fill("More budget from the product team")
    with page.expect_navigation():
        page.get_by_role("button", name="Record the re-plan").click()
    assert "Confirm the re-plan" in page.locator("#replan-form").inner_text()
    assert not Replan.objects.exists()
    page.locator("#id_confirm").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Record the re-plan").click()
    assert "Re-plan 1 recorded" in page.locator("body").inner_text()
    page.goto(live_server.url + reverse("calibration-replan", kwargs={"slug": study.slug}))
    listed = page.locator("#replans").inner_text()
    assert "Re-plan 1" in listed and "More budget from the product team" in listed
    assert page.js_errors == []
    screenshot(page, "plan_replanned")
