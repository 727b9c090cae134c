"""Who may do what in a study: one lookup helper for views, one permission class for DRF.

Non-members get a 404 (a study's existence is not disclosed to outsiders); members whose
role is not allowed get a 403. Site superusers act as admins of every study
(``Study.role_of``).

Views::

    study = get_study_for(request.user, slug, roles=ADMIN)

DRF::

    permission_classes = [IsStudyMember(roles=LEAD_OR_ADMIN)]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, permissions

from .models import Membership, Study

ADMIN: tuple[str, ...] = (Membership.Role.ADMIN,)
LEAD_OR_ADMIN: tuple[str, ...] = (Membership.Role.ADMIN, Membership.Role.LEAD)
ANNOTATOR: tuple[str, ...] = (Membership.Role.ANNOTATOR,)
ANY_MEMBER: tuple[str, ...] = tuple(Membership.Role.values)


def study_and_role_for(
    user: Any, slug: str, *, roles: Iterable[str] | None = None
) -> tuple[Study, str]:
    """The study with this slug and the user's role in it.

    Raises ``Http404`` when the study does not exist or the user is not a member, and
    ``PermissionDenied`` (403) when the user's role is not in ``roles`` (any role if None).
    """
    study = Study.objects.filter(slug=slug).first()
    role = study.role_of(user) if study is not None else None
    if study is None or role is None:
        raise Http404("No such study.")
    if roles is not None and role not in tuple(roles):
        raise PermissionDenied(f"Your role in this study ({role}) does not allow this.")
    return study, role


def get_study_for(user: Any, slug: str, *, roles: Iterable[str] | None = None) -> Study:
    """The study with this slug if ``user`` holds one of ``roles`` in it (404 / 403 if not)."""
    return study_and_role_for(user, slug, roles=roles)[0]


def can_create_studies(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and (user.is_superuser or user.is_staff))


class IsStudyMember(permissions.BasePermission):
    """DRF permission: the user holds one of ``roles`` in the study of the URL or object.

    The study comes from the URL keyword ``slug`` (or ``study_slug``) when there is one,
    and from ``obj.study`` (or ``obj`` itself when it is a Study) for object checks.
    Non-members get 404, wrong roles 403. An instance is used in ``permission_classes``
    directly: DRF calls it, and calling it returns itself.
    """

    url_kwargs = ("slug", "study_slug")

    def __init__(self, roles: Iterable[str] | None = None) -> None:
        self.roles = tuple(roles) if roles is not None else ANY_MEMBER

    def __call__(self) -> IsStudyMember:
        return self

    def _check(self, request: Any, study: Study | None) -> bool:
        role = study.role_of(request.user) if study is not None else None
        if role is None:
            raise exceptions.NotFound("No such study.")
        if role not in self.roles:
            raise exceptions.PermissionDenied(
                f"Your role in this study ({role}) does not allow this."
            )
        return True

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        kwargs = getattr(view, "kwargs", {}) or {}
        slug = next((kwargs[k] for k in self.url_kwargs if k in kwargs), None)
        if slug is None:
            return True  # no study in the URL: decided per object, or by the view's queryset
        study = Study.objects.filter(slug=slug).first()
        self._check(request, study)
        view.study = study
        return True

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        study = obj if isinstance(obj, Study) else getattr(obj, "study", None)
        return self._check(request, study)
