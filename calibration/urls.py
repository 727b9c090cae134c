from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("studies/<slug:slug>/", views.study_detail, name="calibration-study"),
    path("studies/<slug:slug>/refit/", views.refit, name="calibration-refit"),
]
