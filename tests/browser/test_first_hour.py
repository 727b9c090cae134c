"""Issue 14 in a real browser: what stopped a new user's first hour, each flow as a user
would go through it (navigation by role, regions in one pass, the grading page)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from annotate.models import Membership, Study
from tests.browser.conftest import log_in, screenshot
from tests.factories import MembershipFactory, StudyFactory, UserFactory, make_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_lands_on_the_dashboard_and_an_admin_moves_between_setup_and_dashboard(
    page, live_server
):
    study = make_study()
    lead = UserFactory(username="bob")
    MembershipFactory(study=study, user=lead, role=Membership.Role.LEAD)
    admin = UserFactory(username="alice", is_staff=True)
    MembershipFactory(study=study, user=admin, role=Membership.Role.ADMIN)
    base = live_server.url

    log_in(page, base, "bob")
    assert page.url == f"{base}/studies/{study.slug}/"
    page.locator("nav.study-nav a[aria-current=page]", has_text="Dashboard").wait_for()
    assert page.locator("nav.study-nav >> text=Setup").count() == 0
    screenshot(page, "first-hour-1-lead-dashboard")
    page.click("text=Log out")

    log_in(page, base, "alice")
    assert page.url == f"{base}/studies/{study.slug}/"
    page.click("text=Baton")
    page.click(f"#study-{study.slug} >> text=Set up")
    page.wait_for_url(f"{base}/studies/{study.slug}/setup/")
    page.click("nav.study-nav >> text=Dashboard")
    page.wait_for_url(f"{base}/studies/{study.slug}/")
    page.click("nav.study-nav >> text=Annotators")
    page.click("nav.study-nav >> text=Setup")
    page.wait_for_url(f"{base}/studies/{study.slug}/setup/")
    screenshot(page, "first-hour-2-admin-setup-with-study-nav")
    assert page.js_errors == []


def test_five_regions_are_set_up_in_one_save_with_rows_added_and_removed(page, live_server):
    admin = UserFactory(username="alice", is_staff=True)
    study = StudyFactory(slug="fresh", name="Fresh", status=Study.Status.DRAFT)
    MembershipFactory(study=study, user=admin, role=Membership.Role.ADMIN)
    base = live_server.url
    log_in(page, base, "alice")
    page.goto(f"{base}/studies/fresh/setup/regions/")
    rows = [("na", "0.4"), ("eu", "0.3"), ("oops", "0.5"), ("uk", "0.1"), ("latam", "0.1"),
            ("mena", "0.1")]  # fmt: skip
    for i, (key, share) in enumerate(rows):
        if i:
            page.click("button:has-text('Add a region')")
        page.fill(f"#id_form-{i}-key", key)
        page.fill(f"#id_form-{i}-name", key.upper())
        page.fill(f"#id_form-{i}-traffic_share", share)
    page.locator("#share-total", has_text="1.5").wait_for()
    page.locator("tr.region-row", has=page.locator("#id_form-2-key")).locator("text=Remove").click()
    page.wait_for_function(
        "() => document.querySelector('#share-total strong')?.textContent === '1'"
    )
    screenshot(page, "first-hour-3-regions-five-rows")
    page.click("button:has-text('Save regions')")
    page.locator("text=Regions saved").wait_for()
    assert page.url == f"{base}/studies/fresh/setup/regions/"
    shares = dict(study.regions.values_list("key", "traffic_share"))
    assert shares == {
        "na": Decimal("0.4"),
        "eu": Decimal("0.3"),
        "uk": Decimal("0.1"),
        "latam": Decimal("0.1"),
        "mena": Decimal("0.1"),
    }
    assert page.js_errors == []
