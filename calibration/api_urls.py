from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path(
        "studies/<slug:slug>/posterior/",
        api.PosteriorView.as_view(),
        name="calibration-api-posterior",
    ),
    path("studies/<slug:slug>/fits/", api.FitListCreateView.as_view(), name="calibration-api-fits"),
]
