"""The lead's dashboards in Chromium: the live matrix, the pair page's charts, the offline
report. Screenshots go to test-output/screenshots/dashboard_*.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from calibration import services
from calibration.models import Fit
from tests.browser.conftest import log_in, screenshot
from tests.calibration.helpers import FakeFitter, populate
from tests.factories import MembershipFactory, UserFactory, make_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fitted(monkeypatch) -> dict[str, Any]:
    cache.clear()
    services._draws_cache.clear()  # keyed by fit id; ids repeat across tests
    fitter = FakeFitter()
    monkeypatch.setattr(services, "get_fitter", lambda: fitter)
    study = make_study()
    lead = UserFactory(username="bob")
    MembershipFactory(study=study, user=lead, role="lead")
    populate(study, prompts_per_region=10, graded_share=0.5, annotators=2)
    # Outside a test transaction the immediate task backend runs the fit on commit;
    # fit_now returns it either way.
    fit = services.fit_now(study=study)
    assert fit.status == Fit.Status.SUCCEEDED
    return {"study": study, "lead": lead, "fit": fit}


def _newer_fit(fit: Fit) -> Fit:
    """What a worker landing a fit does: a newer succeeded fit, here every verdict a go."""
    summary = fit.summary
    for cand in summary["candidates"]:
        cand["verdict"] = "go"
        for d in cand["dimensions"]:
            d["verdict"] = "go"
            d["p_noninferior"] = 0.99
    copy = Fit.objects.get(pk=fit.pk)
    copy.pk = None
    copy.summary = summary
    copy.n_labels = fit.n_labels + 37
    copy.finished_at = timezone.now()
    copy.save()
    return copy


def test_overview_shows_the_matrix_and_swaps_it_when_a_fit_lands(page, live_server, fitted):
    study, fit = fitted["study"], fitted["fit"]
    log_in(page, live_server.url, "bob")
    page.goto(live_server.url + reverse("calibration-study", kwargs={"slug": study.slug}))
    matrix = page.locator("table.decision-matrix")
    matrix.wait_for()
    assert matrix.locator("tbody tr").count() == 2
    assert matrix.locator("td.cell").count() == 8
    assert page.locator("#decision").get_attribute("data-fit") == str(fit.pk)
    screenshot(page, "dashboard_overview")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    newer = _newer_fit(fit)
    page.locator(f'#decision[data-fit="{newer.pk}"]').wait_for(timeout=20_000)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    assert page.locator("table.decision-matrix td.cell-go").count() == 8
    assert f"{newer.n_labels} graded responses" in page.locator("#decision").inner_text()
    assert "can replace" in page.locator(".recommendation").inner_text()
    screenshot(page, "dashboard_overview_after_new_fit")
    assert not page.js_errors


# The policy the site is moving to (tests/accounts/test_csp.py), without nonces: the pair
# page must draw under it with no inline script and no inline style of its own.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'"
)
RECORD_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));
"""


def test_pair_page_draws_its_charts_and_links_the_annotators_page(page, live_server, fitted):
    study = fitted["study"]
    log_in(page, live_server.url, "bob")
    url = reverse("calibration-pair", kwargs={"slug": study.slug, "arm": "cand1"})

    def with_strict_csp(route: Any) -> None:
        response = route.fetch()
        route.fulfill(
            response=response,
            headers={**response.headers, "content-security-policy": STRICT_CSP},
        )

    page.route(live_server.url + url, with_strict_csp)
    page.add_init_script(RECORD_CSP)
    page.goto(live_server.url + url)
    charts = page.locator("[data-chart-spec]")
    n = charts.count()
    assert n == 3 * 3  # density, forest, judge per dimension (one fit: no history yet)
    page.wait_for_function(
        f"document.querySelectorAll('[data-drawn=\"yes\"]').length === {n}", timeout=30_000
    )
    assert page.locator("[data-chart-spec] svg.main-svg").count() >= n
    assert page.locator("#chart-correctness-density .scatterlayer path").count() > 0
    page.locator("#chart-correctness-density").hover()  # the mode bar shows on hover
    page.wait_for_timeout(300)
    screenshot(page, "dashboard_pair")
    assert not page.js_errors
    # htmx's own indicator style needs the site's nonce (not injected here): not ours.
    violations = [v for v in page.evaluate("window.__csp") if "htmx" not in v]
    assert not violations, violations

    page.get_by_role("link", name="Annotators").click()
    page.get_by_role("heading", name="Agreement per pair of annotators").wait_for()
    assert "support-bot-grader0 · support-bot-grader1" in page.content()
    screenshot(page, "dashboard_annotators")


def test_report_downloads_and_opens_offline(page, live_server, fitted, chromium, tmp_path):
    study = fitted["study"]
    log_in(page, live_server.url, "bob")
    page.goto(live_server.url + reverse("calibration-study", kwargs={"slug": study.slug}))
    with page.expect_download() as info:
        page.get_by_role("link", name="Report (self-contained HTML)").click()
    path = Path(tmp_path) / info.value.suggested_filename
    info.value.save_as(path)
    assert 1_000_000 < path.stat().st_size <= 2_000_000  # plotly.js is inside, gzipped

    offline = chromium.new_context(viewport={"width": 1280, "height": 860}, offline=True)
    try:
        report = offline.new_page()
        requested: list[str] = []

        def block(route: Any) -> None:
            if not route.request.url.startswith("file:"):
                requested.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        offline.route("**/*", block)
        errors: list[str] = []
        report.on("pageerror", lambda exc: errors.append(str(exc)))
        report.goto(path.as_uri())
        report.wait_for_function(
            "document.querySelectorAll('.plotly-graph-div .main-svg').length >= 18",
            timeout=30_000,
        )
        assert report.locator("h1").inner_text().startswith(study.name)
        assert not requested, f"the report asked the network for {requested}"
        assert not errors, errors
        screenshot(report, "dashboard_report_offline")
    finally:
        offline.close()
