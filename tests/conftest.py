"""Personas (HC-style alice/bob/charlie): an admin, a lead, an annotator, an outsider.

And one password hasher for every test: a fast one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from annotate.models import Membership, Study
from tests.factories import MembershipFactory, UserFactory, make_study


@pytest.fixture(scope="session", autouse=True)
def fast_password_hasher() -> Iterator[None]:
    """MD5 instead of Django's default PBKDF2, which costs 0.5–0.8 s a user on a busy machine.

    Session-wide, so it holds for fixtures of every scope and for the live server's thread
    (browser tests) too. No test depends on the real hasher; config/settings.py keeps
    Django's default for the app.
    """
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def study(db) -> Study:
    return make_study()


@pytest.fixture
def admin_user(study):
    user = UserFactory(username="alice", is_staff=True)
    MembershipFactory(study=study, user=user, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def lead(study):
    user = UserFactory(username="bob")
    MembershipFactory(study=study, user=user, role=Membership.Role.LEAD)
    return user


@pytest.fixture
def annotator(study):
    user = UserFactory(username="charlie")
    MembershipFactory(study=study, user=user, role=Membership.Role.ANNOTATOR)
    return user


@pytest.fixture
def outsider(db):
    return UserFactory(username="mallory")
