from __future__ import annotations

from typing import Any

from django.contrib import admin

from . import models

# Frozen once the study has a grade: changed only by a re-plan (calibration.replans), never
# here, where no confirmation, audit entry or error accounting would follow.
STUDY_PLAN_FIELDS = ("label_budget", "confidence", "audit_share")


def _frozen(study: models.Study | None) -> bool:
    return study is not None and study.pk is not None and study.plan_frozen()


class ArmInline(admin.TabularInline):
    model = models.Arm
    extra = 0


class DimensionInline(admin.StackedInline):
    model = models.Dimension
    extra = 0

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        extra = ("margin",) if _frozen(obj) else ()
        return (*super().get_readonly_fields(request, obj), *extra)


class RegionInline(admin.TabularInline):
    model = models.Region
    extra = 0


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(models.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "status", "confidence", "label_budget", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ArmInline, DimensionInline, RegionInline, MembershipInline]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        extra = STUDY_PLAN_FIELDS if _frozen(obj) else ()
        return (*super().get_readonly_fields(request, obj), *extra)


@admin.register(models.Arm)
class ArmAdmin(admin.ModelAdmin):
    list_display = ["model_name", "key", "role", "study"]
    list_filter = ["role", "study"]


@admin.register(models.Dimension)
class DimensionAdmin(admin.ModelAdmin):
    list_display = ["title", "key", "scale", "pass_threshold", "margin", "study"]
    list_filter = ["scale", "study"]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        extra = ("margin",) if obj is not None and _frozen(obj.study) else ()
        return (*super().get_readonly_fields(request, obj), *extra)


@admin.register(models.Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "traffic_share", "study"]
    list_filter = ["study"]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "study", "role", "created_at"]
    list_filter = ["role", "study"]
    autocomplete_fields = ["user"]


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["external_id", "study", "region"]
    list_filter = ["study"]
    search_fields = ["external_id"]
    list_select_related = ["study", "region"]
    raw_id_fields = ["region"]


@admin.register(models.Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "arm", "region", "cell"]
    list_filter = ["study", "arm"]
    search_fields = ["prompt__external_id"]
    list_select_related = ["prompt", "arm", "region"]
    raw_id_fields = ["prompt", "arm", "study", "region"]


class LabelInline(admin.TabularInline):
    model = models.Label
    extra = 0


@admin.register(models.Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "response", "annotator", "status", "flagged", "created_at", "undone_at"]
    list_filter = ["study", "status", "flagged"]
    raw_id_fields = ["response", "annotator", "study"]
    inlines = [LabelInline]


@admin.register(models.Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["annotation", "dimension", "value"]
    raw_id_fields = ["annotation", "dimension"]


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["response", "annotator", "policy", "probability", "leased_at", "completed_at"]
    list_filter = ["study", "policy"]
    raw_id_fields = ["response", "annotator", "study"]


@admin.register(models.ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["filename", "study", "status", "uploaded_by", "responses_created", "created_at"]
    list_filter = ["status"]
    search_fields = ["filename", "study__slug"]
    list_select_related = ["study", "uploaded_by"]
    # Written by the worker only: the admin shows a job, it does not run one.
    readonly_fields = [f.name for f in models.ImportJob._meta.fields]
