"""Background work of the calibration app, through Django's tasks API.

Production runs ``manage.py db_worker`` (django-tasks-db) beside the web server; tests use
the immediate backend. The task only carries the fit id: the Fit row is the state.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.tasks import task

from calibration import services


def yield_cpu_to_requests() -> None:
    """Lower this worker thread's CPU priority to ``settings.WORKER_NICE`` (once).

    The threads a sampler starts afterwards inherit it, so a fit uses the cores the web
    server leaves idle instead of competing with requests for them. Only in a worker: with
    the immediate backend the task runs inside the web (or test) process itself.
    """
    backend = str(settings.TASKS.get("default", {}).get("BACKEND", ""))
    if "Immediate" in backend or "Dummy" in backend or not hasattr(os, "nice"):
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < settings.WORKER_NICE:
        os.nice(settings.WORKER_NICE - current)


@task
def fit_study(fit_id: int) -> str:
    """Run a queued fit (idempotent: a fit that is not queued any more is left alone)."""
    yield_cpu_to_requests()
    fit = services.run_fit(fit_id=fit_id)
    return fit.status if fit is not None else "skipped"
