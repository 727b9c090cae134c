"""The ESS top-up and the divergence retry of ``Fitter.fit``: the decision rule (pure), the
plumbing with a fake sampler (no PyMC), and one real fit (slow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from calibration.bayes.curve import design_for
from calibration.bayes.data import JointCells
from calibration.bayes.fit import (
    DIVERGENCES_MAX,
    ESS_MIN,
    RETRY_TARGET_ACCEPT,
    RHAT_MAX,
    TOP_UP_MAX_FACTOR,
    TOP_UP_RHAT_MAX,
    Fitter,
    _Derive,
    diagnose,
    ess_top_up_chains,
    retry_seed,
    top_up_seed,
)
from calibration.bayes.simulate import reveal_uniform, simulate_study


def _diag(rhat: float, ess: float, div: float) -> dict[str, float]:
    return {"max_rhat": rhat, "min_ess_bulk": ess, "divergences": div}


@pytest.mark.parametrize(
    ("diag", "chains", "expected"),
    [
        # ESS-only failures: sized so that the expected ESS is 1.25 · ESS_MIN = 500.
        (_diag(1.004, 380.0, 0.0), 2, 1),  # ceil(2 · (500/380 − 1)) = ceil(0.63)
        (_diag(1.004, 277.0, 0.0), 2, 2),  # ceil(2 · 0.805) = 2
        (_diag(1.017, 300.0, 3.0), 2, 2),  # R-hat a bit high, a few divergences: still
        (_diag(1.004, 200.0, 0.0), 2, 3),  # ceil(2 · 1.5) = 3
        (_diag(1.004, 140.0, 0.0), 2, 4),  # ceil(2 · 2.57) = 6, capped at 6 − 2
        (_diag(1.004, 350.0, 0.0), 3, 2),  # a second top-up sizes from all chains so far
        (_diag(1.004, 350.0, 0.0), 5, 1),  # ... and never beyond the cap (6 chains)
        # Not topped up.
        (_diag(1.004, 350.0, 0.0), 6, 0),  # the cap is reached
        (_diag(1.004, 120.0, 0.0), 2, 0),  # hopeless: 120 · 3 < 400 even at the cap
        (_diag(1.06, 300.0, 0.0), 2, 0),  # R-hat beyond TOP_UP_RHAT_MAX
        (_diag(2.23, 3.0, 437.0), 2, 0),  # a stuck chain (bench 10k, J = 3)
        (_diag(1.004, 300.0, 6.0), 2, 0),  # divergences beyond DIVERGENCES_MAX
        (_diag(1.02, 4000.0, 0.0), 2, 0),  # fails on R-hat alone: not an ESS problem
        (_diag(1.004, 400.0, 5.0), 2, 0),  # passes: nothing to do
        (_diag(float("nan"), 300.0, 0.0), 2, 0),
        (_diag(1.004, float("nan"), 0.0), 2, 0),
    ],
)
def test_top_up_rule(diag: dict[str, float], chains: int, expected: int) -> None:
    assert ess_top_up_chains(diag, chains=chains, max_chains=TOP_UP_MAX_FACTOR * 2) == expected


def test_top_up_rule_thresholds_are_the_documented_ones() -> None:
    assert (RHAT_MAX, ESS_MIN, DIVERGENCES_MAX) == (1.01, 400.0, 5)
    assert TOP_UP_RHAT_MAX == 1.05
    at = ess_top_up_chains(_diag(TOP_UP_RHAT_MAX, 300.0, DIVERGENCES_MAX), chains=2, max_chains=6)
    assert at > 0


def test_top_up_seeds_are_distinct_and_reproducible() -> None:
    seeds = {top_up_seed(s, k) for s in range(50) for k in (1, 2)} | set(range(50))
    assert len(seeds) == 150
    assert top_up_seed(7, 1) == top_up_seed(7, 1)
    assert all(0 <= top_up_seed(s, 2) < 2**63 for s in (0, 2**31 - 1))


# ---------------------------------------------------------------------------------------
# Fitter.fit with a fake sampler: the top-up loop without PyMC.


def _counts() -> JointCells:
    return JointCells(
        arms=("inc", "cand"),
        regions=("eu", "us"),
        n_bins=(2,),
        combos=np.array([[0], [1]]),
        totals=np.full((2, 2, 2), 4, dtype=np.int64),
        labelled=np.full((1, 2, 2, 2), 2, dtype=np.int64),
        passes=np.ones((1, 2, 2, 2), dtype=np.int64),
    )


def _design():
    cells = _counts()
    return design_for(cells.level_index(), cells.levels(), cells.n_bins, 0)


class _FakeSampler:
    """AR(1) chains (autocorrelation ``phi``; ``later_phi`` for the later runs) for the
    curve's parameters, seeded per run; ``shift`` moves every chain but the first of the first
    run (chains that disagree), ``divergent`` marks that many draws of the first run as
    divergent (``later_divergent``: of every later run)."""

    def __init__(
        self,
        phi: float,
        shift: float = 0.0,
        divergent: int = 0,
        later_phi: float | None = None,
        later_divergent: int = 0,
    ) -> None:
        self.phi, self.shift, self.divergent = phi, shift, divergent
        self.later_phi = phi if later_phi is None else later_phi
        self.later_divergent = later_divergent
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, model: Any, *, seed: int, draws: int, chains: int, **kw: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self.calls.append({"seed": seed, "chains": chains, "draws": draws, **kw})
        rng = np.random.default_rng(seed)
        m, r, j = 2, 2, 2
        first = len(self.calls) == 1
        phi = self.phi if first else self.later_phi
        noise = rng.normal(size=(chains, draws, m + m * j + m * r + m * r * j))
        x = np.empty_like(noise)
        x[:, 0] = noise[:, 0]
        for t in range(1, draws):  # stationary N(0, 1) whatever phi
            x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * noise[:, t]
        if first:
            x[1:] += self.shift
        diverging = np.zeros((chains, draws), dtype=bool)
        diverging[0, : self.divergent if first else self.later_divergent] = True
        sizes = {
            "intercept": (m,),
            "bin_effect": (m, j),
            "region_effect": (m, r),
            "region_bin_effect": (m, r, j),
        }
        out, at = {}, 0
        for name, shape in sizes.items():
            size = int(np.prod(shape))
            out[name] = x[:, :, at : at + size].reshape(chains, draws, *shape)
            at += size
        out["other_effect"] = np.zeros((chains, draws, m, 0))
        return out, diverging


def _fake_fitter(monkeypatch: pytest.MonkeyPatch, sampler: _FakeSampler) -> Fitter:
    fitter = Fitter()
    monkeypatch.setattr(fitter, "_compiled", lambda cells, d: (None, 0.0, _design()))
    monkeypatch.setattr(fitter, "_swap", lambda entry, cells, design: "model")
    monkeypatch.setattr(fitter, "_sample", sampler)
    return fitter


def test_fit_tops_up_an_ess_only_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = _FakeSampler(phi=0.6)  # integrated autocorrelation time ≈ 4 draws
    fit = _fake_fitter(monkeypatch, sampler).fit(_counts(), seed=3, draws=1000, tune=7)
    d = fit.diagnostics
    # The first run alone: ~2000 / 4 effective draws, and the min over ~30 scalars is
    # short of ESS_MIN.
    assert d["min_ess_bulk_first"] < ESS_MIN
    assert d["top_ups"] >= 1
    assert [c["seed"] for c in sampler.calls] == [3] + [
        top_up_seed(3, k) for k in range(1, len(sampler.calls))
    ]
    assert all(c["draws"] == 1000 and c["tune"] == 7 for c in sampler.calls)
    assert d["chains"] == sum(c["chains"] for c in sampler.calls) > 2
    assert d["chains"] <= TOP_UP_MAX_FACTOR * 2
    assert d["top_ups"] == len(sampler.calls) - 1
    # Diagnostics are over all chains: recompute them from the same runs.
    runs = [
        _FakeSampler(phi=0.6)(None, seed=c["seed"], draws=1000, chains=c["chains"])
        for c in sampler.calls
    ]
    every = {k: np.concatenate([p[k] for p, _ in runs]) for k in runs[0][0]}
    derive = _Derive(_counts(), _design(), 3)
    again = diagnose(derive(every), np.concatenate([div for _, div in runs]))
    assert d["min_ess_bulk"] == pytest.approx(again["min_ess_bulk"])
    assert d["min_ess_bulk"] > d["min_ess_bulk_first"]
    assert fit.ok is (d["min_ess_bulk"] >= ESS_MIN and d["max_rhat"] <= RHAT_MAX)
    assert fit.ok  # for these chains (with 2 × 500 draws the top-up ends at R-hat 1.01-1.02)
    # Returned draws are thinned back to the requested 2 × 1000.
    assert fit.theta.shape == (2000, 2, 2)
    assert fit.confusion.shape == (2000, 2, 2, 2)
    assert d["sample_seconds"] >= d["top_up_seconds"] > 0


@pytest.mark.parametrize(
    ("sampler", "why"),
    [
        (_FakeSampler(phi=0.6, shift=1.5), "chains disagree: R-hat"),
        (_FakeSampler(phi=0.6, divergent=DIVERGENCES_MAX + 1), "divergences"),
        (_FakeSampler(phi=0.0), "passes on the first run"),
    ],
)
def test_fit_does_not_top_up_other_failures(
    monkeypatch: pytest.MonkeyPatch, sampler: _FakeSampler, why: str
) -> None:
    fitter = _fake_fitter(monkeypatch, sampler)
    fit = fitter.fit(_counts(), seed=3, draws=500, divergence_retry=False)
    d = fit.diagnostics
    assert len(sampler.calls) == 1, why
    assert (d["top_ups"], d["chains"], d["top_up_seconds"]) == (0.0, 2.0, 0.0)
    for k in ("max_rhat", "min_ess_bulk", "divergences"):
        assert d[k] == d[f"{k}_first"]
    if why == "passes on the first run":
        assert fit.ok
    else:
        assert not fit.ok
        assert d["max_rhat"] > TOP_UP_RHAT_MAX or d["divergences"] > DIVERGENCES_MAX


def test_fit_without_top_ups_keeps_the_first_run(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = _FakeSampler(phi=0.6)
    fit = _fake_fitter(monkeypatch, sampler).fit(_counts(), seed=11, draws=500, ess_top_ups=0)
    assert len(sampler.calls) == 1
    assert fit.diagnostics["top_ups"] == 0.0
    assert fit.diagnostics["chains"] == 2.0
    assert not fit.ok  # the same ESS-only failure as above, left as it is
    with pytest.raises(ValueError):
        Fitter().fit(_counts(), seed=1, ess_top_ups=-1)


def test_at_most_ess_top_ups_runs_and_never_beyond_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The extra chains mix worse than the first ones, so the first top-up falls short.
    sampler = _FakeSampler(phi=0.5, later_phi=0.7)
    fit = _fake_fitter(monkeypatch, sampler).fit(_counts(), seed=3, draws=500)
    d = fit.diagnostics
    assert [c["chains"] for c in sampler.calls][0] == 2
    assert len(sampler.calls) == 3  # the default: at most 2 top-ups
    assert d["top_ups"] == 2.0
    assert d["min_ess_bulk_first"] < ESS_MIN
    assert 2 < d["chains"] <= TOP_UP_MAX_FACTOR * 2
    one = _FakeSampler(phi=0.5, later_phi=0.7)
    fit1 = _fake_fitter(monkeypatch, one).fit(_counts(), seed=3, draws=500, ess_top_ups=1)
    assert len(one.calls) == 2
    assert fit1.diagnostics["top_ups"] == 1.0
    assert fit1.diagnostics["chains"] == 2 + one.calls[1]["chains"]
    assert not fit1.ok


# ---------------------------------------------------------------------------------------
# The divergence retry.


def test_retry_seeds_are_distinct_from_the_fits_and_the_top_ups() -> None:
    seeds = {retry_seed(s) for s in range(50)}
    assert len(seeds) == 50
    assert not seeds & ({top_up_seed(s, k) for s in range(50) for k in (1, 2)} | set(range(50)))
    assert retry_seed(7) == retry_seed(7)


def test_a_divergent_first_run_is_sampled_again_with_smaller_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sampler = _FakeSampler(phi=0.0, divergent=DIVERGENCES_MAX + 4)
    fit = _fake_fitter(monkeypatch, sampler).fit(_counts(), seed=3, draws=500, target_accept=0.9)
    d = fit.diagnostics
    assert [(c["seed"], c["target_accept"]) for c in sampler.calls] == [
        (3, 0.9),
        (retry_seed(3), RETRY_TARGET_ACCEPT),
    ]
    assert all(c["chains"] == 2 and c["draws"] == 500 for c in sampler.calls)
    # The retry replaces the first run: its own draws, its own diagnostics.
    assert (d["retries"], d["target_accept"], d["chains"]) == (1.0, RETRY_TARGET_ACCEPT, 2.0)
    assert d["divergences_first"] == DIVERGENCES_MAX + 4
    assert d["divergences"] == 0.0
    assert fit.ok
    assert d["sample_seconds"] >= d["retry_seconds"] > 0
    assert fit.theta.shape == (1000, 2, 2)


def test_a_retry_that_still_diverges_is_served_as_untrustworthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sampler = _FakeSampler(phi=0.0, divergent=9, later_divergent=DIVERGENCES_MAX + 1)
    fit = _fake_fitter(monkeypatch, sampler).fit(_counts(), seed=3, draws=500, target_accept=0.9)
    assert len(sampler.calls) == 2  # one retry, never more
    assert fit.diagnostics["divergences"] == DIVERGENCES_MAX + 1
    assert fit.diagnostics["divergences_first"] == 9
    assert not fit.ok


@pytest.mark.parametrize(
    ("sampler", "kw", "why"),
    [
        (_FakeSampler(phi=0.0, divergent=DIVERGENCES_MAX), {}, "at the limit: passes"),
        (_FakeSampler(phi=0.6, shift=1.5), {}, "chains disagree: R-hat"),
        (
            _FakeSampler(phi=0.0, divergent=DIVERGENCES_MAX + 1),
            {"target_accept": RETRY_TARGET_ACCEPT},
            "already at the retry's setting",
        ),
        (
            _FakeSampler(phi=0.0, divergent=DIVERGENCES_MAX + 1),
            {"divergence_retry": False},
            "retry turned off",
        ),
    ],
)
def test_no_retry_where_smaller_steps_are_not_the_remedy(
    monkeypatch: pytest.MonkeyPatch, sampler: _FakeSampler, kw: dict[str, Any], why: str
) -> None:
    fit = _fake_fitter(monkeypatch, sampler).fit(_counts(), seed=3, draws=500, **kw)
    assert len(sampler.calls) == 1, why
    assert fit.diagnostics["retries"] == 0.0
    assert fit.diagnostics["target_accept"] == kw.get("target_accept", 0.95)


# ---------------------------------------------------------------------------------------
# A real fit.


@pytest.mark.slow
def test_real_fit_with_few_draws_is_topped_up() -> None:
    theta = np.array([[0.70, 0.80, 0.60, 0.75], [0.66, 0.78, 0.55, 0.70], [0.75, 0.85, 0.68, 0.80]])
    study = simulate_study(
        theta=theta,
        weights=np.array([0.4, 0.3, 0.2, 0.1]),
        sensitivity=0.9,
        specificity=0.85,
        n_per_arm=200_000,
        seed=11,
    )
    counts = study.cells(reveal_uniform(study, 300, seed=12))
    fitter = Fitter()
    # 2 × 400 draws: too few for a min bulk ESS of 400 over every variable of the curve
    # (224 here), while the chains agree about as well as so few draws allow (R-hat 1.02).
    settings = {"draws": 400, "tune": 500, "chains": 2}
    plain = fitter.fit(counts, seed=5, ess_top_ups=0, **settings)
    assert plain.diagnostics["top_ups"] == 0.0
    assert plain.diagnostics["chains"] == 2.0
    assert plain.diagnostics["min_ess_bulk"] < ESS_MIN
    assert plain.diagnostics["max_rhat"] <= TOP_UP_RHAT_MAX
    assert plain.diagnostics["divergences"] <= DIVERGENCES_MAX

    fit = fitter.fit(counts, seed=5, **settings)
    d = fit.diagnostics
    # The first run is the same as the plain fit's (same seed); then chains are added.
    for k in ("max_rhat", "min_ess_bulk", "divergences"):
        assert d[f"{k}_first"] == pytest.approx(plain.diagnostics[k])
    assert d["top_ups"] >= 1
    assert 2 < d["chains"] <= TOP_UP_MAX_FACTOR * 2
    assert d["min_ess_bulk"] > d["min_ess_bulk_first"]
    assert d["top_up_seconds"] > 0
    assert d["sample_seconds"] >= d["top_up_seconds"]
    assert fit.theta.shape == (800, 3, 4)  # thinned back to 2 × 400
    assert fit.ok == (
        d["max_rhat"] <= RHAT_MAX and d["min_ess_bulk"] >= ESS_MIN and d["divergences"] <= 5
    )
    # Reproducible from the one seed, top-ups included.
    again = fitter.fit(counts, seed=5, **settings)
    np.testing.assert_array_equal(again.theta, fit.theta)
    assert again.diagnostics["chains"] == d["chains"]
