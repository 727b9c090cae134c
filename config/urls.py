"""Top-level URLs: each app owns its pages (``urls``) and its API (``api_urls``)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config.views import favicon, healthz

handler404 = "config.views.not_found"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/", include("annotate.api_urls")),
    path("api/", include("calibration.api_urls")),
    path("", include("annotate.urls")),
    path("", include("annotate.setup.urls")),
    path("", include("calibration.urls")),
]
