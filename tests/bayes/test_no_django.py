from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bayes_package_imports_without_django() -> None:
    code = (
        "import sys\n"
        "import calibration.bayes\n"
        "import calibration.bayes.data, calibration.bayes.model, calibration.bayes.fit\n"
        "import calibration.bayes.decision, calibration.bayes.simulate\n"
        "import calibration.bayes.replay, calibration.bayes.summaries\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
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
    assert proc.returncode == 0, f"django modules imported: {proc.stdout} {proc.stderr}"
