from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("pymc", "pytensor", "nutpie", "numba", "arviz")


def test_reading_fits_imports_no_sampler() -> None:
    # A web process reads stored draws and summarises them: that must not pay PyMC's import.
    code = (
        "import sys\n"
        "import calibration.bayes.posterior, calibration.bayes.fit\n"
        "import calibration.bayes.decision, calibration.bayes.select\n"
        "from calibration.bayes.fit import DimensionFit, Fitter, MODEL_VERSION\n"
        f"heavy = {HEAVY!r}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"heavy modules imported: {proc.stdout} {proc.stderr}"


def test_model_version_is_shared_by_the_model_and_the_light_module() -> None:
    from calibration.bayes import model, posterior

    assert model.MODEL_VERSION is posterior.MODEL_VERSION
