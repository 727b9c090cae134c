"""The upload page: study admins import a JSONL or long-CSV file from the browser."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.services import import_details, record

from .importing import FORMATS, ImportFailed, import_file
from .models import Arm, Dimension, Region
from .permissions import ADMIN, get_study_for


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .jsonl (or .ndjson) or .csv file.")
    format = forms.ChoiceField(
        choices=[("", "From the file name")] + [(f, f.upper()) for f in FORMATS],
        required=False,
    )


@login_required
def study_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the form. POST: import the file; show the report, or the problems (400)."""
    study = get_study_for(request.user, slug, roles=ADMIN)
    form = ImportForm(request.POST or None, request.FILES or None)
    ctx: dict[str, object] = {
        "study": study,
        "form": form,
        "arms": Arm.objects.filter(study=study).order_by("position", "id"),
        "dimensions": Dimension.objects.filter(study=study).order_by("position", "id"),
        "regions": Region.objects.filter(study=study).order_by("position", "id"),
    }
    status = 200
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            ctx["report"] = import_file(
                upload,
                study=study,
                filename=upload.name,
                fmt=form.cleaned_data["format"] or None,
            )
            record(
                actor=request.user,
                action="data.import",
                study=study,
                details=import_details(ctx["report"], via="upload"),
            )
        except ImportFailed as failed:
            ctx["problems"] = failed.problems
            status = 400
    elif request.method == "POST":
        status = 400
    return render(request, "annotate/study_upload.html", ctx, status=status)
