"""Shared helpers of the bayes benchmarks (machine info, git HEAD, baselines).

Results files are written by ``bench/results_io.py``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Z975 = 1.959963984540054


def machine_info() -> dict[str, Any]:
    import nutpie
    import pymc
    import pytensor

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "pymc": pymc.__version__,
        "nutpie": nutpie.__version__,
        "pytensor": pytensor.__version__,
        "numpy": np.__version__,
        "note": "2 cores shared with other engineers' processes: timings are noisy upper bounds",
    }


def git_head() -> str | None:
    """The commit the working tree is at (None outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def wald_diff(y_c: np.ndarray, y_i: np.ndarray) -> tuple[float, float, float]:
    """Human-only Wald interval for ``mean(y_c) − mean(y_i)`` (independent arms)."""
    pc, pi = y_c.mean(), y_i.mean()
    se = np.sqrt(pc * (1 - pc) / y_c.size + pi * (1 - pi) / y_i.size)
    d = pc - pi
    return float(d), float(d - Z975 * se), float(d + Z975 * se)


def ppi_arm(y: np.ndarray, yhat: np.ndarray, yhat_unlabelled: np.ndarray) -> tuple[float, float]:
    """PPI++ estimate of one arm's pass rate and its standard error.

    ``ppi_mean_ci`` with ``alpha=0.05`` (explicitly: its default is 0.1) gives a symmetric
    normal interval; its half-width / 1.96 is the standard error.
    """
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    y = y.astype(float)
    yhat = yhat.astype(float)
    yu = yhat_unlabelled.astype(float)
    est = float(np.ravel(ppi_mean_pointestimate(y, yhat, yu))[0])
    lo, hi = ppi_mean_ci(y, yhat, yu, alpha=0.05)
    se = (float(np.ravel(hi)[0]) - float(np.ravel(lo)[0])) / (2 * Z975)
    return est, se


def ppi_diff(
    arm_c: tuple[np.ndarray, np.ndarray, np.ndarray],
    arm_i: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[float, float, float]:
    """PPI++ interval for a difference of two arms' pass rates.

    Each arm is estimated on its own labelled/unlabelled responses (independent samples),
    so ``Δ̂ = θ̂_c − θ̂_inc`` with ``se = sqrt(se_c² + se_inc²)`` and a 95% normal interval.
    """
    ec, sc = ppi_arm(*arm_c)
    ei, si = ppi_arm(*arm_i)
    d = ec - ei
    se = float(np.hypot(sc, si))
    return d, d - Z975 * se, d + Z975 * se
