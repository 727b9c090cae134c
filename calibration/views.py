"""The lead's pages: study overview (live), one candidate against the incumbent, annotators,
and the exports (offline report, posterior draws).

Verdicts, judge behaviour and annotator statistics are for leads and admins of the study
(and superusers). Annotators opening the overview are sent to their grading page; every
other page answers them 403 (``annotate.permissions``).

Live updates: the overview polls two partials every 5 s. ``#progress`` (labels, active
annotators, the fit in flight) re-renders each time; ``#decision`` sends the id of the fit
it shows and gets ``204 No Content`` (htmx swaps nothing) until a newer fit landed. Both get
``286`` (:class:`HttpResponseStopPolling`) once the study is decided or archived.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from accounts.services import record
from annotate.models import Arm, Membership, Study
from annotate.permissions import ADMIN, LEAD_OR_ADMIN, get_study_for, study_and_role_for
from calibration import charts, dashboards, replans, report, services
from calibration.forms import ReplanForm
from calibration.models import Fit

#: Bump when the cached pair view model changes shape.
_PAIR_CACHE_VERSION = 1
_PAIR_CACHE_SECONDS = 6 * 3600


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails  # set by django_htmx's middleware


def _is_live(study: Study) -> bool:
    return study.status not in (Study.Status.DECIDED, Study.Status.ARCHIVED)


def _no_posterior() -> HttpResponse:
    return HttpResponse(
        "No posterior yet: the study has no succeeded fit.", status=404, content_type="text/plain"
    )


def _decision_context(study: Study, fit: Fit | None) -> dict[str, Any]:
    if fit is None:
        return {"fit": None}
    titles = {d["key"]: d["title"] for d in fit.summary.get("dimensions", [])}
    health = dashboards.fit_health(fit, titles)
    return {
        "fit": fit,
        "matrix": dashboards.decision_matrix(fit),
        "health": health,
        "advice": dashboards.fit_advice(fit, health),
    }


def _progress_context(study: Study, fit: Fit | None) -> dict[str, Any]:
    in_flight = study.fits.filter(status__in=[Fit.Status.QUEUED, Fit.Status.RUNNING]).first()
    failed = study.fits.filter(status=Fit.Status.FAILED).first()
    if failed and fit and failed.created_at < fit.created_at:
        failed = None  # only a failure newer than what is served is news
    return {
        "progress": dashboards.label_progress(study),
        "in_flight": in_flight,
        "failed": failed,
    }


@login_required
@require_GET
def study_detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    study, role = study_and_role_for(request.user, slug)
    if role == Membership.Role.ANNOTATOR:
        return redirect("annotate-study-home", slug=study.slug)
    part = request.GET.get("part") if request.htmx else None
    if part and not _is_live(study):
        return HttpResponseStopPolling()
    fit = services.latest_fit(study)
    context: dict[str, Any] = {"study": study, "live": _is_live(study)}
    if part == "decision":
        if request.GET.get("shown", "") == (str(fit.pk) if fit else ""):
            return HttpResponse(status=204)  # nothing new: htmx keeps what it shows
        context.update(_decision_context(study, fit))
        return render(request, "calibration/study_detail.html#decision", context)
    if part == "progress":
        context.update(_progress_context(study, fit))
        return render(request, "calibration/study_detail.html#progress", context)
    context.update(_decision_context(study, fit))
    context.update(_progress_context(study, fit))
    context["candidates"] = list(study.candidates().order_by("position", "id"))
    return render(request, "calibration/study_detail.html", context)


@login_required
@require_POST
def refit(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=LEAD_OR_ADMIN)
    user = cast(User, request.user)  # login_required: never anonymous here
    services.request_fit(study=study, trigger=Fit.Trigger.MANUAL, requested_by=user)
    # No flash message: "Fit 4 is queued." would stay on the page after fit 4 lands. The
    # live #progress section says what is queued or running, and stops saying it when done.
    return redirect("calibration-study", slug=study.slug)


def _chart(fig: Any, chart_id: str, label: str) -> dict[str, str]:
    return {"id": chart_id, "label": label, "spec": charts.figure_spec(fig)}


def pair_context(study: Study, fit: Fit, arm: str) -> dict[str, Any] | None:
    """The pair page's view model with chart specs, cached per (fit, arm): a fit never
    changes, so neither does anything computed from it."""
    key = f"calibration:pair:v{_PAIR_CACHE_VERSION}:{fit.pk}:{arm}"
    hit = cache.get(key)
    if hit is not None:
        return hit
    data = dashboards.pair_data(study, fit, arm)
    if data is None:
        return None
    figures = report.pair_figures(data)
    for dim in data["dimensions"]:
        figs = figures[dim["key"]]
        dim["charts"] = {
            name: _chart(fig, f"chart-{dim['key']}-{name}", label)
            for name, (fig, label) in figs.items()
        }
        del dim["delta_draws"]
    cache.set(key, data, _PAIR_CACHE_SECONDS)
    return data


@login_required
@require_GET
def pair_detail(request: HtmxHttpRequest, slug: str, arm: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=LEAD_OR_ADMIN)
    candidate = get_object_or_404(Arm, study=study, key=arm, role=Arm.Role.CANDIDATE)
    fit = services.latest_fit(study)
    if request.htmx and request.GET.get("part") == "fresh":
        if not _is_live(study):
            return HttpResponseStopPolling()
        if request.GET.get("shown", "") == (str(fit.pk) if fit else ""):
            return HttpResponse(status=204)
        return render(
            request, "calibration/pair_detail.html#fresh", {"study": study, "fit": fit,
                                                              "candidate": candidate,
                                                              "newer": True}
        )  # fmt: skip
    context = {
        "study": study,
        "candidate": candidate,
        "candidates": list(study.candidates().order_by("position", "id")),
        "fit": fit,
        "pair": pair_context(study, fit, arm) if fit else None,
        "live": _is_live(study),
    }
    return render(request, "calibration/pair_detail.html", context)


@login_required
@require_GET
def annotators(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=LEAD_OR_ADMIN)
    return render(
        request,
        "calibration/study_annotators.html",
        {"study": study, "stats": dashboards.annotator_stats(study)},
    )


@login_required
@require_GET
def report_download(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=LEAD_OR_ADMIN)
    fit = services.latest_fit(study)
    if fit is None:
        return _no_posterior()
    html = report.build_report(study=study, fit=fit, generated_by=request.user)
    record(
        actor=request.user,
        action="report.export",
        study=study,
        target=fit,
        details={"format": "html", "fit": fit.pk, "bytes": len(html.encode())},
    )
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    name = f"{study.slug}-report-fit{fit.number}.html"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
@require_GET
def draws_download(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=LEAD_OR_ADMIN)
    fit = services.latest_fit(study)
    if fit is None:
        return _no_posterior()
    try:
        blob = report.draws_netcdf(study=study, fit=fit)
    except ValueError as exc:  # a succeeded fit without draws: nothing to export
        raise Http404(str(exc)) from exc
    record(
        actor=request.user,
        action="draws.export",
        study=study,
        target=fit,
        details={"format": "netcdf3", "fit": fit.pk, "bytes": len(blob)},
    )
    response = HttpResponse(blob, content_type="application/x-netcdf")
    name = f"{study.slug}-draws-fit{fit.number}.nc"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
def replan(request: HttpRequest, slug: str) -> HttpResponse:
    """The plan and its re-plans (leads and admins); admins change a frozen plan here with an
    explicit, confirmed, audited re-plan (calibration.replans)."""
    study, role = study_and_role_for(request.user, slug, roles=LEAD_OR_ADMIN)
    if request.method == "POST" and role not in ADMIN:
        raise PermissionDenied("Only the study's admins re-plan it.")
    form = ReplanForm(request.POST or None, study=study)
    if request.method == "POST" and form.is_valid():
        try:
            row = replans.replan(
                study=study,
                user=request.user,
                label_budget=form.cleaned_data["label_budget"],
                confidence=form.cleaned_data["confidence"],
                audit_share=form.cleaned_data["audit_share"],
                margins=form.margins(),
                reason=form.cleaned_data["reason"],
            )
        except replans.PlanError as e:
            form.add_error(None, str(e))
        else:
            messages.success(request, f"Re-plan {row.number} recorded; a refit was requested.")
            return redirect("calibration-study", slug=study.slug)
    ctx = {
        "study": study,
        "form": form,
        "frozen": study.plan_frozen(),
        "can_replan": role in ADMIN,
        "replans": study.replans.order_by("number"),
    }
    return render(request, "calibration/study_replan.html", ctx)
