"""Imports in the worker: an uploaded file becomes an :class:`ImportJob`, a task imports it.

Life of a job::

    start_import ──▶ queued ──(worker: run_import_job)──▶ running ──▶ succeeded | failed

* The upload is saved to the default storage (``MEDIA_ROOT``) and the task is enqueued on
  commit. Every upload takes this path, whatever its size; with the immediate backend
  (tests) the job has ended by the time the request answers.
* Claiming a job is a conditional UPDATE (``queued → running``), so a duplicate task finds
  nothing to do.
* The import itself is :func:`annotate.imports.importing.import_file`: all or nothing. The job's
  outcome is stored in the same transaction as the data, so *succeeded* means imported and
  *failed* means nothing was.
* Progress (bytes read) is written at most every :data:`PROGRESS_INTERVAL` seconds, through
  a second database connection, because the import's own transaction is invisible to the
  page that polls until it commits (see :class:`ProgressWriter`).
* A job left ``running`` by a killed worker shows no sign of life: after
  :data:`STALE_AFTER` it is marked failed when a job of its study is next read or started
  (as :mod:`calibration.services` does for fits).
* The stored file is deleted when the job ends, whatever the outcome: a failed job keeps
  its problems (file, line, field, message), not the data.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from accounts.services import import_details, record

from ..models import ImportJob, Study
from .importing import ImportFailed, ImportReport, import_file

logger = logging.getLogger(__name__)

#: The importer stops looking after this many problems (the job says "at least" then).
JOB_MAX_PROBLEMS = 1000
#: Problems kept on the job and shown, first line first.
ERRORS_KEPT = 100
#: Seconds between two progress writes.
PROGRESS_INTERVAL = 0.5
#: A running job with no sign of life for this long has lost its worker. Progress is a sign
#: of life on PostgreSQL (every 0.5 s); on SQLite only the start is, so this is also the
#: longest a SQLite import may take.
STALE_AFTER = timedelta(hours=1)

LOST_MESSAGE = (
    f"The worker stopped answering (no progress for {STALE_AFTER.total_seconds() / 60:.0f} "
    "minutes): it was probably stopped or killed. Nothing was imported; upload the file again."
)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def upload_size_problem(size: int | None) -> str | None:
    """Why a file of ``size`` bytes is refused (``IMPORT_MAX_UPLOAD_BYTES``), or None."""
    limit = settings.IMPORT_MAX_UPLOAD_BYTES
    if size is None or size <= limit:
        return None
    return (
        f"The file is {_human_bytes(size)}; the largest upload accepted is "
        f"{_human_bytes(limit)} (IMPORT_MAX_UPLOAD_BYTES). Split it into several files: "
        "each one is imported on its own, and importing a line again changes nothing."
    )


# ---------------------------------------------------------------------------------------
# Starting a job


def _enqueue(job_id: int) -> None:
    from ..tasks import run_import

    transaction.on_commit(lambda: run_import.enqueue(job_id))


def start_import(
    *, user: Any, study: Study, upload: UploadedFile, fmt: str | None = None, via: str
) -> ImportJob:
    """Store ``upload``, create its job and enqueue the import (on commit)."""
    name = (upload.name or "upload")[:255]
    job = ImportJob(
        study=study,
        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        filename=name,
        format=fmt or "",
        bytes_total=upload.size or 0,
    )
    job.file.save(name, upload, save=False)
    try:
        with transaction.atomic():
            expire_lost_jobs(study=study)
            job.save()
            record(
                actor=user,
                action="data.upload",
                study=study,
                target=job,
                details={"job": job.pk, "file": name, "bytes": job.bytes_total,
                         "format": job.format, "via": via},
            )  # fmt: skip
            _enqueue(job.pk)
    except BaseException:
        job.file.delete(save=False)
        raise
    return job


# ---------------------------------------------------------------------------------------
# Lost workers


def expire_lost_jobs(*, study: Study, now: datetime | None = None) -> int:
    """Mark the study's jobs whose worker was lost as failed (and drop their files)."""
    now = now or timezone.now()
    lost = list(
        ImportJob.objects.filter(
            study=study, status=ImportJob.Status.RUNNING, progress_at__lt=now - STALE_AFTER
        ).values_list("pk", "file")
    )
    if not lost:
        return 0
    n = ImportJob.objects.filter(
        pk__in=[pk for pk, _ in lost], status=ImportJob.Status.RUNNING
    ).update(status=ImportJob.Status.FAILED, finished_at=now, error_message=LOST_MESSAGE, file="")
    for _, name in lost:
        _delete_on_commit(name)
    logger.warning("%s import job(s) of %s marked failed: worker lost", n, study.slug)
    return n


def _delete_on_commit(name: str) -> None:
    if not name:
        return

    def delete() -> None:
        try:
            ImportJob.file.field.storage.delete(name)
        except OSError:
            logger.exception("could not delete the uploaded file %s", name)

    transaction.on_commit(delete)


# ---------------------------------------------------------------------------------------
# Running a job


class ProgressWriter:
    """``import_file``'s progress callback for a job: bytes read, at most every 0.5 s.

    The import runs in one transaction: a write through the same connection would be
    invisible to the polling page until the import commits, and rolled back with it on
    failure. On PostgreSQL the progress goes through a second connection, in autocommit,
    with a short lock timeout (the job row is not locked by the import: its outcome is
    written after the last progress). SQLite allows one writer at a time and the import
    holds it, so there the job shows "running" without a percentage until it ends.
    A progress write that fails is logged and progress reporting stops; the import goes on.
    """

    def __init__(self, job_id: int, *, interval: float = PROGRESS_INTERVAL) -> None:
        self.job_id = job_id
        self.interval = interval
        self.enabled = connection.vendor == "postgresql"
        self.writes = 0
        self._last = float("-inf")
        self._conn: Any = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        try:
            if self._conn is None:
                self._conn = connections.create_connection(DEFAULT_DB_ALIAS)
                with self._conn.cursor() as cursor:
                    cursor.execute("SET lock_timeout = '2s'")
            table = self._conn.ops.quote_name(ImportJob._meta.db_table)
            with self._conn.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET bytes_processed = %s, progress_at = %s "  # noqa: S608
                    "WHERE id = %s AND status = %s",
                    [done, timezone.now(), self.job_id, ImportJob.Status.RUNNING],
                )
            self.writes += 1
        except DatabaseError:
            logger.warning("import job %s: progress not written", self.job_id, exc_info=True)
            self.enabled = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _claim(job_id: int) -> bool:
    """``queued → running``, atomically; False if the job is not queued any more."""
    now = timezone.now()
    return bool(
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.RUNNING, started_at=now, progress_at=now
        )
    )


class _Lost(Exception):
    """The job was declared lost while it ran: roll its import back."""


def _finish(job: ImportJob, **fields: Any) -> bool:
    """Store the outcome if the job is still ours (not declared lost meanwhile)."""
    stored = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        finished_at=timezone.now(), file="", **fields
    )
    return bool(stored)


def _report_fields(report: ImportReport) -> dict[str, Any]:
    return {
        "format": report.format,
        "lines": report.lines,
        "bytes_processed": F("bytes_total"),  # the whole file was read
        "prompts_created": report.prompts.created,
        "prompts_updated": report.prompts.updated,
        "responses_created": report.responses.created,
        "responses_updated": report.responses.updated,
        "scores_created": report.scores.created,
        "scores_updated": report.scores.updated,
        "report": {k: v for k, v in report.as_dict().items() if k != "phases"},
    }


def run_import_job(*, job_id: int) -> ImportJob | None:
    """Import a queued job's file; returns the job, or None if it was not queued any more."""
    if not _claim(job_id):
        logger.info("import job %s not claimed (taken or finished)", job_id)
        return None
    job = ImportJob.objects.select_related("study", "uploaded_by").get(pk=job_id)
    via = "worker"
    writer = ProgressWriter(job.pk)
    try:
        with job.file.open("rb") as stream, transaction.atomic():
            report = import_file(
                stream,
                study=job.study,
                filename=job.filename,
                fmt=job.format or None,
                max_problems=JOB_MAX_PROBLEMS,
                progress=writer,
            )
            writer.close()  # its last write must not wait on the row we now update
            if not _finish(job, status=ImportJob.Status.SUCCEEDED, **_report_fields(report)):
                raise _Lost
            record(
                actor=job.uploaded_by,
                action="data.import",
                study=job.study,
                target=job,
                details={**import_details(report, via=via), "job": job.pk},
            )
    except ImportFailed as failed:
        writer.close()
        problems = failed.problems
        with transaction.atomic():
            if _finish(
                job,
                status=ImportJob.Status.FAILED,
                errors=[p.as_dict() for p in problems[:ERRORS_KEPT]],
                error_count=len(problems),
            ):
                record(
                    actor=job.uploaded_by,
                    action="data.import_failed",
                    study=job.study,
                    target=job,
                    details={"job": job.pk, "file": job.filename, "problems": len(problems),
                             "first": str(problems[0]) if problems else "", "via": via},
                )  # fmt: skip
    except _Lost:
        logger.warning("import job %s was declared lost meanwhile; its import rolled back", job_id)
    except Exception as exc:  # noqa: BLE001 — any failure is recorded on the job
        writer.close()
        logger.exception("import job %s failed", job_id)
        message = (
            "The uploaded file is missing from storage: the web server and the worker must "
            "share MEDIA_ROOT."
            if isinstance(exc, FileNotFoundError)
            else f"The import stopped on an internal error ({type(exc).__name__}: {exc}). "
            "Nothing was imported."
        )
        with transaction.atomic():
            if _finish(job, status=ImportJob.Status.FAILED, error_message=message):
                record(
                    actor=job.uploaded_by,
                    action="data.import_failed",
                    study=job.study,
                    target=job,
                    details={"job": job.pk, "file": job.filename, "error": message, "via": via},
                )
    finally:
        writer.close()
        try:
            if job.file.name:
                job.file.storage.delete(job.file.name)
        except OSError:
            logger.exception("could not delete the uploaded file of import job %s", job_id)
    job.refresh_from_db()
    return job
