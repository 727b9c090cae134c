"""The skew correction of the sequential rule's ``z`` (calibration.bayes.decision, module
docstring, *The skew of the posterior*).

No database: exact distributions from scipy stand in for posteriors whose tail at the margin
is known, and fixed seeds.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from calibration.bayes.decision import (
    Design,
    replan_cell,
    sample_skewness,
    skew_adjusted_z,
    standardised_distance,
    summarise_delta,
)
from calibration.bayes.select import verdicts

Z975 = NormalDist().inv_cdf(0.975)


def test_the_correction_only_ever_moves_z_towards_zero() -> None:
    z = np.linspace(-8.0, 8.0, 161)
    for skew in (-1.0, -0.4, -0.1, 0.0, 0.1, 0.4, 1.0):
        adjusted = skew_adjusted_z(z, skew)
        assert np.all(np.abs(adjusted) <= np.abs(z) + 1e-12)
        assert np.all(adjusted * z >= 0)  # never past zero
    # Beyond one sd, a tail the skew thins is left as the normal reading has it (within one
    # sd the skew moves the median off the mean, which the expansion follows).
    far = np.abs(z) >= 1.0
    np.testing.assert_array_equal(skew_adjusted_z(z[far & (z > 0)], 0.4), z[far & (z > 0)])
    np.testing.assert_array_equal(skew_adjusted_z(z[far & (z < 0)], -0.4), z[far & (z < 0)])
    # The tail the skew thickens is read as thicker, and more so further out.
    left = skew_adjusted_z(np.array([1.5, 2.0, 4.0]), -0.3)
    assert np.all(left < [1.5, 2.0, 4.0])
    assert np.all(np.diff([1.5, 2.0, 4.0] - left) > 0)


def test_without_skew_and_at_infinity_z_is_unchanged() -> None:
    z = np.array([-3.0, -0.5, 0.0, 1.96, np.inf, -np.inf])
    np.testing.assert_array_equal(skew_adjusted_z(z, 0.0), z)
    assert skew_adjusted_z(np.inf, -0.5) == np.inf
    assert skew_adjusted_z(-np.inf, 0.5) == -np.inf
    assert np.isnan(skew_adjusted_z(np.nan, -0.5))


@pytest.mark.parametrize(("a", "b", "margin"), [(40.0, 6.0, 0.76), (60.0, 4.0, 0.87)])
def test_on_a_skewed_posterior_z_reads_its_tail_nearer_the_truth_than_the_normal(
    a: float, b: float, margin: float
) -> None:
    # Δ's draws as a pass rate near 1 gives them: a Beta, left-skewed; the margin at −δ sits
    # in its long tail, where Φ(−z) of the normal reading says too little.
    dist = stats.beta(a, b)
    d = dist.ppf((np.arange(20000) + 0.5) / 20000)  # draws with exactly the quantiles
    exact = -NormalDist().inv_cdf(float(dist.cdf(margin)))  # probit of P(Δ ≤ the margin)
    normal = (d.mean() - margin) / d.std()
    z = standardised_distance(d, margin=-margin)
    assert sample_skewness(d) < -0.2
    assert z < normal
    assert abs(z - exact) < 0.1 * abs(normal - exact)


def test_a_go_the_normal_reading_gives_waits_when_the_posterior_is_left_skewed() -> None:
    # At the budget (b = 1.96): z = 2.05 by mean and sd, but the draws are left-skewed.
    d = stats.beta(40.0, 6.0).ppf((np.arange(8000) + 0.5) / 8000)
    d = (d - d.mean()) / d.std() * 0.03 - 0.02 + 2.05 * 0.03
    assert (d.mean() + 0.02) / d.std() == pytest.approx(2.05)
    s = summarise_delta(d, margin=0.02, confidence=0.95, labels=300, budget=300)
    assert s.skew < -0.4
    assert s.z < Z975
    assert s.verdict == "undecided"
    # The mirror image (right-skewed, the tail below the margin thin) is still a go.
    mirror = summarise_delta(2 * d.mean() - d, margin=0.02, confidence=0.95, labels=300, budget=300)
    assert mirror.z == pytest.approx(2.05)
    assert mirror.verdict == "go"


def test_the_selector_settles_by_the_same_corrected_z() -> None:
    d = stats.beta(40.0, 6.0).ppf((np.arange(4000) + 0.5) / 4000)
    d = (d - d.mean()) / d.std() * 0.03 - 0.02 + 2.05 * 0.03
    fit = summarise_delta(d, margin=0.02, confidence=0.95, labels=300, budget=300)
    both = np.column_stack([d, 2 * d.mean() - d])
    got = verdicts(both, margin=0.02, confidence=0.95, required_z=Z975)
    assert list(got) == [fit.verdict, "go"] == ["undecided", "go"]
    # Uniform log weights give the same skewness as no weights.
    np.testing.assert_allclose(
        sample_skewness(both, np.full(4000, 1 / 4000)), sample_skewness(both), rtol=1e-12
    )


def _replan_z(cell: dict[str, float]) -> float:
    go = nogo = Design.initial(0.95)
    *_, spent = replan_cell(
        go,
        nogo,
        cell=cell,
        fit_budget=300,
        budget=300,
        new_budget=400,
        confidence=0.95,
        new_confidence=0.95,
        new_margin=0.02,
        fallback_fraction=0.5,
    )
    return spent["z"]


def test_a_replan_anchors_on_the_corrected_z() -> None:
    cell = {"mean": 0.0, "sd": 0.01, "fraction": 0.5, "skew": -0.5}
    z = _replan_z(cell)
    assert z == pytest.approx(float(skew_adjusted_z(2.0, -0.5)))
    assert z < 2.0
    # A summary stored before summaries had a skew: the plain z.
    assert _replan_z({k: v for k, v in cell.items() if k != "skew"}) == pytest.approx(2.0)
