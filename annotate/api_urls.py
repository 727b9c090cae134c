from __future__ import annotations

from django.urls import path

from . import api_queue
from .imports import api

urlpatterns: list = [
    path("studies/<slug:slug>/next/", api_queue.next_item, name="annotate-api-next"),
    path("assignments/<int:assignment_id>/submit/", api_queue.submit, name="annotate-api-submit"),
    path("assignments/<int:assignment_id>/skip/", api_queue.skip, name="annotate-api-skip"),
    path("annotations/<int:annotation_id>/undo/", api_queue.undo, name="annotate-api-undo"),
    path("studies/<slug:slug>/imports/", api.ImportView.as_view(), name="annotate-api-import"),
    path(
        "studies/<slug:slug>/imports/<int:job_id>/",
        api.ImportJobView.as_view(),
        name="annotate-api-import-job",
    ),
    path("studies/<slug:slug>/labels/", api.LabelExportView.as_view(), name="annotate-api-labels"),
    path(
        "studies/<slug:slug>/labels.<str:format>",
        api.LabelExportView.as_view(),
        name="annotate-api-labels-as",
    ),
]
