from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    # "login" and "logout" keep Django's names: LOGIN_URL and the templates use them.
    path("login/", views.RateLimitedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="accounts-password-change"),
    path(
        "password/done/",
        views.PasswordChangeDoneView.as_view(),
        name="accounts-password-change-done",
    ),
    path(
        "set-password/<uidb64>/<token>/",
        views.SetPasswordView.as_view(),
        name="accounts-set-password",
    ),
    path("tokens/", views.tokens, name="accounts-tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="accounts-token-revoke"),
    path("studies/<slug:slug>/audit/", views.audit_log, name="accounts-audit"),
]
