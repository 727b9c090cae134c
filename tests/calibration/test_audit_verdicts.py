"""The audit in the app: its Δ in every fit summary, and a go it does not confirm is held."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from annotate.models import Annotation, Assignment, Dimension, Study
from calibration import audit_data, dashboards, services
from calibration.bayes.audit import AuditEstimate
from tests.calibration.helpers import populate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    services._draws_cache.clear()
    yield
    cache.clear()


def _fit(study):
    return services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)


def _clear_go(study: Study) -> None:
    """Wide margins and a budget the grades nearly reach: the fake fits give go verdicts."""
    populate(study, prompts_per_region=40, graded_share=0.5)
    graded = Annotation.objects.filter(study=study).values("response_id").distinct().count()
    Study.objects.filter(pk=study.pk).update(label_budget=graded + 4, audit_share=0.1)
    Dimension.objects.filter(study=study).update(margin=0.5)
    study.refresh_from_db()


def _audit_all_graded(study: Study) -> None:
    now = timezone.now()
    user = Annotation.objects.filter(study=study).first().annotator
    for rid in Annotation.objects.filter(study=study).values_list("response_id", flat=True):
        Assignment.objects.create(
            study=study, response_id=rid, annotator=user, policy=Assignment.Policy.AUDIT,
            probability=0.01, leased_at=now, expires_at=now + timezone.timedelta(seconds=1),
            completed_at=now,
        )  # fmt: skip


def test_each_summary_carries_the_audit_estimate_beside_the_model(study, lead, fake_fitter):
    from rest_framework.test import APIClient

    _clear_go(study)
    _audit_all_graded(study)
    fit = _fit(study)
    cell = fit.summary["candidates"][0]["dimensions"][0]
    assert cell["audit"] is not None and cell["audit"]["n"] > 0
    assert cell["audit"]["lower"] < cell["audit"]["mean"] < cell["audit"]["upper"]
    assert cell["audit_agrees"] in (True, False)
    assert cell["verdict"] == ("go" if cell["audit_agrees"] else "held")
    api = APIClient()
    api.force_authenticate(lead)
    url = reverse("calibration-api-posterior", kwargs={"slug": study.slug})
    served = api.get(url).json()["candidates"][0]["dimensions"][0]
    assert served["audit"]["n"] == cell["audit"]["n"]
    assert served["audit_agrees"] == cell["audit_agrees"]


def test_a_go_the_audit_disagrees_with_is_held_in_words(client, study, lead, fake_fitter,
                                                         monkeypatch):  # fmt: skip
    _clear_go(study)
    far = AuditEstimate(mean=-0.45, se=0.01, lower=-0.47, upper=-0.43, n=40)
    monkeypatch.setattr(
        audit_data, "audit_estimates", lambda *, study, weights: dict.fromkeys(
            [(c, d) for c in ("cand1", "cand2") for d in ("correctness", "refusal", "style")],
            far,
        ),
    )  # fmt: skip
    fit = _fit(study)
    cells = [d for c in fit.summary["candidates"] for d in c["dimensions"]]
    assert {d["verdict"] for d in cells} == {"held"}
    assert {c["verdict"] for c in fit.summary["candidates"]} == {"held"}
    # Held is open: the queue keeps grading (the audit and the model need more grades).
    from calibration.selection import selection_status

    assert selection_status(study=study)[0] is True
    client.force_login(lead)
    for url in (
        reverse("calibration-study", kwargs={"slug": study.slug}),
        reverse("calibration-pair", kwargs={"slug": study.slug, "arm": "cand1"}),
        reverse("calibration-report", kwargs={"slug": study.slug}),
    ):
        html = client.get(url).content.decode()
        assert "held: the model and the audit disagree" in html.lower(), url
        assert "Audit (uniform sample, 40 grades)" in html and "\u221245.0" in html, url
    m = dashboards.decision_matrix(fit)
    assert m["recommendation"]["level"] == "held"


def test_without_audit_grades_a_go_is_held_for_want_of_a_check(study, fake_fitter):
    _clear_go(study)
    fit = _fit(study)
    cell = fit.summary["candidates"][0]["dimensions"][0]
    assert cell["audit"] is None and cell["verdict"] == "held"
    assert dashboards.held_reason(cell) == "held: too few audit grades to check the model's go"
    Study.objects.filter(pk=study.pk).update(audit_share=0)  # no audit planned: no check
    study.refresh_from_db()
    assert _fit(study).summary["candidates"][0]["dimensions"][0]["verdict"] == "go"


def test_the_audit_line_says_when_a_thinly_audited_model_had_its_regions_pooled():
    pooled = AuditEstimate(mean=-0.01, se=0.1, lower=-0.21, upper=0.19, n=12, method="pooled")
    text = dashboards.audit_text({"audit": pooled.to_dict(), "audit_agrees": True})
    assert text is not None
    assert "12 grades, regions pooled in a thinly audited model)" in text and "agrees" in text
    plain = dashboards.audit_text({"audit": {**pooled.to_dict(), "method": "stratified"}})
    assert plain is not None and "pooled" not in plain
