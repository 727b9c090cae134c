"""The sequential decision rule (calibration.bayes.decision, module docstring).

No database: closed forms, fixed seeds, and the large-sample optional-stopping picture of
``calibration.bayes.simulate.sequential_go_rate``.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from calibration.bayes.decision import (
    required_probability,
    required_z,
    sequential_verdict,
    standardised_distance,
    summarise,
    summarise_delta,
)
from calibration.bayes.fit import DimensionFit
from calibration.bayes.select import verdicts
from calibration.bayes.simulate import sequential_go_rate

Z975 = NormalDist().inv_cdf(0.975)


def _normal_draws(mean: float, sd: float, n: int = 4000, seed: int = 0) -> np.ndarray:
    """Draws whose sample mean and sd are exactly ``mean`` and ``sd``."""
    x = np.random.default_rng(seed).normal(size=n)
    return mean + sd * (x - x.mean()) / x.std()


def test_boundary_is_the_final_look_quantile_scaled_by_the_budget_fraction() -> None:
    np.testing.assert_allclose(required_z(1000, 1000, 0.95), Z975)
    np.testing.assert_allclose(required_z(250, 1000, 0.95), 2 * Z975)
    np.testing.assert_allclose(required_z(100, 1000, 0.9), NormalDist().inv_cdf(0.95) * 10**0.5)
    # Past the budget the boundary stops shrinking (the guarantee is up to the budget).
    np.testing.assert_allclose(required_z(5000, 1000, 0.95), Z975)
    assert required_z(0, 1000, 0.95) == float("inf")
    assert required_probability(0, 1000, 0.95) == 1.0
    np.testing.assert_allclose(required_probability(1000, 1000, 0.95), 0.975)


@pytest.mark.parametrize(
    ("labels", "budget", "confidence", "message"),
    [
        (10, 0, 0.95, "label budget"),
        (-1, 100, 0.95, "labels"),
        (10, 100, 1.0, "confidence"),
        (10, 100, 0.5, "confidence"),
    ],
)
def test_bad_rule_inputs_are_refused_by_name(
    labels: int, budget: int, confidence: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        required_z(labels, budget, confidence)


def test_an_early_look_needs_more_than_the_one_look_rule() -> None:
    # z = (E[Δ] + δ) / sd = (0.01 + 0.02) / 0.01 = 3: P(Δ > −δ) ≈ 0.9987.
    draws = _normal_draws(0.01, 0.01)
    one_look = summarise_delta(draws, margin=0.02, confidence=0.95)
    assert one_look.verdict == "go"
    assert one_look.required_z is None
    early = summarise_delta(draws, margin=0.02, confidence=0.95, labels=250, budget=1000)
    np.testing.assert_allclose(early.z, 3.0, rtol=1e-9)
    np.testing.assert_allclose(early.required_z, 2 * Z975)
    assert early.verdict == "undecided"
    at_budget = summarise_delta(draws, margin=0.02, confidence=0.95, labels=1000, budget=1000)
    assert at_budget.verdict == "go"
    # The same distance below the margin is a no-go at the budget, undecided early.
    low = _normal_draws(-0.05, 0.01)
    assert summarise_delta(low, margin=0.02, confidence=0.95, labels=1000, budget=1000).verdict == (
        "no-go"
    )
    assert summarise_delta(low, margin=0.02, confidence=0.95, labels=250, budget=1000).verdict == (
        "undecided"
    )


def test_labels_without_a_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="both labels and budget"):
        summarise_delta(_normal_draws(0.0, 0.01), margin=0.02, confidence=0.95, labels=10)


def test_standardised_distance_of_constant_draws_is_infinite_on_its_side() -> None:
    assert standardised_distance(np.full(10, 0.0), margin=0.02) == float("inf")
    assert standardised_distance(np.full(10, -0.05), margin=0.02) == float("-inf")
    assert sequential_verdict(float("inf"), required_z(1, 1000, 0.95)) == "go"
    assert sequential_verdict(float("-inf"), required_z(1, 1000, 0.95)) == "no-go"


def test_summarise_applies_the_rule_to_the_overall_and_the_regional_verdicts() -> None:
    s = 4000
    inc = np.stack([_normal_draws(0.80, 0.003, s, 1), _normal_draws(0.80, 0.003, s, 2)], axis=1)
    # Region eu: candidate 3 points better (z ≈ 12); region us: 1 point better (z ≈ 7).
    cand = np.stack([_normal_draws(0.83, 0.003, s, 3), _normal_draws(0.81, 0.003, s, 4)], axis=1)
    theta = np.stack([inc, cand], axis=1)  # (S, M, R)
    conf = np.tile(np.array([[0.85, 0.15], [0.1, 0.9]]), (s, 2, 1, 1))
    fit = DimensionFit(
        arms=("inc", "cand"),
        regions=("eu", "us"),
        n_bins=2,
        theta=theta,
        confusion=conf,
        diagnostics={"max_rhat": 1.0, "min_ess_bulk": 1000.0, "divergences": 0.0},
        ok=True,
        seed=0,
        counts_digest="x",
    )
    w = np.array([0.5, 0.5])
    dim = (
        summarise({"a": fit}, weights=w, margins=0.02, labels=1000, budget=1000)
        .candidates["cand"]
        .dimensions["a"]
    )
    assert dim.overall.verdict == "go"
    assert dim.regions["us"].verdict == "go"
    # At 10 of 1000 labels the boundary is 1.96·10 = 19.6: nothing settles yet.
    early = summarise({"a": fit}, weights=w, margins=0.02, labels=10, budget=1000)
    dim = early.candidates["cand"].dimensions["a"]
    assert dim.overall.required_z == pytest.approx(10 * Z975)
    assert dim.overall.verdict == "undecided"
    assert {r.verdict for r in dim.regions.values()} == {"undecided"}
    assert early.candidates["cand"].verdict == "undecided"


def test_selector_verdicts_follow_the_same_rule_as_the_dashboard() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        mean, sd = rng.uniform(-0.05, 0.03), rng.uniform(0.003, 0.02)
        draws = _normal_draws(mean, sd, 2000, int(rng.integers(1 << 30)))
        labels = int(rng.integers(50, 1500))
        b = required_z(labels, 1500, 0.95)
        shown = summarise_delta(draws, margin=0.02, confidence=0.95, labels=labels, budget=1500)
        sel = verdicts(draws[:, None], margin=0.02, confidence=0.95, required_z=b)
        assert sel[0] == shown.verdict


def test_looking_at_every_fit_with_the_one_look_rule_inflates_the_wrong_go_rate() -> None:
    looks = np.arange(100, 1501, 100)
    one_look = np.full(looks.size, NormalDist().inv_cdf(0.95))
    rate = sequential_go_rate(looks, one_look, paths=40_000, seed=1)
    assert rate > 0.15  # about four times 1 − γ with 15 looks
    final_only = sequential_go_rate(looks[-1:], one_look[-1:], paths=40_000, seed=1)
    assert abs(final_only - 0.05) < 0.006


@pytest.mark.parametrize("refit_every", [20, 100])
def test_the_sequential_rule_keeps_the_wrong_go_rate_at_one_minus_confidence(
    refit_every: int,
) -> None:
    looks = np.arange(refit_every, 1501, refit_every)
    boundary = [required_z(int(n), 1500, 0.95) for n in looks]
    rate = sequential_go_rate(looks, boundary, paths=40_000, seed=2)
    # ≤ 5% for any looks (continuous-monitoring bound); the MC error is about 0.1 point.
    assert rate <= 0.05
    assert rate > 0.02  # and the rule is not vacuous: most of the 5% is spent


def test_sequential_go_rate_refuses_bad_looks() -> None:
    with pytest.raises(ValueError, match="increasing"):
        sequential_go_rate([100, 100], [2.0, 2.0])
    with pytest.raises(ValueError, match="same non-zero length"):
        sequential_go_rate([100, 200], [2.0])
