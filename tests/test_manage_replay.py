"""``manage.py replay`` runs from a fresh clone: no database, no SECRET_KEY (docs/replay.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.calibration.test_replay import _write_table

ROOT = Path(__file__).resolve().parent.parent


def _bare_env() -> dict[str, str]:
    """The environment of a fresh shell: none of the settings a deployment would set."""
    drop = {"SECRET_KEY", "DEBUG", "BATON_INSECURE_DEV_KEY", "DATABASE_URL",
            "DJANGO_SETTINGS_MODULE"}  # fmt: skip
    return {k: v for k, v in os.environ.items() if k not in drop}


def _manage(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=cwd, env=_bare_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_replay_needs_no_secret_key_while_other_commands_still_do(tmp_path):
    ok = _manage("replay", "--help", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "--incumbent" in ok.stdout
    refused = _manage("check", cwd=tmp_path)
    assert refused.returncode != 0 and "SECRET_KEY is not set" in refused.stderr


@pytest.mark.slow
def test_replay_runs_end_to_end_without_a_database(tmp_path):
    table, out = tmp_path / "t.csv.gz", tmp_path / "out.json"
    _write_table(table)
    r = _manage("replay", str(table), "--incumbent=A", "--candidate=B", "--dimension=fluency",
                "--judge=good", "--pass-threshold=3", "--judge-threshold=3", "--budget=24",
                "--batch=12", "--draws=150", "--no-stop", f"--out={out}", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["labels_used"] == 24
