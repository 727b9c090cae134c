from __future__ import annotations

import numpy as np
import pytest

from calibration.bayes.data import CellCounts, bin_scores, counts_from_arrays, quantile_cuts


def test_binary_scores_get_one_cut_at_one_half() -> None:
    cuts = quantile_cuts(np.array([0, 1, 1, 0, 1]), 2)
    np.testing.assert_allclose(cuts, [0.5])
    np.testing.assert_array_equal(bin_scores([0, 1, 1, 0], cuts), [0, 1, 1, 0])


def test_continuous_scores_split_into_equal_quantile_bins() -> None:
    values = np.arange(1000, dtype=float)
    cuts = quantile_cuts(values, 4)
    np.testing.assert_allclose(cuts, [249.5, 499.5, 749.5])
    bins = bin_scores(values, cuts)
    np.testing.assert_array_equal(np.bincount(bins), [250, 250, 250, 250])


def test_ties_are_never_split_and_give_fewer_bins() -> None:
    # Likert scores with a heavy mode: every wanted quartile falls on the mode.
    values = np.array([1] * 5 + [2] * 5 + [3] * 80 + [4] * 5 + [5] * 5, dtype=float)
    cuts = quantile_cuts(values, 4)
    assert np.all(np.diff(cuts) > 0)
    assert not np.isin(cuts, values).any()
    bins = bin_scores(values, cuts)
    for v in np.unique(values):
        assert np.unique(bins[values == v]).size == 1
    np.testing.assert_allclose(cuts, [3.5])


def test_few_distinct_values_each_get_a_bin() -> None:
    cuts = quantile_cuts([1, 2, 3, 3, 2, 1], 5)
    np.testing.assert_allclose(cuts, [1.5, 2.5])


def test_constant_scores_give_no_cut() -> None:
    assert quantile_cuts([2.0, 2.0, 2.0], 3).size == 0


def test_score_equal_to_a_cut_goes_to_the_upper_bin() -> None:
    np.testing.assert_array_equal(bin_scores([0.49, 0.5, 0.51], [0.5]), [0, 1, 1])


def test_bin_scores_rejects_unsorted_cuts() -> None:
    with pytest.raises(ValueError):
        bin_scores([1.0], [0.5, 0.2])


def _rows() -> dict[str, np.ndarray]:
    return {
        "arm_idx": np.array([0, 0, 0, 1, 1, 1, 1]),
        "region_idx": np.array([0, 1, 1, 0, 0, 1, 1]),
        "judge_bin": np.array([1, 0, 1, 1, 1, 0, 0]),
        "human": np.array([-1, 0, 1, -1, 1, -1, 0]),
    }


def test_counts_match_hand_tally() -> None:
    c = counts_from_arrays(arms=("inc", "cand"), regions=("eu", "us"), n_bins=2, **_rows())
    expected_judge_only = np.zeros((2, 2, 2), dtype=np.int64)
    expected_judge_only[0, 0, 1] = 1
    expected_judge_only[1, 0, 1] = 1
    expected_judge_only[1, 1, 0] = 1
    expected_labelled = np.zeros((2, 2, 2, 2), dtype=np.int64)
    expected_labelled[0, 1, 0, 0] = 1  # inc, us, fail, judge 0
    expected_labelled[0, 1, 1, 1] = 1  # inc, us, pass, judge 1
    expected_labelled[1, 0, 1, 1] = 1  # cand, eu, pass, judge 1
    expected_labelled[1, 1, 0, 0] = 1  # cand, us, fail, judge 0
    np.testing.assert_array_equal(c.judge_only, expected_judge_only)
    np.testing.assert_array_equal(c.labelled, expected_labelled)
    np.testing.assert_array_equal(c.n_labelled, [2, 2])
    np.testing.assert_array_equal(c.n_responses, [[1, 2], [2, 2]])
    assert c.shape == (2, 2, 2)


def test_counts_of_many_rows_sum_to_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    arm, reg, b = rng.integers(0, 3, n), rng.integers(0, 4, n), rng.integers(0, 5, n)
    human = rng.integers(-1, 2, n)
    c = counts_from_arrays(
        arms=("a", "b", "c"),
        regions=("r0", "r1", "r2", "r3"),
        n_bins=5,
        arm_idx=arm,
        region_idx=reg,
        judge_bin=b,
        human=human,
    )
    assert c.judge_only.sum() + c.labelled.sum() == n
    assert c.judge_only[1, 2, 3] == np.sum((arm == 1) & (reg == 2) & (b == 3) & (human == -1))
    assert c.labelled[2, 0, 1, 4] == np.sum((arm == 2) & (reg == 0) & (b == 4) & (human == 1))


def test_counts_reject_out_of_range_bins() -> None:
    rows = _rows()
    rows["judge_bin"] = rows["judge_bin"] + 1
    with pytest.raises(ValueError, match="judge_bin"):
        counts_from_arrays(arms=("inc", "cand"), regions=("eu", "us"), n_bins=2, **rows)


def test_digest_is_stable_and_sensitive_to_counts() -> None:
    a = counts_from_arrays(arms=("inc", "cand"), regions=("eu", "us"), n_bins=2, **_rows())
    b = counts_from_arrays(arms=("inc", "cand"), regions=("eu", "us"), n_bins=2, **_rows())
    assert a.digest() == b.digest()
    assert len(a.digest()) == 64
    rows = _rows()
    rows["human"][0] = 1
    c = counts_from_arrays(arms=("inc", "cand"), regions=("eu", "us"), n_bins=2, **rows)
    assert c.digest() != a.digest()


def test_cell_counts_are_read_only_and_shape_checked() -> None:
    c = counts_from_arrays(arms=("inc", "cand"), regions=("eu", "us"), n_bins=2, **_rows())
    with pytest.raises(ValueError):
        c.judge_only[0, 0, 0] = 5
    with pytest.raises(ValueError, match="shape"):
        CellCounts(
            arms=("a",),
            regions=("r",),
            n_bins=2,
            judge_only=np.zeros((1, 1, 3), dtype=np.int64),
            labelled=np.zeros((1, 1, 2, 2), dtype=np.int64),
        )
