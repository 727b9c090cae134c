"""Serializers of the annotate API: import and label export (others add theirs here)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import ImportJob
from .exporting import EXPORT_FORMATS
from .importing import FORMATS
from .services import upload_size_problem


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl/.ndjson or .csv file (docs/importing.md).")
    format = serializers.ChoiceField(
        choices=FORMATS, required=False, help_text="Default: from the file name's extension."
    )

    def validate_file(self, file: Any) -> Any:
        if problem := upload_size_problem(file.size):
            raise serializers.ValidationError(problem)
        return file


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


class ImportJobCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class ImportProblemSerializer(serializers.Serializer):
    file = serializers.CharField()
    line = serializers.IntegerField(help_text="1-based line of the file.")
    field = serializers.CharField(help_text="e.g. responses.cand1.scores.style")
    message = serializers.CharField()
    expected = serializers.CharField()


class ImportJobSerializer(serializers.Serializer):
    """An upload being imported by the worker (``GET …/imports/{id}/``)."""

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="This job's status URL.")
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed"])
    file = serializers.CharField(source="filename", help_text="The file's name on upload.")
    format = serializers.CharField(help_text="jsonl or csv; empty until known.")
    bytes_total = serializers.IntegerField()
    bytes_processed = serializers.IntegerField(
        help_text="Bytes read so far (live on PostgreSQL; on SQLite only once the job ends)."
    )
    percent = serializers.IntegerField(allow_null=True, help_text="Share of the file read.")
    lines = serializers.IntegerField(help_text="Interactions in the file (once it succeeded).")
    prompts = serializers.SerializerMethodField()
    responses = serializers.SerializerMethodField()
    scores = serializers.SerializerMethodField()
    # Not "errors": that name is the serializer's own validation errors.
    problems = ImportProblemSerializer(
        source="errors",
        many=True,
        help_text="The file's problems, first line first (at most 100).",
    )
    problem_count = serializers.IntegerField(
        source="error_count", help_text="Problems found; the importer stops looking after 1000."
    )
    error_message = serializers.CharField(help_text="A failure that is not the file's.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_url(self, job: ImportJob) -> str:
        path = reverse("annotate-api-import-job", kwargs={"slug": job.study.slug, "job_id": job.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(ImportJobCountsSerializer)
    def get_prompts(self, job: ImportJob) -> dict[str, int]:
        return {"created": job.prompts_created, "updated": job.prompts_updated}

    @extend_schema_field(ImportJobCountsSerializer)
    def get_responses(self, job: ImportJob) -> dict[str, int]:
        return {"created": job.responses_created, "updated": job.responses_updated}

    @extend_schema_field(ImportJobCountsSerializer)
    def get_scores(self, job: ImportJob) -> dict[str, int]:
        return {"created": job.scores_created, "updated": job.scores_updated}
