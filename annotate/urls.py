from __future__ import annotations

from django.urls import path

from . import views
from .grading import views as grade
from .imports import views as imports

urlpatterns = [
    path("", views.home, name="home"),
    path("studies/<slug:slug>/upload/", imports.study_upload, name="annotate-upload"),
    path(
        "studies/<slug:slug>/upload/<int:job_id>/",
        imports.upload_job,
        name="annotate-upload-job",
    ),
    path("studies/<slug:slug>/annotate/", grade.study_home, name="annotate-study-home"),
    path("studies/<slug:slug>/grade/", grade.grade, name="annotate-grade"),
    path(
        "studies/<slug:slug>/grade/<int:assignment_id>/submit/",
        grade.grade_submit,
        name="annotate-grade-submit",
    ),
    path(
        "studies/<slug:slug>/grade/<int:assignment_id>/skip/",
        grade.grade_skip,
        name="annotate-grade-skip",
    ),
    path("studies/<slug:slug>/grade/undo/", grade.grade_undo, name="annotate-grade-undo"),
    path(
        "studies/<slug:slug>/grade/answers/<int:annotation_id>/",
        grade.grade_correct,
        name="annotate-grade-correct",
    ),
    path(
        "studies/<slug:slug>/grade/pair/<uuid:pair_key>/submit/",
        grade.pair_submit,
        name="annotate-grade-pair-submit",
    ),
    path(
        "studies/<slug:slug>/grade/pair/<uuid:pair_key>/skip/",
        grade.pair_skip,
        name="annotate-grade-pair-skip",
    ),
]
