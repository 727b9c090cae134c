from __future__ import annotations

import numpy as np
import pytest

from calibration.bayes.curve import (
    JUDGE_BAND,
    curve_logit,
    design_for,
    expected_confusion,
    judge_difference,
    pass_probability,
    post_stratify,
)
from calibration.bayes.data import JointCells, joint_cells_from_arrays
from calibration.bayes.model import MODEL_VERSION, create_calibration_model, model_key

# Pure-Python evaluation: these tests evaluate each graph a few times, so skipping the
# C/numba compilation keeps them fast.
FAST = "FAST_COMPILE"


def _cells(m: int = 2, r: int = 3, n_bins: tuple[int, ...] = (2, 3), seed: int = 0) -> JointCells:
    rng = np.random.default_rng(seed)
    n = 600
    bins = np.column_stack([rng.integers(0, j, n) for j in n_bins])
    bins[:5, -1] = -1  # a few responses without a score on the last dimension
    human = np.where(rng.random((n, len(n_bins))) < 0.3, rng.integers(0, 2, (n, len(n_bins))), -1)
    return joint_cells_from_arrays(
        arms=tuple(f"a{i}" for i in range(m)),
        regions=tuple(f"r{i}" for i in range(r)),
        n_bins=n_bins,
        arm_idx=rng.integers(0, m, n),
        region_idx=rng.integers(0, r, n),
        bins=bins,
        human=human,
    )


def _design(cells: JointCells, d: int = 0):
    return design_for(cells.level_index(), cells.levels(), cells.n_bins, d)


def test_model_version_names_the_curve_model() -> None:
    assert "curve" in MODEL_VERSION


def test_every_parameter_belongs_to_one_arm() -> None:
    cells = _cells(n_bins=(4, 2))
    model = create_calibration_model(cells, _design(cells))
    # No hyper-prior ties one arm's judge calibration to another's: every free variable
    # has the arm axis first, so arms are a priori independent.
    for rv in model.free_RVs:
        assert model.named_vars_to_dims[rv.name][0] == "arm", rv.name


@pytest.mark.parametrize(
    ("m", "r", "n_bins", "present", "absent"),
    [
        (2, 3, (2, 2), {"tau_region", "tau_region_bin", "tau_other"}, {"tau_bin"}),
        (2, 1, (4,), {"tau_bin"}, {"tau_region", "tau_region_bin", "tau_other"}),
        (3, 2, (5, 2, 3), {"tau_bin", "tau_region", "tau_other"}, set()),
    ],
)
def test_terms_exist_only_where_they_can(m, r, n_bins, present, absent) -> None:
    cells = _cells(m=m, r=r, n_bins=n_bins)
    names = set(create_calibration_model(cells, _design(cells)).named_vars)
    assert present <= names
    assert not absent & names


@pytest.mark.parametrize("d", [0, 1])
def test_numpy_curve_equals_the_models_own(d: int) -> None:
    from scipy import stats

    cells = _cells(n_bins=(3, 4))
    design = _design(cells, d)
    model = create_calibration_model(cells, design)
    rng = np.random.default_rng(1)
    point = {k: rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    names = ["bin_effect", "region_effect", "region_bin_effect", "other_effect"]
    # Deterministics are graphs of the random variables: evaluate them at the point.
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, mode=FAST, on_unused_input="ignore")
    params = {k: np.asarray(v)[None] for k, v in zip(names, fn(point), strict=True)}
    params["intercept"] = np.asarray(point["intercept"])[None]
    p = pass_probability(params, design)[0]
    # The model's likelihood term at that point is the binomial of the numpy curve.
    loglik = model.compile_logp(vars=[model["passes_obs"]], sum=True)
    expected = stats.binom.logpmf(cells.passes[d], cells.labelled[d], p).sum()
    assert float(loglik(point)) == pytest.approx(expected, rel=1e-6)


def test_only_labelled_responses_enter_the_likelihood() -> None:
    cells = _cells(n_bins=(2, 2))
    design = _design(cells)
    model = create_calibration_model(cells, design)
    logp = model.compile_fn(model.logp(), inputs=model.value_vars, mode=FAST)
    point = model.initial_point()
    before = logp(point)
    more_unlabelled = JointCells(
        arms=cells.arms,
        regions=cells.regions,
        n_bins=cells.n_bins,
        combos=cells.combos,
        totals=cells.totals * 1000,
        labelled=cells.labelled,
        passes=cells.passes,
    )
    model2 = create_calibration_model(more_unlabelled, design)
    logp2 = model2.compile_fn(model2.logp(), inputs=model2.value_vars, mode=FAST)
    # A thousand times the judge-only responses change nothing the model samples: no
    # functional form turns judge-only counts into information on the curve.
    assert logp2(point) == pytest.approx(before)
    assert model_key(cells, design) == model_key(more_unlabelled, design)


def test_post_stratification_counts_labels_exactly_and_predicts_the_rest() -> None:
    rng = np.random.default_rng(0)
    totals = np.array([[[10, 30]], [[20, 0]]])  # (M=2, R=1, K=2)
    labelled = np.array([[[10, 5]], [[4, 0]]])
    passes = np.array([[[7, 5]], [[1, 0]]])
    p = np.broadcast_to(np.array([0.2, 0.6])[None, None, None, :], (4000, 2, 1, 2)).copy()
    theta = post_stratify(p, totals=totals, labelled=labelled, passes=passes, rng=rng)
    # Arm 0: 12 known passes + Bin(25, .6) among 40 responses.
    assert theta[:, 0, 0].mean() == pytest.approx((12 + 25 * 0.6) / 40, abs=0.005)
    assert theta[:, 0, 0].var() == pytest.approx(25 * 0.6 * 0.4 / 40**2, rel=0.1)
    # Arm 1: 1 known pass + Bin(16, .2) among 20.
    assert theta[:, 1, 0].mean() == pytest.approx((1 + 16 * 0.2) / 20, abs=0.005)


def test_a_fully_labelled_population_has_no_uncertainty_left() -> None:
    totals = np.array([[[5, 5]], [[4, 6]]])
    passes = np.array([[[1, 4]], [[2, 6]]])
    p = np.random.default_rng(2).random((50, 2, 1, 2))
    theta = post_stratify(
        p, totals=totals, labelled=totals, passes=passes, rng=np.random.default_rng(0)
    )
    np.testing.assert_allclose(theta[:, :, 0], np.tile([0.5, 0.8], (50, 1)))


def test_expected_confusion_is_read_off_expected_class_counts() -> None:
    cells = joint_cells_from_arrays(
        arms=("inc", "cand"),
        regions=("r",),
        n_bins=(2,),
        arm_idx=[0, 0, 0, 1, 1, 1],
        region_idx=[0] * 6,
        bins=[[0], [1], [1], [0], [1], [1]],
        human=[[0], [1], [-1], [-1], [-1], [-1]],
    )
    design = _design(cells)
    p = np.zeros((1, 2, 1, cells.shape[2]))
    p[..., cells.combos[:, 0] == 1] = 1.0  # the judge is right wherever it is unlabelled
    conf = expected_confusion(
        p, design, totals=cells.totals, labelled=cells.labelled[0], passes=cells.passes[0]
    )
    # Incumbent: the fail is in bin 0, both passes in bin 1.
    np.testing.assert_allclose(conf[0, 0], [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(conf.sum(axis=-1), 1.0)


def test_judge_difference_is_said_only_outside_the_band() -> None:
    rng = np.random.default_rng(0)
    s = 2000
    same = np.empty((s, 2, 2, 2))
    same[:, :, 0] = [0.85, 0.15]
    same[:, :, 1] = [0.10, 0.90]
    noisy = same + rng.normal(0, 0.01, same.shape)
    assert judge_difference(noisy, candidate=1)["differs"] is False
    flatter = same.copy()
    flatter[:, 1, 0] = [0.5, 0.5]  # the candidate's failures pass half the time
    noisy_flatter = flatter + rng.normal(0, 0.01, same.shape)
    noisy_flatter /= noisy_flatter.sum(axis=-1, keepdims=True)  # each row a distribution
    out = judge_difference(noisy_flatter, candidate=1)
    assert out["differs"] is True
    assert out["fail"]["lower"] > JUDGE_BAND  # type: ignore[index]
    assert out["pass"]["upper"] < JUDGE_BAND  # type: ignore[index]


def test_pass_probability_is_the_sigmoid_of_the_curve() -> None:
    cells = _cells(n_bins=(2, 2))
    design = _design(cells)
    rng = np.random.default_rng(3)
    m, r, _ = cells.shape
    params = {
        "intercept": rng.normal(size=(7, m)),
        "bin_effect": rng.normal(size=(7, m, design.n_levels)),
        "region_effect": rng.normal(size=(7, m, r)),
        "region_bin_effect": rng.normal(size=(7, m, r, design.n_levels)),
        "other_effect": rng.normal(size=(7, m, design.n_other)),
    }
    eta = curve_logit(params, design)
    np.testing.assert_allclose(pass_probability(params, design), 1 / (1 + np.exp(-eta)))
    # One cell by hand.
    s, a, g, k = 3, 1, 2, 4
    own, other = design.own[k], design.other[k]
    by_hand = (
        params["intercept"][s, a]
        + params["bin_effect"][s, a, own]
        + params["region_effect"][s, a, g]
        + params["region_bin_effect"][s, a, g, own]
        + params["other_effect"][s, a, other].sum()
    )
    assert eta[s, a, g, k] == pytest.approx(by_hand)


def test_per_bin_tables_of_one_dimension_are_its_cells() -> None:
    from calibration.bayes.data import counts_from_arrays

    rng = np.random.default_rng(4)
    n = 300
    arm, region, b = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 3, n)
    human = np.where(rng.random(n) < 0.4, rng.integers(0, 2, n), -1)
    kwargs = {"arms": ("i", "c"), "regions": ("x", "y"), "arm_idx": arm, "region_idx": region}
    counts = counts_from_arrays(n_bins=3, judge_bin=b, human=human, **kwargs)
    direct = joint_cells_from_arrays(n_bins=(3,), bins=b[:, None], human=human[:, None], **kwargs)
    via = JointCells.from_counts(counts)
    for name in ("combos", "totals", "labelled", "passes"):
        np.testing.assert_array_equal(getattr(via, name), getattr(direct, name))
    # And back: the per-bin tables a dashboard reads are the ones given.
    back = direct.dimension_counts(0)
    np.testing.assert_array_equal(back.judge_only, counts.judge_only)
    np.testing.assert_array_equal(back.labelled, counts.labelled)


def test_a_binned_judge_alike_for_both_models_is_not_said_to_differ() -> None:
    """Five bins, the same judge for both models, the posterior of a few dozen failures per
    model: the total variation between bin distributions clears the band (a false alarm),
    the difference at the judge's pass cut does not; a judge that passes more of the
    candidate's failures is still caught."""
    from calibration.bayes.curve import judge_pass_difference

    rng = np.random.default_rng(1)
    s = 4000
    fail_bins = np.array([0.30, 0.25, 0.20, 0.15, 0.10])
    pass_bins = np.array([0.02, 0.05, 0.13, 0.30, 0.50])

    def posterior(fail: np.ndarray, n_fail: int, n_pass: int) -> np.ndarray:
        # Dirichlet draws of each model's bin distribution per human class, as a posterior
        # from n_fail failures and n_pass passes would give.
        out = np.empty((s, 2, 2, 5))
        for m in range(2):
            out[:, m, 0] = rng.dirichlet(1 + n_fail * (fail if m == 1 else fail_bins), s)
            out[:, m, 1] = rng.dirichlet(1 + n_pass * pass_bins, s)
        return out

    same = posterior(fail_bins, 25, 125)
    tv = 0.5 * np.abs(same[:, 1] - same[:, 0]).sum(axis=-1)
    assert np.quantile(tv[:, 0], 0.025) > JUDGE_BAND  # the old measure: a false alarm
    assert judge_difference(same, candidate=1)["differs"] is False
    np.testing.assert_allclose(
        judge_pass_difference(same, candidate=1)[:, 0],
        np.abs(same[:, 1, 0, 2:].sum(-1) - same[:, 0, 0, 2:].sum(-1)),
    )
    flattering = np.array([0.08, 0.07, 0.25, 0.30, 0.30])  # passes 85% of its failures, not 45%
    assert judge_difference(posterior(flattering, 25, 125), candidate=1)["differs"] is True
