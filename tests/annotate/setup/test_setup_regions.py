"""Regions in one pass (issue 14, item 2): any number of rows per save, only the final set
must sum to 1, the page stays on the regions, and shares can be suggested from the data."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from annotate.models import Membership, Region, Study
from annotate.setup.forms import suggested_shares
from tests.factories import MembershipFactory, PromptFactory, StudyFactory

pytestmark = pytest.mark.django_db

FIVE = [("na", "0.4"), ("eu", "0.3"), ("uk", "0.1"), ("latam", "0.1"), ("mena", "0.1")]


@pytest.fixture
def draft(admin_user) -> Study:
    study = StudyFactory(slug="draft-study", name="Draft", status=Study.Status.DRAFT)
    MembershipFactory(study=study, user=admin_user, role=Membership.Role.ADMIN)
    return study


def regions_url(study: Study) -> str:
    return reverse("annotate-setup-regions", kwargs={"slug": study.slug})


def rows(new: list[tuple[str, str]], existing: list[tuple[Region, str, bool]] = ()) -> dict:
    data = {
        "form-TOTAL_FORMS": str(len(existing) + len(new)),
        "form-INITIAL_FORMS": str(len(existing)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
    }
    for i, (region, share, delete) in enumerate(existing):
        data |= {
            f"form-{i}-id": str(region.pk),
            f"form-{i}-key": region.key,
            f"form-{i}-name": region.name,
            f"form-{i}-traffic_share": share,
            f"form-{i}-position": str(region.position),
        }
        if delete:
            data[f"form-{i}-DELETE"] = "on"
    for j, (key, share) in enumerate(new, start=len(existing)):
        data |= {
            f"form-{j}-id": "",
            f"form-{j}-key": key,
            f"form-{j}-name": key.upper(),
            f"form-{j}-traffic_share": share,
            f"form-{j}-position": "",
        }
    return data


def test_five_regions_are_saved_at_once_and_the_page_stays_on_the_regions(
    client, admin_user, draft
):
    client.force_login(admin_user)
    r = client.post(regions_url(draft), rows(FIVE))
    assert r.status_code == 302 and r["Location"] == regions_url(draft)
    assert list(draft.regions.order_by("position").values_list("key", flat=True)) == [
        k for k, _ in FIVE
    ]


def test_a_new_study_shows_one_blank_region_row_and_an_add_button(client, admin_user, draft):
    client.force_login(admin_user)
    html = client.get(regions_url(draft)).content.decode()
    assert 'name="form-TOTAL_FORMS" value="1"' in html
    assert 'data-action="add-row"' in html and "__prefix__" in html


def test_only_the_final_set_must_sum_to_one(client, admin_user, study):
    client.force_login(admin_user)
    eu, us = study.regions.order_by("position")
    # Remove us (0.4) and split its share over two new regions: the intermediate state
    # (eu alone, 0.6) never has to be saved.
    data = rows([("uk", "0.1"), ("latam", "0.3")], [(eu, "0.6", False), (us, "0.4", True)])
    data["confirmed"] = "1"
    r = client.post(regions_url(study), data)
    assert r.status_code == 302, r.context["formset"].non_form_errors()
    assert sorted(study.regions.values_list("key", flat=True)) == ["eu", "latam", "uk"]


def test_shares_are_suggested_from_the_prompts_per_region(client, admin_user, draft):
    a = Region.objects.create(study=draft, key="a", name="A", traffic_share=Decimal("0.5"))
    b = Region.objects.create(study=draft, key="b", name="B", traffic_share=Decimal("0.5"))
    for i in range(3):
        PromptFactory(study=draft, region=a, external_id=f"a{i}")
    PromptFactory(study=draft, region=b, external_id="b0")
    client.force_login(admin_user)
    html = client.get(regions_url(draft) + "?suggest=1").content.decode()
    assert 'value="0.750000"' in html and 'value="0.250000"' in html


def test_suggested_shares_sum_to_exactly_one():
    shares = suggested_shares([1, 1, 1])
    assert sum(shares) == 1 and shares[0] == Decimal("0.333334")
    assert suggested_shares([0, 0]) == []
