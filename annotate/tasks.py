"""Background work of the annotate app, through Django's tasks API.

``manage.py db_worker`` runs it in production; tests use the immediate backend. The task
only carries the job id: the ImportJob row is the state.
"""

from __future__ import annotations

from django.tasks import task

from annotate.imports import services as import_services
from annotate.models import ImportJob


class ImportRefused(Exception):
    """The file was refused: the job holds its problems, and the task ends as failed, so the
    worker's log says so instead of reporting a refused import as a successful task."""


@task
def run_import(job_id: int) -> str:
    """Import an uploaded file (idempotent: a job that is not queued any more is left alone)."""
    job = import_services.run_import_job(job_id=job_id)
    if job is None:
        return "skipped"
    if job.status == ImportJob.Status.FAILED:
        first = (job.errors or [{}])[0]
        where = ", ".join(
            f"{k} {first[k]}" for k in ("file", "line", "field") if first.get(k) not in (None, "")
        )
        problem = first.get("message") or job.error_message or "refused"
        raise ImportRefused(
            f"import job {job.pk} of study {job.study.slug!r} ({job.filename}) refused: "
            f"{job.error_count or 1} problem(s); first: {problem}"
            + (f" ({where})" if where else "")
        )
    return job.status
