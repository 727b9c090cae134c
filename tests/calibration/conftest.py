from __future__ import annotations

import pytest

from calibration import services
from tests.calibration.helpers import FakeFitter


@pytest.fixture
def fake_fitter(monkeypatch) -> FakeFitter:
    fitter = FakeFitter()
    monkeypatch.setattr(services, "get_fitter", lambda: fitter)
    return fitter
