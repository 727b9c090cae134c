"""config/warmup.py: every step runs in a fresh process, and the WSGI module runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import config.wsgi  # loads the app and warms it up, as a gunicorn worker does
from config.warmup import STEPS
wanted = {"pandas", "xarray", "calibration.report", "plotly.graph_objs"}
print(json.dumps({
    "missing": sorted(wanted - set(sys.modules)),
    "steps": [name for name, _ in STEPS],
}))
"""


def test_loading_the_wsgi_app_imports_what_first_requests_race_on():
    env = {**os.environ, "BATON_INSECURE_DEV_KEY": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("BATON_WARMUP", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["missing"] == []
    assert "warm-up done" in out.stderr and "failed" not in out.stderr


def test_every_warm_up_step_succeeds():
    from config.warmup import STEPS, warm_up

    done = warm_up()
    assert list(done) == [name for name, _ in STEPS]
    assert all(isinstance(seconds, float) for seconds in done.values()), done
