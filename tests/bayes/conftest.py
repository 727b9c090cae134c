"""Fixtures for the pure-Python calibration package (no database, no Django)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The repo root is not necessarily on sys.path when pytest runs without the Django plugin.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: real sampling or large data")
