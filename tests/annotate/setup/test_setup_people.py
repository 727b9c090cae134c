"""People from the study (issue 14, item 4): an admin creates an annotator's account on the
People page and hands over a one-time set-password link; no Django admin needed."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.models import AuditEvent
from annotate.models import Membership

pytestmark = pytest.mark.django_db


def members_url(study) -> str:
    return reverse("annotate-setup-members", kwargs={"slug": study.slug})


def create(client, study, username="erin", role="annotator"):
    return client.post(
        members_url(study),
        {"action": "create", "new-new_username": username, "new-email": "", "new-new_role": role},
    )


def link_in(html: str) -> str:
    match = re.search(r'value="(http://testserver/accounts/set-password/[^"]+)"', html)
    assert match, "no set-password link on the page"
    return match.group(1).removeprefix("http://testserver")


def test_the_people_page_says_accounts_can_be_created_here(client, admin_user, study):
    client.force_login(admin_user)
    html = client.get(members_url(study)).content.decode()
    assert "Everyone needs an account" in html and "Create an account" in html


def test_an_admin_creates_an_annotator_who_sets_a_password_once_and_can_grade(
    client, admin_user, study
):
    client.force_login(admin_user)
    r = create(client, study)
    assert r.status_code == 200
    erin = get_user_model().objects.get(username="erin")
    assert not erin.has_usable_password()
    assert study.memberships.get(user=erin).role == Membership.Role.ANNOTATOR
    assert AuditEvent.objects.filter(action="user.create", study=study).exists()
    link = link_in(r.content.decode())

    client.logout()
    r = client.get(link, follow=True)  # Django moves the token into the session
    assert "Choose your password" in r.content.decode()
    form_url = r.redirect_chain[-1][0]
    r = client.post(
        form_url,
        {"new_password1": "a long new passphrase", "new_password2": "a long new passphrase"},
    )
    assert r.status_code == 302 and r["Location"] == reverse("home")
    erin.refresh_from_db()
    assert erin.check_password("a long new passphrase")
    assert (
        client.get(reverse("annotate-study-home", kwargs={"slug": study.slug})).status_code == 200
    )

    client.logout()
    assert "no longer works" in client.get(link, follow=True).content.decode()


def test_a_taken_username_is_refused_with_a_pointer_to_the_add_form(client, admin_user, study):
    client.force_login(admin_user)
    html = create(client, study, username="ALICE").content.decode()
    assert "already has an account" in html
    assert get_user_model().objects.filter(username__iexact="alice").count() == 1


def test_a_new_link_can_be_made_for_a_member_without_a_password(client, admin_user, study):
    client.force_login(admin_user)
    create(client, study)
    membership = study.memberships.get(user__username="erin")
    r = client.post(members_url(study), {"action": "link", "membership": membership.pk})
    assert "/accounts/set-password/" in link_in(r.content.decode())


def test_a_lead_cannot_create_accounts(client, lead, study):
    client.force_login(lead)
    assert create(client, study).status_code == 403
    assert not get_user_model().objects.filter(username="erin").exists()
