"""REST API of the annotate app: import a file, export the labels (admins; export also leads).

An import runs in the request by default (201 with the report, 400 with the problems);
``?async=1`` stores the file and leaves it to the worker (202 with the job's URL, which
admins and leads may poll).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, renderers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.services import import_details, record

from ..models import Study
from ..permissions import ADMIN, LEAD_OR_ADMIN, IsStudyMember
from .exporting import CONTENT_TYPES, iter_labels
from .importing import ImportFailed, import_file
from .serializers import ImportJobSerializer, ImportReportSerializer, ImportUploadSerializer
from .services import expire_lost_jobs, start_import

ASYNC_VALUES = ("1", "true", "yes", "on")

PROBLEMS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "file": {"type": "string"},
            "line": {"type": "integer", "description": "1-based line of the file."},
            "field": {"type": "string", "description": "e.g. responses.cand1.scores.style"},
            "message": {"type": "string"},
            "expected": {"type": "string"},
        },
        "required": ["file", "line", "field", "message", "expected"],
    },
}


# A form that never reached the importer (no file, an unknown format): DRF's field errors.
FORM_ERRORS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


class ImportView(generics.GenericAPIView):
    """Import a JSONL or long-CSV file into the study, all or nothing (study admins)."""

    permission_classes = [IsStudyMember(roles=ADMIN)]  # type: ignore[list-item]
    study: Study  # set by IsStudyMember
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImportUploadSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "async",
                OpenApiTypes.BOOL,
                description="1: import in the worker and answer 202 at once with the job, "
                "whose url says how it goes (large files).",
            )
        ],
        request={"multipart/form-data": ImportUploadSerializer},
        responses={
            201: ImportReportSerializer,
            202: OpenApiResponse(
                ImportJobSerializer, description="Queued for the worker (?async=1)."
            ),
            # drf-spectacular describes many=True as an array for 2xx only (its issue #402).
            400: OpenApiResponse(
                {"oneOf": [PROBLEMS_SCHEMA, FORM_ERRORS_SCHEMA]},
                description="The file was refused and nothing was written: its problems, "
                "first line first; or the form itself was invalid (no file, an unknown "
                "format): field → messages.",
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        upload = self.get_serializer(data=request.data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        if request.query_params.get("async", "").lower() in ASYNC_VALUES:
            job = start_import(
                user=request.user,
                study=self.study,
                upload=file,
                fmt=upload.validated_data.get("format"),
                via="api",
            )
            job.refresh_from_db()  # the immediate backend (tests) has run it already
            data = ImportJobSerializer(job, context={"request": request}).data
            return Response(
                data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]}
            )
        try:
            report = import_file(
                file, study=self.study, filename=file.name, fmt=upload.validated_data.get("format")
            )
        except ImportFailed as failed:
            return Response(
                [p.as_dict() for p in failed.problems], status=status.HTTP_400_BAD_REQUEST
            )
        record(
            actor=request.user,
            action="data.import",
            study=self.study,
            details=import_details(report, via="api"),
        )
        return Response(ImportReportSerializer(report).data, status=status.HTTP_201_CREATED)


class ImportJobView(generics.GenericAPIView):
    """How an import in the worker is going, and how it ended (study admins and leads)."""

    permission_classes = [IsStudyMember(roles=LEAD_OR_ADMIN)]  # type: ignore[list-item]
    study: Study  # set by IsStudyMember
    serializer_class = ImportJobSerializer

    def get(self, request: Request, slug: str, job_id: int) -> Response:
        expire_lost_jobs(study=self.study)
        job = get_object_or_404(self.study.import_jobs.select_related("study"), pk=job_id)
        return Response(self.get_serializer(job).data)


class _TextRenderer(renderers.BaseRenderer):
    """Names a streamed format for content negotiation (``?format=`` or a ``.csv`` suffix).

    Successful responses are streamed by the view and never pass through ``render``; error
    payloads (403, 404) do, and come out as JSON text.
    """

    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        return json.dumps(data).encode()


class CSVRenderer(_TextRenderer):
    media_type = "text/csv"
    format = "csv"


class JSONLinesRenderer(_TextRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


class LabelExportView(generics.GenericAPIView):
    """Every live human label of the study, one row per label, streamed (admins and leads)."""

    permission_classes = [IsStudyMember(roles=LEAD_OR_ADMIN)]  # type: ignore[list-item]
    study: Study  # set by IsStudyMember
    renderer_classes = [CSVRenderer, JSONLinesRenderer]
    pagination_class = None

    def handle_exception(self, exc: Exception) -> Response:
        # Refusals (401/403/404) are JSON, and must say so: rendered by the CSV or JSON
        # Lines renderer negotiated for the export, they would be labelled text/csv.
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = renderers.JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=["csv", "jsonl"],
                description="csv (default) or jsonl; labels.csv and labels.jsonl do the same.",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="Header study,prompt_id,region,arm,annotator,dimension,value,"
                "passed,status,flagged,created_at; then one row per label.",
            ),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One JSON object per label, same keys."
            ),
        },
    )
    def get(self, request: Request, slug: str, format: str | None = None) -> StreamingHttpResponse:
        fmt = request.accepted_renderer.format
        record(
            actor=request.user,
            action="export.labels",
            study=self.study,
            details={"format": fmt, "via": "api"},
        )
        response = StreamingHttpResponse(
            iter_labels(study=self.study, fmt=fmt), content_type=CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="{self.study.slug}-labels.{fmt}"'
        return response
