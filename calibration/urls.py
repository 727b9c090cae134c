from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("studies/<slug:slug>/", views.study_detail, name="calibration-study"),
    path("studies/<slug:slug>/refit/", views.refit, name="calibration-refit"),
    path("studies/<slug:slug>/replan/", views.replan, name="calibration-replan"),
    path("studies/<slug:slug>/pair/<slug:arm>/", views.pair_detail, name="calibration-pair"),
    path("studies/<slug:slug>/annotators/", views.annotators, name="calibration-annotators"),
    path("studies/<slug:slug>/report.html", views.report_download, name="calibration-report"),
    path("studies/<slug:slug>/draws.nc", views.draws_download, name="calibration-draws"),
]
