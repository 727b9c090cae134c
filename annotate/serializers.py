"""Serializers of the annotate API: import and label export (others add theirs here)."""

from __future__ import annotations

from rest_framework import serializers

from .exporting import EXPORT_FORMATS
from .importing import FORMATS


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A .jsonl/.ndjson or .csv file (README: Import formats)."
    )
    format = serializers.ChoiceField(
        choices=FORMATS, required=False, help_text="Default: from the file name's extension."
    )


class CountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class ImportReportSerializer(serializers.Serializer):
    file = serializers.CharField()
    format = serializers.ChoiceField(choices=FORMATS)
    study = serializers.SlugField()
    lines = serializers.IntegerField(help_text="Interactions (prompts) in the file.")
    prompts = CountsSerializer()
    responses = CountsSerializer()
    scores = CountsSerializer()
    cuts_fixed = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="Judge cut points fixed by this import, per dimension key.",
    )
    seconds = serializers.FloatField()


class LabelExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, required=False, default="csv")
