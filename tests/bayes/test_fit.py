from __future__ import annotations

import numpy as np
import pytest

from calibration.bayes.decision import delta_draws
from calibration.bayes.fit import DimensionFit, Fitter, diagnose
from calibration.bayes.model import MODEL_VERSION
from calibration.bayes.simulate import reveal_uniform, simulate_study


def _fit(s: int = 4000) -> DimensionFit:
    rng = np.random.default_rng(0)
    return DimensionFit(
        arms=("inc", "cand", "cand2"),
        regions=("eu", "us"),
        n_bins=2,
        theta=rng.random((s, 3, 2)),
        confusion=rng.random((s, 3, 2, 2)),
        diagnostics={"max_rhat": 1.004, "min_ess_bulk": 812.0, "divergences": 0.0},
        ok=True,
        seed=42,
        counts_digest="ab" * 32,
    )


def test_serialisation_round_trip_thins_to_float32() -> None:
    fit = _fit()
    blob = fit.to_bytes(max_draws=1000)
    back = DimensionFit.from_bytes(blob)
    assert back.theta.shape == (1000, 3, 2)
    assert back.theta.dtype == np.float32
    assert back.confusion.shape == (1000, 3, 2, 2)
    idx = np.linspace(0, 3999, 1000).round().astype(int)
    np.testing.assert_allclose(back.theta, fit.theta[idx], rtol=1e-6)
    assert (back.arms, back.regions, back.n_bins) == (fit.arms, fit.regions, 2)
    assert back.diagnostics == fit.diagnostics
    assert (back.ok, back.seed, back.counts_digest) == (True, 42, fit.counts_digest)
    assert back.model_version == MODEL_VERSION
    assert len(blob) < 120_000


def test_from_bytes_rejects_other_payloads() -> None:
    with pytest.raises(ValueError):
        DimensionFit.from_bytes(b"not an npz")


@pytest.mark.parametrize(
    ("diag", "ok"),
    [
        ({"max_rhat": 1.01, "min_ess_bulk": 400.0, "divergences": 5.0}, True),
        ({"max_rhat": 1.02, "min_ess_bulk": 4000.0, "divergences": 0.0}, False),
        ({"max_rhat": 1.0, "min_ess_bulk": 399.0, "divergences": 0.0}, False),
        ({"max_rhat": 1.0, "min_ess_bulk": 4000.0, "divergences": 6.0}, False),
    ],
)
def test_ok_thresholds(diag: dict[str, float], ok: bool) -> None:
    assert DimensionFit.is_ok(diag) is ok


def test_diagnose_independent_chains() -> None:
    rng = np.random.default_rng(3)
    post = {"theta": rng.normal(size=(2, 1000, 3, 2)), "mu": rng.normal(size=(2, 1000))}
    stuck = {"theta": post["theta"] + np.array([0.0, 3.0])[:, None, None, None]}
    d = diagnose(post, np.zeros((2, 1000), dtype=bool))
    assert d["max_rhat"] < 1.01
    assert d["min_ess_bulk"] > 1000
    assert d["divergences"] == 0
    assert diagnose(stuck, np.ones((2, 1000), dtype=bool))["max_rhat"] > 1.5


@pytest.mark.slow
def test_real_fit_recovers_simulated_truth_and_reuses_the_compiled_model() -> None:
    theta = np.array([[0.70, 0.80, 0.60, 0.75], [0.66, 0.78, 0.55, 0.70], [0.75, 0.85, 0.68, 0.80]])
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    study = simulate_study(
        theta=theta,
        weights=weights,
        sensitivity=0.9,
        specificity=0.85,
        n_per_arm=200_000,
        seed=11,
    )
    counts = study.cells(reveal_uniform(study, 300, seed=12))
    fitter = Fitter()
    fit = fitter.fit(counts, seed=5)
    assert fit.diagnostics["max_rhat"] <= 1.01
    assert fit.diagnostics["divergences"] <= 5
    assert fit.ok
    truth = study.true_delta()
    for c in (1, 2):
        lo, hi = np.quantile(delta_draws(fit.theta, weights, c), [0.025, 0.975])
        assert lo <= truth[c] <= hi
    sens = fit.confusion[:, :, 1, 1].mean(axis=0)
    np.testing.assert_allclose(sens, 0.9, atol=0.05)

    # A refit with other labels swaps data into the cached model, and is reproducible.
    counts2 = study.cells(reveal_uniform(study, 200, seed=13))
    again = fitter.fit(counts2, seed=6)
    assert len(fitter.cached_models) == 1
    assert again.diagnostics["compile_seconds"] == 0.0
    assert again.counts_digest != fit.counts_digest
    same = fitter.fit(counts2, seed=6)
    np.testing.assert_array_equal(same.theta, again.theta)


@pytest.mark.parametrize(
    ("draws", "phi", "chains"),
    # 3 and 5 chains: what an ESS top-up of Fitter.fit diagnoses.
    [(2000, 0.0, 2), (1001, 0.9, 2), (500, 0.97, 2), (800, -0.3, 2), (700, 0.8, 3), (400, 0.9, 5)],
)
def test_vectorised_diagnostics_agree_with_arviz(draws: int, phi: float, chains: int) -> None:
    import arviz as az

    from calibration.bayes.posterior import _rhat_ess

    rng = np.random.default_rng(draws)
    noise = rng.normal(size=(chains, draws, 4, 3))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0]
    for t in range(1, draws):  # AR(1) chains: autocorrelated like MCMC output
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    x[1, :, 0] += 0.3  # one entry whose chains disagree
    x[:, :, 1, 1] = 7.0  # a constant entry is ignored
    flat = x.reshape(chains, draws, -1)[:, :, np.r_[0:4, 5:12]]
    expected = (
        float(np.nanmax(az.rhat(flat, chain_axis=0, draw_axis=1))),
        float(np.nanmin(az.ess(flat, chain_axis=0, draw_axis=1, method="bulk"))),
        float(np.nanmin(az.ess(flat, chain_axis=0, draw_axis=1, method="tail", prob=(0.05, 0.95)))),
    )
    np.testing.assert_allclose(_rhat_ess(x), expected, rtol=1e-9)
