"""Serializers of the annotation queue's API (annotate/grading/api.py).

The item an annotator receives is built by ``queue.item_for_annotator`` and only
described here: it has no field for the arm, the model, the judge or the metadata.
"""

from __future__ import annotations

from rest_framework import serializers

from ..numbers import DB_INT_MAX


class DimensionItemSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    rubric = serializers.CharField(allow_blank=True)
    scale = serializers.ChoiceField(choices=["binary", "ordinal"])
    values = serializers.ListField(
        child=serializers.IntegerField(), help_text="The grades allowed, lowest first."
    )
    point_descriptions = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        help_text="One description per scale point, lowest first (may be empty).",
    )


class AnnotatorItemSerializer(serializers.Serializer):
    """What an annotator sees of a response: never which model wrote it."""

    assignment_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField(help_text="The lease ends then; submit before.")
    region = serializers.CharField(help_text="Name of the traffic segment of the prompt.")
    prompt = serializers.CharField()
    response = serializers.CharField()
    dimensions = DimensionItemSerializer(many=True)


class SubmitSerializer(serializers.Serializer):
    client_key = serializers.UUIDField(
        help_text="Chosen by the client once per submission; a replay returns the first result."
    )
    labels = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Dimension key → grade (0/1 binary, 1..K ordinal), one per dimension.",
    )
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    flagged = serializers.BooleanField(required=False, default=False)
    flag_reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200
    )
    time_spent_ms = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=DB_INT_MAX
    )


class SkipSerializer(serializers.Serializer):
    client_key = serializers.UUIDField()
    reason = serializers.CharField(max_length=200)


class AnnotationResultSerializer(serializers.Serializer):
    """The annotator's own annotation, as stored."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["graded", "skipped"])
    replayed = serializers.BooleanField(
        help_text="True when this client_key had already been submitted (nothing new stored)."
    )
    labels = serializers.DictField(child=serializers.IntegerField())
    skip_reason = serializers.CharField(allow_blank=True)
    flagged = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    undo_until = serializers.DateTimeField(help_text="Undo is accepted until then.")


class QueueRefusalSerializer(serializers.Serializer):
    """Why the queue gives nothing or refuses a submission (HTTP 409)."""

    code = serializers.ChoiceField(
        choices=["queue_closed", "lease_expired", "assignment_done", "undo_refused"]
    )
    reason = serializers.CharField()
