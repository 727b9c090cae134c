"""Background work of the calibration app, through Django's tasks API.

Production runs ``manage.py db_worker`` (django-tasks-db) beside the web server; tests use
the immediate backend. The task only carries the fit id: the Fit row is the state.
"""

from __future__ import annotations

from django.tasks import task

from calibration import services


@task
def fit_study(fit_id: int) -> str:
    """Run a queued fit (idempotent: a fit that is not queued any more is left alone)."""
    fit = services.run_fit(fit_id=fit_id)
    return fit.status if fit is not None else "skipped"
