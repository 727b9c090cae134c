"""Background work of the annotate app, through Django's tasks API.

``manage.py db_worker`` runs it in production; tests use the immediate backend. The task
only carries the job id: the ImportJob row is the state.
"""

from __future__ import annotations

from django.tasks import task

from annotate import services_import


@task
def run_import(job_id: int) -> str:
    """Import an uploaded file (idempotent: a job that is not queued any more is left alone)."""
    job = services_import.run_import_job(job_id=job_id)
    return job.status if job is not None else "skipped"
