"""A worker lowers its CPU priority before a fit, so that requests on the same cores go first;
a fit run inside the web or test process (the immediate backend) leaves it alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import os, django; django.setup(); "
    "from calibration.tasks import yield_cpu_to_requests as y; y(); y(); "
    "print(os.getpriority(os.PRIO_PROCESS, 0))"
)


def niceness_after_a_fit_starts(**env: str) -> int:
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "BATON_INSECURE_DEV_KEY": "1",
        "DATABASE_URL": "",
        **env,
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no nice() on this platform")
def test_a_worker_yields_the_cpu_and_the_immediate_backend_does_not():
    if os.getpriority(os.PRIO_PROCESS, 0) != 0:
        pytest.skip("the test process itself runs niced")
    worker = {"TASKS_BACKEND": "django_tasks_db.DatabaseBackend"}
    assert niceness_after_a_fit_starts(**worker) == 10  # the default, once however often called
    assert niceness_after_a_fit_starts(**worker, WORKER_NICE="3") == 3
    assert niceness_after_a_fit_starts(**worker, WORKER_NICE="0") == 0
    immediate = "django.tasks.backends.immediate.ImmediateBackend"
    assert niceness_after_a_fit_starts(TASKS_BACKEND=immediate) == 0
