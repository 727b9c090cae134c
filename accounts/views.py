"""Log-in (rate-limited), API tokens, and a study's audit log."""

from __future__ import annotations

import math
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy

from annotate.models import Membership, Study
from annotate.permissions import ADMIN, get_study_for

from . import services
from .backends import client_ip
from .forms import TokenForm
from .models import ApiToken


class RateLimitedLoginView(auth_views.LoginView):
    """Django's log-in, refusing (429) a username+address after repeated failures.

    Failures are counted by ``accounts.backends`` (signals), for every log-in form.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        wait = services.login_blocked_for(username=username, ip=client_ip(request))
        if wait is not None:
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            response = self.render_to_response(
                self.get_context_data(
                    form=self.get_form_class()(request),
                    rate_limited=(
                        f"Too many failed log-in attempts for this username from your "
                        f"address. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
                    ),
                ),
                status=429,
            )
            response["Retry-After"] = str(math.ceil(wait.total_seconds()))
            return response
        return super().post(request, *args, **kwargs)

    def get_default_redirect_url(self) -> str:
        """Where a log-in without ``?next=`` goes: the role's landing page."""
        return landing_url(self.request.user) or super().get_default_redirect_url()


def landing_url(user: Any) -> str | None:
    """A lead (or admin) of exactly one study, who grades nowhere, lands on its dashboard
    (an admin of a draft study on its setup); everyone else on the home page, which lists
    their studies by role."""
    if getattr(user, "is_superuser", False):
        return None
    rows = Membership.objects.filter(user=user).values_list("role", "study__slug", "study__status")
    roles = list(rows[:2])
    if len(roles) != 1:
        return None
    role, slug, status = roles[0]
    if role == Membership.Role.ADMIN and status == Study.Status.DRAFT:
        return reverse("annotate-setup", kwargs={"slug": slug})  # nothing to watch yet
    if role in (Membership.Role.LEAD, Membership.Role.ADMIN):
        return reverse("calibration-study", kwargs={"slug": slug})
    return None


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The one-time link an admin hands a new member (``services.set_password_path``):
    choose a password, and be logged in."""

    template_name = "accounts/set_password.html"
    reset_url_token = "set-password"  # noqa: S105 - a URL segment, not a password
    post_reset_login = True
    post_reset_login_backend = "accounts.backends.RateLimitedModelBackend"
    success_url = reverse_lazy("home")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        services.record(actor=form.user, action="user.password_set")
        messages.success(self.request, "Your password is set. Welcome to Baton.")
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts-password-change-done")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        services.record(actor=self.request.user, action="user.password_change")
        return response


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's API tokens; POST creates one and shows its secret once."""
    form = TokenForm(request.POST) if request.method == "POST" else TokenForm()
    issued = None
    if form.is_bound and form.is_valid():
        issued = services.issue_token(user=request.user, name=form.cleaned_data["name"])
        form = TokenForm()
    ctx = {
        "form": form,
        "issued": issued,
        "tokens": ApiToken.objects.filter(user_id=request.user.pk),  # type: ignore[misc]
    }
    response = render(request, "accounts/tokens.html", ctx)
    if issued is not None:
        response["Cache-Control"] = "no-store"  # the page holds a secret
    return response


@login_required
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user_id=request.user.pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    services.revoke_token(user=request.user, token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("accounts-tokens")


@login_required
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_study_for(request.user, slug, roles=ADMIN)
    events = study.audit_events.select_related("actor")
    action = request.GET.get("action", "").strip()
    if action:
        events = events.filter(action__startswith=action)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(
        request, "accounts/audit_log.html", {"study": study, "page": page, "action": action}
    )
