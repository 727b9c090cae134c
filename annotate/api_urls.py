from __future__ import annotations

from django.urls import path

from . import api_queue

urlpatterns: list = [
    path("studies/<slug:slug>/next/", api_queue.next_item, name="annotate-api-next"),
    path("assignments/<int:assignment_id>/submit/", api_queue.submit, name="annotate-api-submit"),
    path("assignments/<int:assignment_id>/skip/", api_queue.skip, name="annotate-api-skip"),
    path("annotations/<int:annotation_id>/undo/", api_queue.undo, name="annotate-api-undo"),
]
