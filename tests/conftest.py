"""Personas (HC-style alice/bob/charlie): an admin, a lead, an annotator, an outsider."""

from __future__ import annotations

import pytest

from annotate.models import Membership, Study
from tests.factories import MembershipFactory, UserFactory, make_study


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
