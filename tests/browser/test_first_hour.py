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


def _annotator_with_items(texts: list[str]) -> Study:
    from tests.browser.test_grading import add_items

    study = make_study()
    study.instructions = "Policy sheet:\n" + "\n".join(f"- Rule {i}." for i in range(37))
    study.save()
    study.dimensions.filter(key="correctness").update(rubric="Is every fact right?")
    add_items(study, texts)
    annotator = UserFactory(username="charlie")
    MembershipFactory(study=study, user=annotator, role=Membership.Role.ANNOTATOR)
    return study


def _in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_the_grades_stay_on_screen_pgdn_scrolls_the_response_and_guidelines_stay_closed(
    page, live_server
):
    long = "\n".join(f"Line {i} of a very long answer." for i in range(200))
    study = _annotator_with_items([long] * 3)
    base = live_server.url
    log_in(page, base, "charlie")
    page.goto(f"{base}/studies/{study.slug}/grade/")
    page.locator("#grade-form").wait_for()
    # Every grade control is on screen, above the 37-line policy sheet.
    for dim in ("correctness", "refusal", "style"):
        assert _in_viewport(page, f"#dim-{dim} .choices"), dim
    assert "1–5" in page.locator(".grade-keys").inner_text()
    assert "1–9" not in page.locator(".grade-keys").inner_text()
    screenshot(page, "first-hour-4-grading-long-response")

    text = page.locator(".grade-grid > .grade-text")
    assert text.evaluate("el => el.scrollTop") == 0
    page.keyboard.press("PageDown")
    page.wait_for_function(
        "() => document.querySelector('.grade-grid > .grade-text').scrollTop > 100"
    )
    assert _in_viewport(page, "#dim-correctness .choices")  # the grades did not move
    page.keyboard.press("PageUp")
    page.wait_for_function(
        "() => document.querySelector('.grade-grid > .grade-text').scrollTop === 0"
    )

    # g closes the guidelines (and each rubric); the choice survives a reload.
    assert page.locator("#dim-correctness .rubric").is_visible()
    page.keyboard.press("g")
    assert not page.locator("#guidelines").evaluate("el => el.open")
    assert not page.locator("#dim-correctness .rubric").is_visible()
    page.reload()
    page.locator("#grade-form").wait_for()
    assert not page.locator("#guidelines").evaluate("el => el.open")
    assert not page.locator("#dim-correctness .rubric").is_visible()
    screenshot(page, "first-hour-5-grading-guidelines-closed")
    assert page.js_errors == []


def test_the_fit_time_on_the_dashboard_keeps_advancing_on_a_page_left_open(
    page, live_server, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    from calibration import services
    from calibration.models import Fit
    from tests.calibration.helpers import FakeFitter, populate

    monkeypatch.setattr(services, "get_fitter", lambda: FakeFitter())
    study = make_study()
    lead = UserFactory(username="bob")
    MembershipFactory(study=study, user=lead, role=Membership.Role.LEAD)
    populate(study, prompts_per_region=4, graded_share=0.5, annotators=1)
    # Outside a test transaction, the immediate task backend runs the fit on commit.
    services.request_fit(study=study, trigger="manual")
    fit = Fit.objects.get(study=study, status=Fit.Status.SUCCEEDED)
    Fit.objects.filter(pk=fit.pk).update(finished_at=timezone.now() - timedelta(minutes=5))

    page.clock.install()
    log_in(page, live_server.url, "bob")
    when = page.locator("#decision time[data-relative]")
    assert when.inner_text() == "5 minutes ago"
    page.clock.fast_forward("10:00")
    page.wait_for_function(
        "() => document.querySelector('#decision time').textContent === '15 minutes ago'"
    )
    assert "fit 1," in page.locator(".fit-line").inner_text()
    screenshot(page, "first-hour-6-dashboard-relative-time")


def test_an_admin_creates_an_annotator_who_sets_a_password_from_the_link_and_grades(
    new_page, live_server
):
    study = make_study()
    admin = UserFactory(username="alice", is_staff=True)
    MembershipFactory(study=study, user=admin, role=Membership.Role.ADMIN)
    base = live_server.url
    page = new_page()
    log_in(page, base, "alice")
    page.goto(f"{base}/studies/{study.slug}/setup/people/")
    page.fill("#id_new-new_username", "erin")
    page.select_option("#id_new-new_role", "annotator")
    page.click("button:has-text('Create and get the link')")
    link = page.locator("#set-password-url").input_value()  # swapped in by htmx
    assert "/accounts/set-password/" in link
    assert page.locator("#members td", has_text="no password yet").count() == 1
    screenshot(page, "first-hour-7-people-created-with-link")

    erin = new_page()  # another browser profile: erin's
    erin.goto(link)
    erin.locator("text=Choose your password").wait_for()
    erin.fill("#id_new_password1", "a long new passphrase")
    erin.fill("#id_new_password2", "a long new passphrase")
    erin.click("button:has-text('Set my password')")
    erin.wait_for_url(f"{base}/")
    erin.locator("text=Your password is set").wait_for()
    assert erin.locator(f"a[href='/studies/{study.slug}/annotate/']").count() == 1
    screenshot(erin, "first-hour-8-new-annotator-home")
    assert page.js_errors == [] and erin.js_errors == []


def _checked(page, dim: str) -> str | None:
    return page.evaluate(
        "d => { const r = document.querySelector(`input[name='label-${d}']:checked`);"
        " return r ? r.value : null; }",
        dim,
    )


def test_work_is_kept_drafts_survive_a_reload_keys_typed_ahead_are_queued_and_answers_corrected(
    page, live_server, monkeypatch
):
    import time

    from annotate.grading import queue
    from annotate.models import Annotation
    from tests.browser.test_grading import shown, wait_next

    study = _annotator_with_items([f"Answer {i}." for i in range(6)])
    base = live_server.url
    log_in(page, base, "charlie")
    page.goto(f"{base}/studies/{study.slug}/grade/")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")

    # A digit off the scale is said, not ignored.
    page.keyboard.press("7")
    page.locator("#grade-status", has_text="7 is not a grade for Correctness").wait_for()

    # A partial grade and a comment survive a reload.
    first = shown(page)
    page.keyboard.press("1")
    page.keyboard.press("c")
    page.keyboard.type("Half done")
    page.reload()
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    assert shown(page) == first
    assert _checked(page, "correctness") == "1"
    assert page.locator("#grade-comment").input_value() == "Half done"
    page.locator("#grade-status", has_text="unsent grades").wait_for()
    screenshot(page, "first-hour-9-draft-restored")

    # Keys typed while the submit is in flight land on the next item.
    real_submit = queue.submit_annotation

    def slow_submit(**kwargs):
        time.sleep(0.6)
        return real_submit(**kwargs)

    monkeypatch.setattr(queue, "submit_annotation", slow_submit)
    page.locator("#grade-comment").press("Escape")
    for key in ("0", "4", "Enter", "0", "1", "5"):
        page.keyboard.press(key)
    wait_next(page, first)
    page.wait_for_function(
        "() => document.querySelector(\"input[name='label-style']:checked\")?.value === '5'"
    )
    assert (_checked(page, "correctness"), _checked(page, "refusal")) == ("0", "1")
    monkeypatch.setattr(queue, "submit_annotation", real_submit)
    first_answer = Annotation.objects.get(annotator__username="charlie")
    assert first_answer.comment == "Half done"

    # The first answer is in my history; reopen it, change correctness, save.
    page.keyboard.press("h")
    page.locator("#history[open] a[data-role=correct]").first.wait_for()
    screenshot(page, "first-hour-10-history")
    page.locator("#history a[data-role=correct]").first.click()
    page.wait_for_url(f"**/grade/answers/{first_answer.pk}/")
    page.wait_for_selector("#grade-form fieldset.dim input:focus")
    page.keyboard.press("0")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/studies/{study.slug}/grade/")
    page.locator("text=Corrected").wait_for()
    live = Annotation.objects.filter(response=first_answer.response, undone_at=None)
    (corrected,) = live
    assert {lab.dimension.key: lab.value for lab in corrected.labels.all()} == {
        "correctness": 0,
        "refusal": 0,
        "style": 4,
    }
    assert page.js_errors == []
