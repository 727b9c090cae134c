"""The shared lookup helpers: non-members get 404, wrong roles 403, in views and in DRF."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from annotate.permissions import (
    ADMIN,
    LEAD_OR_ADMIN,
    IsStudyMember,
    can_create_studies,
    get_study_for,
    study_and_role_for,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_members_get_their_study(study, admin_user, lead, annotator):
    assert get_study_for(admin_user, study.slug, roles=ADMIN) == study
    assert get_study_for(lead, study.slug, roles=LEAD_OR_ADMIN) == study
    assert study_and_role_for(annotator, study.slug) == (study, "annotator")


def test_a_wrong_role_is_forbidden(study, lead, annotator):
    with pytest.raises(PermissionDenied):
        get_study_for(lead, study.slug, roles=ADMIN)
    with pytest.raises(PermissionDenied):
        get_study_for(annotator, study.slug, roles=LEAD_OR_ADMIN)


def test_outsiders_and_unknown_slugs_are_not_found(study, outsider):
    for user, slug in [(outsider, study.slug), (AnonymousUser(), study.slug), (outsider, "nope")]:
        with pytest.raises(Http404):
            get_study_for(user, slug)


def test_superusers_are_admins_everywhere(study):
    root = UserFactory(username="root", is_superuser=True)
    assert get_study_for(root, study.slug, roles=ADMIN) == study


def test_only_staff_create_studies(admin_user, lead):
    assert can_create_studies(admin_user)
    assert not can_create_studies(lead)
    assert not can_create_studies(AnonymousUser())


class LeadView(APIView):
    permission_classes = [IsStudyMember(roles=LEAD_OR_ADMIN)]

    def get(self, request, slug):
        from rest_framework.response import Response

        return Response({"study": self.study.slug})


@pytest.mark.parametrize(
    ("persona", "status"),
    [("admin_user", 200), ("lead", 200), ("annotator", 403), ("outsider", 404)],
)
def test_drf_permission_by_role(request, study, persona, status):
    req = APIRequestFactory().get("/x")
    force_authenticate(req, user=request.getfixturevalue(persona))
    response = LeadView.as_view()(req, slug=study.slug)
    assert response.status_code == status
    if status == 200:
        assert response.data == {"study": study.slug}


def test_drf_permission_refuses_anonymous(study):
    response = LeadView.as_view()(APIRequestFactory().get("/x"), slug=study.slug)
    assert response.status_code in (401, 403)


def test_drf_object_permission_reads_obj_study(study, lead, annotator):
    perm = IsStudyMember(roles=LEAD_OR_ADMIN)
    req = APIRequestFactory().get("/x")
    req.user = lead
    arm = study.arms.first()
    assert perm.has_object_permission(req, None, arm)
    req.user = annotator
    with pytest.raises(exceptions.PermissionDenied):
        perm.has_object_permission(req, None, arm)
    req.user = UserFactory(username="zed")
    with pytest.raises(exceptions.NotFound):
        perm.has_object_permission(req, None, study)
