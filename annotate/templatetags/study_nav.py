"""One navigation bar for every page of a study, with the links the viewer's role opens."""

from __future__ import annotations

from typing import Any

from django import template

from annotate.models import Arm, Membership, Study

register = template.Library()


@register.inclusion_tag("annotate/_study_nav.html", takes_context=True)
def study_nav(context: template.Context, study: Study, current: str = "") -> dict[str, Any]:
    """The study's nav for the viewer: leads and admins see the dashboard, the candidate
    pages, the annotators and the plan; admins the setup and audit log too; annotators (and members
    of any role that also grade) see their grading page. ``current`` names the page shown
    (``decision``, ``pair:<key>``, ``annotators``, ``plan``, ``setup``, ``audit``, ``grade``)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    role = study.role_of(user) if user is not None else None
    sees_dashboard = role in (Membership.Role.ADMIN, Membership.Role.LEAD)
    candidates = (
        list(study.arms.filter(role=Arm.Role.CANDIDATE).order_by("position", "id"))
        if sees_dashboard
        else []
    )
    return {
        "study": study,
        "role": role,
        "current": current,
        "sees_dashboard": sees_dashboard,
        "is_admin": role == Membership.Role.ADMIN,
        "grades": role == Membership.Role.ANNOTATOR,
        "candidates": candidates,
    }
