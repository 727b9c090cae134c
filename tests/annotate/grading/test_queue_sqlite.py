"""The queue under threads on SQLite: writers serialised by BEGIN IMMEDIATE, no double lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_threads_on_a_sqlite_file_never_share_a_lease_and_lose_no_grade(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("checks the SQLite configuration; PostgreSQL has its own threaded test")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        SQLITE_PATH=str(tmp_path / "queue.sqlite3"),
        BATON_INSECURE_DEV_KEY="1",
        TASKS_BACKEND="django.tasks.backends.immediate.ImmediateBackend",
        PYTHONPATH=str(ROOT),
    )
    run = subprocess.run(
        [sys.executable, "-m", "tests.annotate.grading.sqlite_threads_check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["problems"] == []
    assert summary["grades"] >= 30
