"""A real fit, end to end: database → counts → PyMC/nutpie → summary and draws."""

from __future__ import annotations

import pytest

from calibration import services
from calibration.bayes.fit import Fitter
from calibration.models import Fit
from tests.calibration.helpers import populate

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_a_real_fit_gives_verdicts_and_diagnostics_for_every_candidate_and_dimension(
    study, django_capture_on_commit_callbacks
):
    assert isinstance(services.get_fitter(), Fitter)  # the real one, not a fake
    populate(study, prompts_per_region=150, graded_share=0.25, seed=3)

    with django_capture_on_commit_callbacks(execute=True):  # the task runs on commit
        fit = services.request_fit(study=study, trigger=Fit.Trigger.MANUAL)
    fit.refresh_from_db()

    assert fit.status == Fit.Status.SUCCEEDED, fit.error
    assert services.latest_fit(study) == fit
    for dim in ("correctness", "refusal", "style"):
        diag = fit.diagnostics[dim]
        assert diag["max_rhat"] < 1.1 and diag["min_ess_bulk"] > 50, diag
        assert diag["divergences"] >= 0 and diag["seconds"] > 0
    cands = fit.summary["candidates"]
    assert [c["arm"] for c in cands] == ["cand1", "cand2"]
    for cand in cands:
        assert cand["verdict"] in {"go", "no-go", "undecided"}
        dims = {d["dimension"]: d for d in cand["dimensions"]}
        assert set(dims) == {"correctness", "refusal", "style"}
        for d in dims.values():
            # Same truth for every arm: Δ is near 0.
            assert d["lower"] < 0.05 and d["upper"] > -0.05 and d["lower"] < d["upper"]
    draws = services.load_draws(fit)
    assert draws["correctness"].theta.shape[1:] == (3, 2)
    assert draws["style"].confusion.shape[1:] == (3, 2, 5)
    assert 0 < draws["correctness"].theta.shape[0] <= services.DRAWS_STORED
