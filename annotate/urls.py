from __future__ import annotations

from django.urls import path

from . import views, views_grade, views_grade_pair
from .imports import views as views_import

urlpatterns = [
    path("", views.home, name="home"),
    path("studies/<slug:slug>/upload/", views_import.study_upload, name="annotate-upload"),
    path(
        "studies/<slug:slug>/upload/<int:job_id>/",
        views_import.upload_job,
        name="annotate-upload-job",
    ),
    path("studies/<slug:slug>/annotate/", views_grade.study_home, name="annotate-study-home"),
    path("studies/<slug:slug>/grade/", views_grade.grade, name="annotate-grade"),
    path(
        "studies/<slug:slug>/grade/<int:assignment_id>/submit/",
        views_grade.grade_submit,
        name="annotate-grade-submit",
    ),
    path(
        "studies/<slug:slug>/grade/<int:assignment_id>/skip/",
        views_grade.grade_skip,
        name="annotate-grade-skip",
    ),
    path("studies/<slug:slug>/grade/undo/", views_grade.grade_undo, name="annotate-grade-undo"),
    path(
        "studies/<slug:slug>/grade/answers/<int:annotation_id>/",
        views_grade.grade_correct,
        name="annotate-grade-correct",
    ),
    path(
        "studies/<slug:slug>/grade/pair/<uuid:pair_key>/submit/",
        views_grade_pair.pair_submit,
        name="annotate-grade-pair-submit",
    ),
    path(
        "studies/<slug:slug>/grade/pair/<uuid:pair_key>/skip/",
        views_grade_pair.pair_skip,
        name="annotate-grade-pair-skip",
    ),
]
