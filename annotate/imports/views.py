"""The upload page: study admins send a JSONL or long-CSV file; the worker imports it.

Every upload, small or large, becomes an :class:`~annotate.models.ImportJob`; its page
shows a progress bar that htmx refreshes every second until the job ends, then the counts,
or the problems with their line numbers.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from ..models import Arm, Dimension, Region
from ..permissions import ADMIN, get_study_for
from .importing import FORMATS
from .services import (
    JOB_MAX_PROBLEMS,
    expire_lost_jobs,
    start_import,
    upload_size_problem,
)

RECENT_JOBS = 5


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .jsonl (or .ndjson) or .csv file.")
    format = forms.ChoiceField(
        choices=[("", "From the file name")] + [(f, f.upper()) for f in FORMATS],
        required=False,
    )

    def clean_file(self) -> UploadedFile:
        file = self.cleaned_data["file"]
        if problem := upload_size_problem(file.size):
            raise forms.ValidationError(problem)
        return file


@login_required
def study_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the form and the recent uploads. POST: store the file, start its job, show it."""
    study = get_study_for(request.user, slug, roles=ADMIN)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = start_import(
            user=request.user,
            study=study,
            upload=form.cleaned_data["file"],
            fmt=form.cleaned_data["format"] or None,
            via="upload",
        )
        return redirect(job.get_absolute_url())
    ctx: dict[str, object] = {
        "study": study,
        "form": form,
        "jobs": study.import_jobs.all()[:RECENT_JOBS],
        "max_upload_bytes": settings.IMPORT_MAX_UPLOAD_BYTES,
        "arms": Arm.objects.filter(study=study).order_by("position", "id"),
        "dimensions": Dimension.objects.filter(study=study).order_by("position", "id"),
        "regions": Region.objects.filter(study=study).order_by("position", "id"),
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "annotate/study_upload.html", ctx, status=status)


@login_required
def upload_job(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    """One upload's progress; the htmx poll gets the fragment, and 286 once the job ended."""
    study = get_study_for(request.user, slug, roles=ADMIN)
    expire_lost_jobs(study=study)
    job = get_object_or_404(study.import_jobs.select_related("study"), pk=job_id)
    ctx = {"study": study, "job": job, "max_problems": JOB_MAX_PROBLEMS}
    if not request.htmx:
        return render(request, "annotate/upload_job.html", ctx)
    fragment = render(request, "annotate/upload_job.html#import-job", ctx)
    if not job.is_done:
        return fragment
    # 286 stops htmx's polling; the final state is swapped in all the same.
    return HttpResponseStopPolling(fragment.content, content_type=fragment["Content-Type"])
