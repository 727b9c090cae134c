"""Pages of the calibration app: a minimal study page (verdicts, diagnostics) and a refit button.

The real dashboards come later; this page only has to be correct. Verdicts and judge
behaviour are for leads and admins: annotators are sent to their grading page.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from annotate.models import Membership
from annotate.permissions import LEAD_OR_ADMIN, get_study_for, study_and_role_for
from calibration import services
from calibration.models import Fit


@login_required
@require_GET
def study_detail(request: HttpRequest, slug: str) -> HttpResponse:
    study, role = study_and_role_for(request.user, slug)
    if role == Membership.Role.ANNOTATOR:
        return redirect("annotate-study-home", slug=study.slug)
    fit = services.latest_fit(study)
    in_flight = study.fits.filter(status__in=[Fit.Status.QUEUED, Fit.Status.RUNNING]).first()
    if request.htmx and request.GET.get("poll") and in_flight is None:
        return HttpResponseClientRefresh()  # the fit we were waiting for is done: show it
    failed = study.fits.filter(status=Fit.Status.FAILED).first()
    if failed and fit and failed.created_at < fit.created_at:
        failed = None  # only a failure newer than what is served is news
    context = {
        "study": study,
        "fit": fit,
        "in_flight": in_flight,
        "failed": failed,
        "dimensions": fit.summary["dimensions"] if fit else [],
        "candidates": fit.summary["candidates"] if fit else [],
        "diagnostics": [
            (d["key"], d["title"], fit.diagnostics.get(d["key"], {}))
            for d in (fit.summary["dimensions"] if fit else [])
        ],
    }
    template = "calibration/study_detail.html"
    if request.htmx and request.GET.get("poll"):
        template += "#fit-status"
    return render(request, template, context)


@login_required
@require_POST
def refit(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=LEAD_OR_ADMIN)
    fit = services.request_fit(study=study, trigger=Fit.Trigger.MANUAL, requested_by=request.user)
    messages.success(request, f"Fit {fit.pk} is {fit.get_status_display().lower()}.")
    return redirect("calibration-study", slug=study.slug)
