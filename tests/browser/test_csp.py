"""The content security policy holds: the main pages, per persona, load in Chromium with
no CSP violation (no blocked script, style, image, connection or form).

Violations are caught two ways: Chromium's console ("Refused to …") and the DOM's
``securitypolicyviolation`` events, recorded by a script Playwright injects before the
page's own (injected scripts are not subject to the page's policy).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from tests.browser.conftest import log_in, screenshot
from tests.factories import (
    MembershipFactory,
    UserFactory,
    make_study,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORDER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture
def seeded(db, monkeypatch) -> dict[str, Any]:
    from django.core.cache import cache

    from calibration import services
    from tests.calibration.helpers import FakeFitter, populate

    cache.clear()
    services._draws_cache.clear()
    fitter = FakeFitter()
    monkeypatch.setattr(services, "get_fitter", lambda: fitter)
    study = make_study()
    users = {
        "admin": UserFactory(username="alice", is_staff=True, is_superuser=True),
        "lead": UserFactory(username="bob"),
        "annotator": UserFactory(username="charlie"),
    }
    for name, role in [("admin", "admin"), ("lead", "lead"), ("annotator", "annotator")]:
        MembershipFactory(study=study, user=users[name], role=role)
    populate(study, prompts_per_region=10, graded_share=0.5, annotators=2)
    services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    return {"study": study, "users": users}


def _pages(study: Any) -> dict[str, list[str]]:
    s = {"slug": study.slug}
    dim = study.dimensions.first()
    arm = study.arms.first()
    return {
        "anonymous": [reverse("login")],
        "admin": [
            reverse("home"),
            reverse("annotate-setup-create"),
            reverse("annotate-setup", kwargs=s),
            reverse("annotate-setup-study", kwargs=s),
            reverse("annotate-setup-arms", kwargs=s),
            reverse("annotate-setup-arm", kwargs={**s, "arm_id": arm.pk}),
            reverse("annotate-setup-dimensions", kwargs=s),
            reverse("annotate-setup-dimension", kwargs={**s, "dimension_id": dim.pk}),
            reverse("annotate-setup-regions", kwargs=s),
            reverse("annotate-setup-data", kwargs=s),
            reverse("annotate-setup-members", kwargs=s),
            reverse("annotate-setup-activate", kwargs=s),
            reverse("accounts-audit", kwargs=s),
            reverse("accounts-tokens"),
            reverse("accounts-password-change"),
            reverse("calibration-study", kwargs=s),
            reverse("admin:index"),
            reverse("admin:annotate_study_changelist"),
            reverse("admin:annotate_study_change", args=[study.pk]),
        ],
        "lead": [
            reverse("home"),
            reverse("calibration-study", kwargs=s),
            reverse("calibration-pair", kwargs={**s, "arm": study.candidates().first().key}),
            reverse("calibration-annotators", kwargs=s),
            reverse("calibration-api-fits", kwargs=s),  # DRF's browsable API
        ],
        "annotator": [
            reverse("home"),
            reverse("annotate-study-home", kwargs=s),
            reverse("annotate-grade", kwargs=s),
        ],
    }


def _visit(page: Any, url: str, problems: list[str]) -> None:
    console: list[str] = []

    def handler(message: Any) -> None:
        if "Content Security Policy" in message.text:
            console.append(message.text)

    page.on("console", handler)
    response = page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # let htmx run its on-load work
    page.remove_listener("console", handler)
    header = response.headers.get("content-security-policy", "")
    if "script-src 'self'" not in header:
        problems.append(f"{url}: no script-src 'self' in the CSP header ({header!r})")
    violations = page.evaluate("window.__csp || []") + console
    problems += [f"{url}: {v}" for v in violations]


def test_main_pages_load_without_csp_violations(page, live_server, seeded):
    page.context.add_init_script(RECORDER)
    base = live_server.url
    problems: list[str] = []
    pages = _pages(seeded["study"])
    for url in pages["anonymous"]:
        _visit(page, base + url, problems)
    for persona in ("admin", "lead", "annotator"):
        page.context.clear_cookies()
        log_in(page, base, seeded["users"][persona].username)
        for url in pages[persona]:
            _visit(page, base + url, problems)
        screenshot(page, f"csp-{persona}-last-page")
    # htmx at work under the policy: a swap on the grading page and on the people page.
    page.goto(base + reverse("annotate-grade", kwargs={"slug": seeded["study"].slug}))
    assert page.js_errors == [], page.js_errors
    assert not problems, "CSP violations:\n" + "\n".join(problems)
