from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from calibration.bayes.data import CellCounts
from calibration.bayes.model import (
    ARM_POOLING_SD,
    MODEL_VERSION,
    NONCENTRED_BELOW,
    binary_coordinates,
    create_calibration_model,
    model_key,
)

# Pure-Python evaluation: these tests evaluate each graph a few times, so skipping the
# C/numba compilation keeps them fast.
FAST = "FAST_COMPILE"


def _counts(
    m: int = 2, r: int = 3, j: int = 2, fill: int = 0, judge_only: int | None = None
) -> CellCounts:
    return CellCounts(
        arms=tuple(f"a{i}" for i in range(m)),
        regions=tuple(f"r{i}" for i in range(r)),
        n_bins=j,
        judge_only=np.full((m, r, j), fill if judge_only is None else judge_only),
        labelled=np.full((m, r, 2, j), fill),
    )


#: Judge-only responses per bin that make every cell large (judge-rate coordinates).
LARGE = NONCENTRED_BELOW


def test_model_version_is_a_non_empty_string() -> None:
    assert isinstance(MODEL_VERSION, str) and MODEL_VERSION


@pytest.mark.parametrize("j", [2, 4])
def test_model_exposes_theta_confusion_and_swappable_counts(j: int) -> None:
    model = create_calibration_model(_counts(j=j, fill=3))
    names = model.named_vars
    for name in ("theta", "confusion", "judge_only", "labelled", "mu", "sigma"):
        assert name in names
    assert model.named_vars_to_dims["theta"] == ("arm", "region")
    assert model.named_vars_to_dims["confusion"] == ("arm", "y", "bin")
    assert model.named_vars_to_dims["judge_only"] == ("arm", "region", "bin")
    assert model.named_vars_to_dims["labelled"] == ("arm", "region", "y", "bin")
    assert {v.name for v in model.observed_RVs} == {"judge_only_obs", "labelled_obs"}
    # Counts are shared data: swapping them changes the log density without a rebuild.
    logp = model.compile_fn(model.logp(), inputs=model.value_vars, mode=FAST, point_fn=True)
    point = model.initial_point()
    before = logp(point)
    with model:
        pm.set_data(
            {
                "judge_only": np.full((2, 3, j), 50),
                "labelled": np.full((2, 3, 2, j), 7),
            }
        )
    assert logp(point) != pytest.approx(before)


def test_binary_model_samples_in_judge_positive_rate_coordinates_when_cells_are_large() -> None:
    model = create_calibration_model(_counts(judge_only=LARGE))
    free = {v.name for v in model.free_RVs}
    assert {"judge_pos_logit", "fpr_raw", "tpr_raw"} <= free
    assert "z" not in free
    assert [p.name for p in model.potentials] == ["prior_reparam"]


def test_binary_model_samples_non_centred_when_cells_are_small() -> None:
    model = create_calibration_model(_counts(judge_only=LARGE // 2 - 1))  # 2 bins per cell
    free = {v.name for v in model.free_RVs}
    assert {"z", "mu", "sigma", "fpr_logit", "gap_logit"} <= free
    assert "judge_pos_logit" not in free and not model.potentials
    for name in ("theta", "confusion", "sensitivity", "specificity", "judge_pos_rate"):
        assert name in model.named_vars


def test_the_median_cell_chooses_the_coordinates_and_names_the_compiled_model() -> None:
    small, large = _counts(judge_only=LARGE // 2 - 1), _counts(judge_only=LARGE // 2)
    assert binary_coordinates(small) == "noncentred"
    assert binary_coordinates(large) == "judge_rate"
    assert model_key(small) == (2, 3, 2, "noncentred")
    assert model_key(large) == (2, 3, 2, "judge_rate")
    assert model_key(_counts(j=4)) == (2, 3, 4, "ordinal")


@pytest.mark.slow
def test_both_coordinates_sample_the_same_posterior() -> None:
    """The same model in two coordinate systems: on one data set, the posterior of θ and of
    the sensitivity agree within Monte Carlo error."""
    import nutpie

    from calibration.bayes.model import _binary_model, _binary_model_noncentred
    from calibration.bayes.simulate import reveal_uniform, simulate_study

    study = simulate_study(
        theta=[[0.85, 0.8, 0.9], [0.8, 0.78, 0.86]],
        weights=[0.5, 0.3, 0.2],
        sensitivity=0.9,
        specificity=0.8,
        n_per_arm=3000,
        seed=11,
    )
    counts = study.counts(reveal_uniform(study, 200, seed=12))
    means, sds = [], []
    for build in (_binary_model, _binary_model_noncentred):
        compiled = nutpie.compile_pymc_model(build(counts))
        trace = nutpie.sample(
            compiled, draws=2000, tune=1000, chains=2, seed=5, progress_bar=False,
            target_accept=0.95,
        )  # fmt: skip
        post = trace.posterior
        draws = np.concatenate(
            [post["theta"].values.reshape(4000, -1), post["sensitivity"].values.reshape(4000, -1)],
            axis=1,
        )
        means.append(draws.mean(axis=0))
        sds.append(draws.std(axis=0))
    # Two independent runs of ~1000 effective draws each: the means differ by a few
    # hundredths of a posterior sd; 0.25 sd leaves room and still catches another model.
    assert np.all(np.abs(means[0] - means[1]) < 0.25 * sds[0])
    np.testing.assert_allclose(sds[0], sds[1], rtol=0.2)


def test_single_bin_judge_is_rejected() -> None:
    with pytest.raises(ValueError):
        create_calibration_model(_counts(j=1))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _natural(x: np.ndarray) -> np.ndarray:
    """(λ_1..λ_R, α, β) -> (L_1..L_R, A, G) for one arm, as in the model docstring."""
    lam, alpha, beta = x[:-2], x[-2], x[-1]
    q = _expit(lam)
    f = q.min() * _expit(alpha)
    t = q.max() + (1 - q.max()) * _expit(beta)
    theta = (q - f) / (t - f)
    v = (t - f) / (1 - f)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    return np.concatenate([logit(theta), [logit(f), logit(v)]])


def test_reparameterised_prior_equals_natural_prior_times_numerical_jacobian() -> None:
    m, r = 2, 3
    model = create_calibration_model(_counts(m=m, r=r, judge_only=LARGE))
    rng = np.random.default_rng(0)
    lam = rng.normal(0.5, 0.8, size=(m, r))
    alpha = rng.normal(size=m)
    beta = rng.normal(size=m)
    mu = rng.normal(size=m)
    sigma, a0, g0 = 0.7, -1.2, 1.4
    point = {
        "judge_pos_logit": lam,
        "fpr_raw": alpha,
        "tpr_raw": beta,
        "mu": mu,
        "sigma_log__": np.log(sigma),
        "fpr_logit_mean": a0,
        "gap_logit_mean": g0,
    }
    potential = model.compile_fn(
        model.replace_rvs_by_values(model.potentials),
        inputs=model.value_vars,
        mode=FAST,
        on_unused_input="ignore",
    )(point)[0]

    expected = 0.0
    eps = 1e-6
    for a in range(m):
        x0 = np.concatenate([lam[a], [alpha[a], beta[a]]])
        y0 = _natural(x0)
        jac = np.empty((r + 2, r + 2))
        for k in range(r + 2):
            dx = np.zeros(r + 2)
            dx[k] = eps
            jac[:, k] = (_natural(x0 + dx) - _natural(x0 - dx)) / (2 * eps)
        expected += stats.norm(mu[a], sigma).logpdf(y0[:r]).sum()
        expected += stats.norm(a0, ARM_POOLING_SD).logpdf(y0[r])
        expected += stats.norm(g0, ARM_POOLING_SD).logpdf(y0[r + 1])
        expected += np.log(abs(np.linalg.det(jac)))
    np.testing.assert_allclose(potential, expected, rtol=1e-6)


@pytest.mark.parametrize(("judge_only", "scale"), [(LARGE, 2.0), (0, 1.0)])
def test_theta_and_confusion_are_valid_probabilities_at_any_point(
    judge_only: int, scale: float
) -> None:
    # Both coordinates; the non-centred ones at unit scale, where sigmoid(μ + σz) is not
    # rounded to exactly 0 or 1 in float64.
    model = create_calibration_model(_counts(m=3, r=4, judge_only=judge_only))
    fn = model.compile_fn(
        model.replace_rvs_by_values([model["theta"], model["confusion"]]),
        inputs=model.value_vars,
        mode=FAST,
        on_unused_input="ignore",
    )
    rng = np.random.default_rng(1)
    for _ in range(20):
        point = {
            v.name: rng.normal(0, scale, size=model.initial_point()[v.name].shape)
            for v in model.value_vars
        }
        theta, confusion = fn(point)
        assert np.all((theta > 0) & (theta < 1))
        np.testing.assert_allclose(confusion.sum(axis=-1), 1.0)
        # better than chance: sensitivity above the false-positive rate
        assert np.all(confusion[:, 1, 1] > confusion[:, 0, 1])


def test_ordinal_confusion_rows_are_ordered() -> None:
    model = create_calibration_model(_counts(m=2, r=2, j=4))
    fn = model.compile_fn(
        model.replace_rvs_by_values([model["confusion"]]),
        inputs=model.value_vars,
        mode=FAST,
        on_unused_input="ignore",
    )
    (confusion,) = fn(model.initial_point())
    np.testing.assert_allclose(confusion.sum(axis=-1), 1.0)
    cdf = np.cumsum(confusion, axis=-1)
    # the pass row puts less mass on low bins than the fail row (stochastic dominance)
    assert np.all(cdf[:, 1, :-1] < cdf[:, 0, :-1])


def test_single_region_binary_model_has_no_region_hierarchy() -> None:
    model = create_calibration_model(_counts(m=2, r=1))
    assert "sigma" not in model.named_vars
    assert "theta" in model.named_vars


def test_ordinal_model_pools_arms_with_fixed_scales_and_centred_prevalence() -> None:
    model = create_calibration_model(_counts(m=3, r=4, j=3))
    free = {v.name for v in model.free_RVs}
    # Learnt pooling scales made funnels: none may come back.
    assert not {"cut_sd", "shift_log_sd", "z"} & free
    assert {"theta_logit", "cuts", "shift_log", "mu", "sigma"} <= free
    single = create_calibration_model(_counts(m=3, r=1, j=3))
    assert "sigma" not in single.named_vars and "mu" not in single.named_vars
