from __future__ import annotations

from django.contrib import admin

from .models import Fit


@admin.register(Fit)
class FitAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "status", "trigger", "n_labels", "trustworthy", "created_at"]
    list_filter = ["status", "trustworthy", "study"]
    readonly_fields = ["counts_hash", "model_version", "seed", "diagnostics", "summary", "error"]
