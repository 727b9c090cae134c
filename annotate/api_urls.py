from __future__ import annotations

from django.urls import path

from .grading import api as queue_api
from .imports import api as imports_api

urlpatterns: list = [
    path("studies/<slug:slug>/next/", queue_api.next_item, name="annotate-api-next"),
    path("assignments/<int:assignment_id>/submit/", queue_api.submit, name="annotate-api-submit"),
    path("assignments/<int:assignment_id>/skip/", queue_api.skip, name="annotate-api-skip"),
    path("annotations/<int:annotation_id>/undo/", queue_api.undo, name="annotate-api-undo"),
    path(
        "studies/<slug:slug>/imports/", imports_api.ImportView.as_view(), name="annotate-api-import"
    ),
    path(
        "studies/<slug:slug>/imports/<int:job_id>/",
        imports_api.ImportJobView.as_view(),
        name="annotate-api-import-job",
    ),
    path(
        "studies/<slug:slug>/labels/",
        imports_api.LabelExportView.as_view(),
        name="annotate-api-labels",
    ),
    path(
        "studies/<slug:slug>/labels.<str:format>",
        imports_api.LabelExportView.as_view(),
        name="annotate-api-labels-as",
    ),
]
