"""An admin takes a study from nothing to active in the browser, without the Django admin."""

from __future__ import annotations

import json
from io import BytesIO

import pytest

from annotate.models import Study
from tests.browser.conftest import log_in, screenshot
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _interactions(n: int) -> BytesIO:
    lines = []
    for i in range(n):
        lines.append(
            {
                "id": f"q{i}",
                "region": "eu" if i % 3 else "us",
                "prompt": f"Question {i}?",
                "responses": {
                    arm: {"text": f"Answer {i} by {arm}.", "scores": {"correctness": i % 2}}
                    for arm in ("inc", "cand1")
                },
            }
        )
    return BytesIO("".join(json.dumps(x) + "\n" for x in lines).encode())


def test_admin_sets_up_a_study_from_nothing_to_active(page, live_server, monkeypatch):
    from annotate.imports.importing import import_file
    from annotate.setup import services as setup_services

    refits = []
    monkeypatch.setattr(setup_services, "request_refit", lambda **kw: refits.append(kw))
    UserFactory(username="alice", is_staff=True)
    UserFactory(username="dora")
    base = live_server.url
    log_in(page, base, "alice")

    page.click("text=New study")
    page.fill("#id_name", "Support bot v2")
    page.fill("#id_slug", "support-v2")
    page.fill("#id_description", "Can nova-1 replace acme-large-1?")
    page.click("button:has-text('Create the study')")
    page.wait_for_url(f"{base}/studies/support-v2/setup/")
    assert page.locator("#step-arms").inner_text().count("missing") == 1
    screenshot(page, "setup-1-checklist-empty")

    page.click("nav.setup-nav >> text=Arms")
    for key, model, role in [
        ("inc", "acme-large-1", "incumbent"),
        ("cand1", "nova-1", "candidate"),
    ]:
        page.fill("#id_key", key)
        page.fill("#id_model_name", model)
        page.select_option("#id_role", role)
        page.click("button:has-text('Add')")
        page.wait_for_load_state()
    assert "nova-1" in page.content()
    screenshot(page, "setup-2-arms")

    page.click("nav.setup-nav >> text=Dimensions")
    page.click("text=Add a dimension")
    page.fill("#id_key", "correctness")
    page.fill("#id_title", "Correctness")
    page.fill("#id_rubric", "Is every fact right?")
    page.fill("#id_point_descriptions_text", "Wrong\nRight")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"{base}/studies/support-v2/setup/dimensions/")
    screenshot(page, "setup-3-dimensions")

    page.click("nav.setup-nav >> text=Regions")
    page.fill("#id_form-0-key", "eu")
    page.fill("#id_form-0-name", "Europe")
    page.fill("#id_form-0-traffic_share", "0.6")
    page.click("button:has-text('Add a region')")
    page.fill("#id_form-1-key", "us")
    page.fill("#id_form-1-name", "United States")
    page.fill("#id_form-1-traffic_share", "0.3")
    page.locator("#share-total", has_text="0.9").wait_for()  # live sum, through htmx
    page.click("button:has-text('Save regions')")
    page.locator("text=Traffic shares sum to 0.9; they must sum to 1").wait_for()
    screenshot(page, "setup-4-regions-refused")
    page.fill("#id_form-1-traffic_share", "0.4")
    page.click("button:has-text('Save regions')")
    page.wait_for_url(f"{base}/studies/support-v2/setup/regions/")
    page.locator("text=Regions saved").wait_for()

    page.click("nav.setup-nav >> text=People")
    page.fill("#id_username", "dora")
    page.select_option("#id_role", "annotator")
    page.click("#members button:has-text('Save')")
    page.locator("#members td", has_text="dora").wait_for()  # swapped in by htmx
    screenshot(page, "setup-5-people")

    page.click("nav.setup-nav >> text=Activate")
    assert "No data" in page.content()
    study = Study.objects.get(slug="support-v2")
    import_file(_interactions(30), study=study, filename="interactions.jsonl")
    page.reload()
    page.click("button:has-text('Activate the study')")
    page.wait_for_url(f"{base}/studies/support-v2/setup/")
    assert "is active" in page.content()
    screenshot(page, "setup-6-active")
    study.refresh_from_db()
    assert study.status == Study.Status.ACTIVE

    # A change the fit depends on, on the active study: confirm, then a refit is asked for.
    page.click("nav.setup-nav >> text=Dimensions")
    page.click("td >> text=Edit")
    page.fill("#id_margin", "0.05")
    page.click("button:has-text('Save')")
    page.locator("#changes", has_text="0.05").wait_for()
    screenshot(page, "setup-7-confirm")
    page.click("button:has-text('Confirm and refit')")
    page.locator("text=a refit was requested").wait_for()
    assert len(refits) == 1
    assert study.dimensions.get().margin == 0.05
    page.click("nav.setup-nav >> text=Audit log")
    assert "0.02 → 0.05" in page.content()
    screenshot(page, "setup-8-audit")
    assert page.js_errors == []
