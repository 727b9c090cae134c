"""Top-level URLs: each app owns its pages (``urls``) and its API (``api_urls``)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/", include("annotate.api_urls")),
    path("api/", include("calibration.api_urls")),
    path("", include("annotate.urls")),
    path("", include("calibration.urls")),
]
