from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .grading.views import grading_rows
from .models import Membership, Study


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Each user's studies, grouped by the role they hold in them."""
    studies: list[tuple[Study, str]]
    if request.user.is_superuser:
        studies = [(study, Membership.Role.ADMIN) for study in Study.objects.all()]
    else:
        user = request.user
        assert user.is_authenticated  # login_required; narrows the type for the lookup
        memberships = Membership.objects.filter(user=user).select_related("study")
        studies = [(m.study, m.role) for m in memberships]
    grading = grading_rows(studies, request.user)
    return render(request, "annotate/home.html", {"studies": studies, "grading": grading})
