"""Agreement statistics against published values."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.agreement import cohen_kappa, krippendorff_alpha, percent_agreement

nan = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders × 12 units
# example with missing values; published α: nominal 0.743, ordinal 0.815, interval 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
]


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_alpha_matches_the_published_example(level, expected):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level=level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_alpha_is_one_for_perfect_agreement_and_ignores_lone_values():
    data = [[1, 0, 1, nan], [1, 0, 1, 1]]
    assert krippendorff_alpha(data) == 1.0


def test_krippendorff_alpha_of_two_coders_binary_closed_form():
    # Two coders, 10 units, one disagreement: o = [[4, 1], [1, 14]] (each unit counted
    # twice), n = 20, n_0 = 5, n_1 = 15; D_o = 2/20, D_e = 2·5·15/(20·19).
    a = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0]
    b = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    expected = 1 - (2 / 20) / (2 * 5 * 15 / (20 * 19))
    np.testing.assert_allclose(krippendorff_alpha([a, b]), expected)


def test_krippendorff_alpha_without_pairable_values_is_nan():
    assert np.isnan(krippendorff_alpha([[1, nan], [nan, 0]]))


def test_cohen_kappa_matches_the_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → p_o 0.7, p_e 0.5, κ 0.4.
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert percent_agreement(a, b) == pytest.approx(0.7)


def test_cohen_kappa_drops_missing_items_and_handles_a_single_category():
    assert cohen_kappa([1, 0, nan, 1], [1, 0, 1, nan]) == pytest.approx(1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert np.isnan(cohen_kappa([nan], [1]))


def test_cohen_kappa_of_opposite_raters_is_minus_one():
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
