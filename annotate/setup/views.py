"""The study setup flow for admins: one page per step, and a checklist."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django_htmx.middleware import HtmxDetails

from accounts.services import set_password_path

from ..models import Study
from ..permissions import ADMIN, can_create_studies, get_study_for
from . import blindness
from . import services as setup
from .forms import (
    ArmForm,
    BaseRegionFormSet,
    DimensionForm,
    MemberForm,
    NewAccountForm,
    RegionFormSet,
    StudyForm,
    suggested_shares,
)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _post_only(request: HttpRequest) -> HttpResponse | None:
    # Checked after the role, so that a wrong persona learns nothing from a 405.
    return None if request.method == "POST" else HttpResponseNotAllowed(["POST"])


def _confirm_or_save(
    request: HttpRequest,
    *,
    study: Study,
    changes: Sequence[setup.Change],
    save: Callable[[], Any],
    what: str,
    success_url: str,
) -> HttpResponse:
    """Save, unless an active study's fit-relevant change has not been confirmed yet."""
    if setup.needs_confirmation(study, changes) and request.POST.get("confirmed") != "1":
        resubmit = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in {"csrfmiddlewaretoken", "confirmed"}
            for value in values
        ]
        ctx = {"study": study, "changes": changes, "resubmit": resubmit, "what": what}
        return render(request, "annotate/setup_confirm.html", ctx)
    try:
        save()
    except setup.SetupError as e:
        messages.error(request, str(e))
        return redirect(request.path)
    if changes and setup.needs_confirmation(study, changes):
        messages.success(request, f"{what} saved; a refit was requested.")
    elif changes:
        messages.success(request, f"{what} saved.")
    _warn_if_not_blind(request, study)
    return redirect(success_url)


def _warn_if_not_blind(request: HttpRequest, study: Study) -> None:
    for leak in blindness.leaks(study):
        messages.warning(
            request, f"Annotators would learn the models: {leak}. Name no model, arm or role there."
        )


@login_required
def setup_create(request: HttpRequest) -> HttpResponse:
    if not can_create_studies(request.user):
        raise PermissionDenied("Only staff create studies.")
    form = StudyForm(request.POST) if request.method == "POST" else StudyForm()
    if form.is_bound and form.is_valid():
        study = setup.create_study(user=request.user, study=form.save(commit=False))
        messages.success(request, f"Study “{study.name}” created as a draft.")
        _warn_if_not_blind(request, study)
        return redirect("annotate-setup", slug=study.slug)
    return render(request, "annotate/setup_create.html", {"form": form})


@login_required
def setup_checklist(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    ctx = {
        "study": study,
        "steps": setup.checklist(study),
        "problems": setup.activation_problems(study),
    }
    return render(request, "annotate/setup_checklist.html", ctx)


@login_required
def setup_study(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    form = StudyForm(request.POST or None, instance=study)
    if request.method == "POST" and form.is_valid():
        edited = form.save(commit=False)
        return _confirm_or_save(
            request,
            study=study,
            changes=setup.preview_study(study=edited),
            save=lambda: setup.update_study(user=request.user, study=edited),
            what="Study settings",
            success_url=reverse("annotate-setup", kwargs={"slug": slug}),
        )
    return render(request, "annotate/setup_study.html", {"study": study, "form": form})


@login_required
def setup_arms(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    form = ArmForm(request.POST or None, study=study)
    if request.method == "POST" and form.is_valid():
        setup.save_arm(user=request.user, study=study, arm=form.save(commit=False))
        messages.success(request, "Arm added.")
        _warn_if_not_blind(request, study)
        return redirect("annotate-setup-arms", slug=slug)
    counts = setup.response_counts(study)
    arms = list(study.arms.all())
    for arm in arms:
        arm.n_responses = counts.by_arm.get(arm.pk, 0)  # type: ignore[attr-defined]
    return render(request, "annotate/setup_arms.html", {"study": study, "form": form, "arms": arms})


@login_required
def setup_arm(request: HttpRequest, slug: str, arm_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    arm = get_object_or_404(study.arms, pk=arm_id)
    form = ArmForm(request.POST or None, instance=arm, study=study)
    if request.method == "POST" and form.is_valid():
        setup.save_arm(user=request.user, study=study, arm=form.save(commit=False))
        messages.success(request, "Arm saved.")
        return redirect("annotate-setup-arms", slug=slug)
    return render(request, "annotate/setup_arm.html", {"study": study, "form": form, "arm": arm})


@login_required
def setup_arm_delete(request: HttpRequest, slug: str, arm_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    arm = get_object_or_404(study.arms, pk=arm_id)
    if refused := _post_only(request):
        return refused
    try:
        setup.delete_arm(user=request.user, study=study, arm=arm)
        messages.success(request, f"Arm “{arm.key}” removed.")
    except setup.SetupError as e:
        messages.error(request, str(e))
    return redirect("annotate-setup-arms", slug=slug)


@login_required
def setup_dimensions(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    dimensions = study.dimensions.annotate(n_labels=Count("labels"))
    return render(
        request, "annotate/setup_dimensions.html", {"study": study, "dimensions": dimensions}
    )


@login_required
def setup_dimension(
    request: HttpRequest, slug: str, dimension_id: int | None = None
) -> HttpResponse:
    """Add a dimension (no id) or edit one."""
    study = get_study_for(request.user, slug, roles=ADMIN)
    dimension = get_object_or_404(study.dimensions, pk=dimension_id) if dimension_id else None
    form = DimensionForm(request.POST or None, instance=dimension, study=study)
    if request.method == "POST" and form.is_valid():
        edited = form.save(commit=False)
        return _confirm_or_save(
            request,
            study=study,
            changes=setup.preview_dimension(dimension=edited),
            save=lambda: setup.save_dimension(user=request.user, study=study, dimension=edited),
            what=f"Dimension “{edited.key}”",
            success_url=reverse("annotate-setup-dimensions", kwargs={"slug": slug}),
        )
    ctx = {"study": study, "form": form, "dimension": dimension}
    return render(request, "annotate/setup_dimension.html", ctx)


@login_required
def setup_dimension_delete(request: HttpRequest, slug: str, dimension_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    dimension = get_object_or_404(study.dimensions, pk=dimension_id)
    if refused := _post_only(request):
        return refused
    try:
        setup.delete_dimension(user=request.user, study=study, dimension=dimension)
        messages.success(request, f"Dimension “{dimension.key}” removed.")
    except setup.SetupError as e:
        messages.error(request, str(e))
    return redirect("annotate-setup-dimensions", slug=slug)


@login_required
def setup_regions(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """All regions in one form: add and remove rows freely, only the final set must sum to
    1. ``?suggest=1`` pre-fills each share from the imported prompts per region."""
    study = get_study_for(request.user, slug, roles=ADMIN)
    formset = cast(BaseRegionFormSet, RegionFormSet(request.POST or None, study=study))
    if not formset.is_bound and not study.regions.exists():
        formset = cast(BaseRegionFormSet, RegionFormSet(study=study, extra_rows=1))
    if request.htmx and request.GET.get("preview"):
        # Live sum of the shares while typing; nothing is saved.
        return render(
            request,
            "annotate/setup_regions.html#share-total",
            {"study": study, "formset": formset, "share_total": formset.share_total()},
        )
    if request.method == "POST" and formset.is_valid():
        saved = formset.save(commit=False)
        deleted = list(formset.deleted_objects)
        return _confirm_or_save(
            request,
            study=study,
            changes=setup.preview_regions(saved=saved, deleted=deleted),
            save=lambda: setup.save_regions(
                user=request.user, study=study, saved=saved, deleted=deleted
            ),
            what="Regions",
            success_url=reverse("annotate-setup-regions", kwargs={"slug": slug}),
        )
    counts = dict(study.regions.annotate(n=Count("prompts")).values_list("pk", "n"))
    suggested = False
    if request.GET.get("suggest") and not formset.is_bound and sum(counts.values()):
        forms = list(formset.forms)
        for form, share in zip(
            forms, suggested_shares([counts.get(f.instance.pk, 0) for f in forms]), strict=True
        ):
            form.initial["traffic_share"] = share
        suggested = True
    ctx = {
        "study": study,
        "formset": formset,
        "share_total": Decimal(1) if suggested else formset.share_total(),
        "can_suggest": bool(sum(counts.values())),
        "suggested": suggested,
    }
    return render(request, "annotate/setup_regions.html", ctx)


@login_required
def setup_data(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    try:
        upload_url: str | None = reverse("annotate-upload", kwargs={"slug": slug})
    except NoReverseMatch:
        upload_url = None  # the upload page is not there yet
    counts = setup.response_counts(study)
    by_arm = [
        (a.key, a.role, counts.by_arm.get(a.pk, 0)) for a in study.arms.order_by("position", "id")
    ]
    by_region = [(g.key, counts.by_region.get(g.pk, 0)) for g in study.regions.all()]
    ctx = {
        "study": study,
        "upload_url": upload_url,
        "n_prompts": counts.prompts,
        "n_responses": counts.total,
        "by_arm": by_arm,
        "by_region": by_region,
        "jobs": study.import_jobs.all()[:5],
    }
    return render(request, "annotate/setup_data.html", ctx)


@login_required
def setup_members(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Add existing users by name, or create an account and hand over its one-time
    set-password link (shown once, never stored)."""
    study = get_study_for(request.user, slug, roles=ADMIN)
    action = request.POST.get("action", "add") if request.method == "POST" else ""
    form = MemberForm(request.POST if action == "add" else None)
    new_form = NewAccountForm(request.POST if action == "create" else None, prefix="new")
    link: dict[str, str] | None = None
    if action == "add" and form.is_valid():
        member = form.cleaned_data["username"]
        try:
            setup.assign_member(
                user=request.user, study=study, member=member, role=form.cleaned_data["role"]
            )
            messages.success(
                request, f"{member.get_username()} is now {form.cleaned_data['role']}."
            )
            form = MemberForm()
        except setup.SetupError as e:
            messages.error(request, str(e))
        if not request.htmx:
            return redirect("annotate-setup-members", slug=slug)
    elif action == "create" and new_form.is_valid():
        data = new_form.cleaned_data
        member = setup.create_member(
            user=request.user,
            study=study,
            username=data["new_username"],
            email=data["email"],
            role=data["new_role"],
        )
        link = _set_password_link(request, member)
        new_form = NewAccountForm(prefix="new")
    elif action == "link":
        membership = get_object_or_404(study.memberships, pk=request.POST.get("membership"))
        if membership.user.has_usable_password():
            messages.error(request, f"{membership.user.get_username()} has a password already.")
        else:
            link = _set_password_link(request, membership.user)
    memberships = study.memberships.select_related("user").order_by("role", "user__username")
    ctx = {
        "study": study,
        "form": form,
        "new_form": new_form,
        "memberships": memberships,
        "link": link,
    }
    template = "annotate/setup_members.html"
    return render(request, f"{template}#members" if request.htmx else template, ctx)


def _set_password_link(request: HttpRequest, member: Any) -> dict[str, str]:
    return {
        "username": member.get_username(),
        "url": request.build_absolute_uri(set_password_path(member)),
    }


@login_required
def setup_member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    membership = get_object_or_404(study.memberships, pk=membership_id)
    if refused := _post_only(request):
        return refused
    try:
        setup.remove_member(user=request.user, study=study, membership=membership)
        messages.success(request, f"{membership.user.get_username()} removed from the study.")
    except setup.SetupError as e:
        messages.error(request, str(e))
    return redirect("annotate-setup-members", slug=slug)


@login_required
def setup_activate(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    if request.method == "POST":
        try:
            setup.activate(user=request.user, study=study)
        except setup.ActivationRefused as e:
            ctx = {"study": study, "problems": e.problems}
            return render(request, "annotate/setup_activate.html", ctx, status=400)
        except setup.SetupError as e:
            messages.error(request, str(e))
            return redirect("annotate-setup", slug=slug)
        messages.success(request, f"“{study.name}” is active: annotators can start grading.")
        return redirect("annotate-setup", slug=slug)
    ctx = {"study": study, "problems": setup.activation_problems(study)}
    return render(request, "annotate/setup_activate.html", ctx)
