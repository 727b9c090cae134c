"""The frozen plan and the audited re-plan (calibration.replans, the setup guard, the page)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from accounts.models import AuditEvent
from annotate.models import Dimension, Study
from annotate.setup import services as setup
from calibration import replans, services
from calibration.bayes.decision import Design
from calibration.models import Replan
from tests.calibration.helpers import populate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    services._draws_cache.clear()
    yield
    cache.clear()


@pytest.fixture
def graded(study, fake_fitter):
    populate(study, prompts_per_region=10, graded_share=0.5)
    services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    study.refresh_from_db()
    return study


def test_budget_confidence_audit_share_and_margins_are_frozen_once_graded(graded, admin_user):
    graded.label_budget = 10
    with pytest.raises(setup.SetupError, match="frozen since grading started"):
        setup.update_study(user=admin_user, study=graded)
    dim = Dimension.objects.get(study=graded, key="correctness")
    dim.margin = 0.05
    with pytest.raises(setup.SetupError, match="frozen"):
        setup.save_dimension(user=admin_user, study=graded, dimension=dim)
    fresh = Study.objects.get(pk=graded.pk)
    fresh.name = "Renamed"  # not part of the plan: still editable
    assert setup.update_study(user=admin_user, study=fresh)


def test_before_any_grade_the_plan_is_editable(study, admin_user):
    study.label_budget = 10
    assert setup.update_study(user=admin_user, study=study)


def test_the_settings_form_shows_the_plan_read_only_once_graded(client, graded, admin_user):
    client.force_login(admin_user)
    html = client.get(reverse("annotate-setup-study", kwargs={"slug": graded.slug})).content
    assert b"Frozen since grading started" in html
    r = client.post(
        reverse("annotate-setup-study", kwargs={"slug": graded.slug}),
        {"name": graded.name, "label_budget": 5, "confidence": 0.8, "audit_share": 0.5,
         "exploration_share": 0.15, "overlap_share": 0.1, "lease_seconds": 600,
         "refit_every": 20, "description": ""},
    )  # fmt: skip
    assert r.status_code in (200, 302)
    graded.refresh_from_db()
    assert (graded.label_budget, graded.confidence) == (1000, 0.95)


def test_a_replan_is_recorded_audited_and_anchors_new_boundaries(graded, admin_user):
    fit = services.latest_fit(graded)
    row = replans.replan(
        study=graded, user=admin_user, label_budget=2000, confidence=0.95, audit_share=0.2,
        margins={"correctness": 0.03}, reason="Budget doubled by the product team",
    )  # fmt: skip
    graded.refresh_from_db()
    assert (graded.label_budget, graded.audit_share) == (2000, 0.2)
    assert Dimension.objects.get(study=graded, key="correctness").margin == 0.03
    assert row.number == 1 and row.fit_id == fit.pk and row.labels_at == fit.n_labels
    assert row.before["label_budget"] == 1000 and row.after["label_budget"] == 2000
    event = AuditEvent.objects.get(action="study.replan")
    assert event.details["changes"]["label_budget"] == [1000, 2000]
    go = Design.from_list(row.designs["cand1"]["correctness"]["go"])
    cell = next(d for d in fit.summary["candidates"][0]["dimensions"]
                if d["dimension"] == "correctness")  # fmt: skip
    # The anchor is where the verdict stood, on the new budget's scale.
    assert go.t_anchor == pytest.approx(cell["fraction"] / 2)
    # The next fit follows the new boundary and records the plan number.
    later = services.run_fit(fit_id=services.request_fit(study=graded, trigger="manual").pk)
    assert later.summary["plan"] == 1 and later.summary["label_budget"] == 2000
    assert "required_z_nogo" in later.summary["candidates"][0]["dimensions"][0]
    assert replans.current_designs(graded)[0] == 1


def test_after_a_replan_the_forecast_reads_the_new_boundary(graded, admin_user):
    """The pair page's forecast takes each cell's boundary levels from the summary, which
    carries the re-plan's designs (not the original plan's)."""
    from calibration import dashboards

    replans.replan(
        study=graded, user=admin_user, label_budget=2000, confidence=0.95, audit_share=0.1,
        margins={}, reason="Budget doubled by the product team",
    )  # fmt: skip
    graded.refresh_from_db()
    later = services.run_fit(fit_id=services.request_fit(study=graded, trigger="manual").pk)
    _, designs = replans.current_designs(graded)
    original = Design.initial(graded.confidence).level
    checked = 0
    for cand in later.summary["candidates"]:
        for cell in cand["dimensions"]:
            go, nogo = designs[(cand["arm"], cell["dimension"])]
            if cell["fraction"] <= 0 or cell["required_z"] is None:
                continue
            levels = dashboards.boundary_levels(cell, graded.confidence)
            assert levels == pytest.approx((go.level, nogo.level))
            assert levels != pytest.approx((original, original))
            checked += 1
    assert checked


def test_a_replan_needs_a_reason_and_a_change(graded, admin_user):
    with pytest.raises(replans.PlanError, match="why"):
        replans.replan(study=graded, user=admin_user, label_budget=5, confidence=0.95,
                       audit_share=0.1, margins={}, reason=" ")  # fmt: skip
    with pytest.raises(replans.PlanError, match="Nothing changes"):
        replans.replan(study=graded, user=admin_user, label_budget=graded.label_budget,
                       confidence=graded.confidence, audit_share=graded.audit_share,
                       margins={}, reason="no-op")  # fmt: skip
    assert not Replan.objects.exists()


def test_the_replan_page_asks_for_confirmation_and_the_report_lists_it(
    client, graded, admin_user, lead
):
    url = reverse("calibration-replan", kwargs={"slug": graded.slug})
    data = {"label_budget": 50, "confidence": 0.95, "audit_share": 0.1,
            "margin_correctness": 0.02, "margin_refusal": 0.02, "margin_style": 0.02,
            "reason": "Cut the budget"}  # fmt: skip
    client.force_login(lead)
    assert client.get(url).status_code == 200  # leads read the plan
    assert client.post(url, {**data, "confirm": "on"}).status_code == 403
    client.force_login(admin_user)
    r = client.post(url, data)  # no confirmation
    assert r.status_code == 200 and b"Confirm the re-plan" in r.content
    assert not Replan.objects.exists()
    r = client.post(url, {**data, "confirm": "on"})
    assert r.status_code == 302
    assert Replan.objects.get().after["label_budget"] == 50
    html = client.get(reverse("calibration-report", kwargs={"slug": graded.slug})).content
    assert b"Re-plan 1" in html and b"Cut the budget" in html and b"1000 \xe2\x86\x92 50" in html


def test_the_django_admin_shows_the_frozen_plan_read_only(graded, rf, django_user_model):
    from django.contrib import admin

    from annotate.models import Study as StudyModel

    su = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    request = rf.get("/")
    request.user = su
    study_admin = admin.site._registry[StudyModel]
    assert {"label_budget", "confidence", "audit_share"} <= set(
        study_admin.get_readonly_fields(request, graded)
    )
    dim_admin = admin.site._registry[Dimension]
    dim = Dimension.objects.filter(study=graded).first()
    assert "margin" in dim_admin.get_readonly_fields(request, dim)
    fresh = StudyModel.objects.create(name="New", slug="new-one")
    assert "label_budget" not in study_admin.get_readonly_fields(request, fresh)
