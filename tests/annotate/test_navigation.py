"""Navigation follows the role (issue 14, item 1): leads reach the dashboard from the home
page and after logging in, admins reach setup and dashboard from each other, and every page
of a study carries the same study bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from annotate.models import Membership, Study
from tests.factories import MembershipFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "README.md"


def url(name: str, study: Study, **kwargs) -> str:
    return reverse(name, kwargs={"slug": study.slug, **kwargs})


def study_nav(html: str) -> str:
    start = html.index('<nav class="study-nav"')
    return html[start : html.index("</nav>", start)]


def test_home_links_each_study_a_lead_follows_to_its_dashboard(client, lead, study):
    client.force_login(lead)
    html = client.get(reverse("home")).content.decode()
    assert f'href="{url("calibration-study", study)}"' in html


def test_a_lead_of_one_study_lands_on_its_dashboard_after_logging_in(client, lead, study):
    r = client.post(
        reverse("login"), {"username": "bob", "password": "correct horse battery staple"}
    )
    assert r.status_code == 302 and r["Location"] == url("calibration-study", study)


def test_a_lead_of_two_studies_lands_on_the_home_page_that_lists_both(client, lead, study):
    other = StudyFactory(slug="other", name="Other")
    MembershipFactory(study=other, user=lead, role=Membership.Role.LEAD)
    r = client.post(
        reverse("login"), {"username": "bob", "password": "correct horse battery staple"}
    )
    assert r["Location"] == reverse("home")
    html = client.get(reverse("home")).content.decode()
    assert url("calibration-study", study) in html and url("calibration-study", other) in html


def test_an_annotator_still_lands_on_the_home_page(client, annotator, study):
    r = client.post(
        reverse("login"), {"username": "charlie", "password": "correct horse battery staple"}
    )
    assert r["Location"] == reverse("home")


@pytest.mark.parametrize(
    "name",
    ["calibration-study", "calibration-annotators", "annotate-setup", "annotate-setup-regions",
     "annotate-setup-activate", "accounts-audit"],
)  # fmt: skip
def test_every_page_of_a_study_carries_the_same_study_nav_for_its_admin(
    client, admin_user, study, name
):
    client.force_login(admin_user)
    nav = study_nav(client.get(url(name, study)).content.decode())
    for target in ("calibration-study", "calibration-annotators", "annotate-setup",
                   "accounts-audit"):  # fmt: skip
        assert f'href="{url(target, study)}"' in nav
    assert f'href="{url("calibration-pair", study, arm="cand1")}"' in nav


def test_a_lead_sees_the_dashboard_links_but_not_the_setup(client, lead, study):
    client.force_login(lead)
    nav = study_nav(client.get(url("calibration-study", study)).content.decode())
    assert url("calibration-annotators", study) in nav
    assert url("annotate-setup", study) not in nav


def test_the_annotator_study_page_nav_links_grading_and_not_the_dashboard(client, annotator, study):
    client.force_login(annotator)
    nav = study_nav(client.get(url("annotate-study-home", study)).content.decode())
    assert url("annotate-study-home", study) in nav
    assert f'href="{url("calibration-study", study)}"' not in nav
    assert "nova" not in nav and "acme" not in nav


def test_the_activation_page_of_an_active_study_links_its_dashboard(client, admin_user, study):
    client.force_login(admin_user)
    html = client.get(url("annotate-setup-activate", study)).content.decode()
    body = html[html.index('<section class="card">') :]
    assert url("calibration-study", study) in body


def test_the_readme_gives_the_dashboard_url():
    assert "/studies/{slug}/`" in README.read_text()


def test_a_user_without_studies_is_told_how_to_get_one(client):
    client.force_login(UserFactory(username="newbie"))
    assert "Ask a study admin to add you" in client.get(reverse("home")).content.decode()


def test_the_admin_of_a_draft_study_lands_on_its_setup(client, admin_user, study):
    Study.objects.filter(pk=study.pk).update(status=Study.Status.DRAFT)
    r = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery staple"}
    )
    assert r["Location"] == url("annotate-setup", study)
