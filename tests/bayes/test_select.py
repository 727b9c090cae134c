"""Selection scores, reweighting and the exploration mixture, checked against closed forms."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.bayes.posterior import DimensionFit
from calibration.bayes.select import (
    SELECTION_DRAWS,
    DimensionDraws,
    Selector,
    choose_cell,
    delta_draws,
    dimension_scores,
    effective_sample_size,
    pass_given_bin,
    reweight,
    score_cells,
    verdicts,
)


def _random_draws(
    *, s: int = 400, m: int = 3, r: int = 2, j: int = 3, seed: int = 0, margin: float = 0.02
) -> DimensionDraws:
    rng = np.random.default_rng(seed)
    theta = rng.beta(20, 8, size=(s, m, r))
    conf = rng.dirichlet(np.ones(j) * 2, size=(s, m, 2))
    return DimensionDraws(theta=theta, confusion=conf, margin=margin)


def test_pass_given_bin_is_bayes_rule_and_one_half_where_no_class_lands():
    draws = _random_draws(s=50, m=3, r=4, j=4, seed=7)
    conf = draws.confusion.copy()
    conf[:, :, :, 3] = 0.0  # no response of either class lands in bin 3
    conf[:, :, 0, 2] = 0.0  # only passes land in bin 2
    conf /= conf.sum(axis=-1, keepdims=True)
    got = pass_given_bin(draws.theta, conf)
    th = draws.theta[..., None]
    pos, neg = th * conf[:, :, None, 1, :], (1 - th) * conf[:, :, None, 0, :]
    pos, neg = pos[..., :2], neg[..., :2]
    np.testing.assert_allclose(got[..., :2], pos / (pos + neg), rtol=1e-12)
    np.testing.assert_array_equal(got[..., 2], 1.0)
    np.testing.assert_array_equal(got[..., 3], 0.5)
    cached = DimensionDraws(theta=draws.theta, confusion=conf).pass_by_cell
    np.testing.assert_array_equal(cached, got.reshape(50, 3 * 4 * 4))


def _weighted_var(x: np.ndarray, w: np.ndarray) -> float:
    w = w / w.sum()
    mean = float(w @ x)
    return float(w @ (x - mean) ** 2)


def _brute_force_score(
    draws: DimensionDraws, traffic: np.ndarray, u: np.ndarray, m: int, r: int, j: int
) -> float:
    """Var(Δ) − Σ_y P(y|j) Var_{w^y}(Δ), summed over the Δ involving arm m, with loops."""
    delta = delta_draws(draws.theta, traffic)
    total = 0.0
    for c in range(delta.shape[1]):
        if m not in (0, c + 1):
            continue
        lik1 = np.array(
            [
                draws.theta[s, m, r]
                * draws.confusion[s, m, 1, j]
                / (
                    draws.theta[s, m, r] * draws.confusion[s, m, 1, j]
                    + (1 - draws.theta[s, m, r]) * draws.confusion[s, m, 0, j]
                )
                for s in range(draws.n_draws)
            ]
        )
        before = _weighted_var(delta[:, c], u)
        after = 0.0
        for lik in (lik1, 1.0 - lik1):
            p_y = float(u @ lik) / u.sum()
            after += p_y * _weighted_var(delta[:, c], u * lik)
        total += before - after
    return total


def test_score_equals_the_variance_reduction_computed_by_hand_on_tiny_draws():
    # Judge bin says nothing (both rows equal), so P(y=1 | j, draw) = θ of the draw.
    theta = np.array([[[0.90], [0.80]], [[0.50], [0.60]], [[0.70], [0.75]], [[0.30], [0.35]]])
    conf = np.tile(np.array([[0.5, 0.5], [0.5, 0.5]]), (4, 2, 1, 1))
    draws = DimensionDraws(theta=theta, confusion=conf, margin=0.02)
    table = dimension_scores(draws, traffic=np.array([1.0]), confidence=0.99, criterion="variance")

    delta = np.array([-0.10, 0.10, 0.05, 0.05])  # θ[1] − θ[0] per draw
    var = delta.var()
    for arm in (0, 1):
        p = theta[:, arm, 0]
        after = 0.0
        for lik in (p, 1 - p):
            w = lik / lik.sum()
            mean = w @ delta
            after += lik.mean() * (w @ (delta - mean) ** 2)
        np.testing.assert_allclose(table[arm, 0, 0], var - after, rtol=1e-9)
        np.testing.assert_allclose(table[arm, 0, 1], var - after, rtol=1e-9)
    assert table[0, 0, 0] > 0


def test_perfectly_informative_judge_bin_leaves_nothing_for_a_human_to_add():
    draws = _random_draws(m=2, r=1, j=2)
    conf = draws.confusion.copy()
    conf[:, :, 0, :] = [1.0, 0.0]  # a fail always lands in bin 0
    conf[:, :, 1, :] = [0.3, 0.7]  # bin 1 only ever holds passes
    informative = DimensionDraws(theta=draws.theta, confusion=conf, margin=0.02)
    table = dimension_scores(informative, traffic=np.array([1.0]), confidence=0.999)
    np.testing.assert_allclose(table[:, :, 1], 0.0, atol=1e-15)
    assert (table[:, :, 0] > 0).all()


@pytest.mark.parametrize("weighted", [False, True])
def test_closed_form_matches_brute_force_on_every_cell(weighted):
    draws = _random_draws(s=60, m=3, r=2, j=3, seed=3)
    traffic = np.array([0.7, 0.3])
    rng = np.random.default_rng(1)
    log_w = rng.normal(size=60) if weighted else None
    table = dimension_scores(
        draws, traffic=traffic, confidence=0.9999, log_weights=log_w, criterion="variance"
    )
    standardised = dimension_scores(draws, traffic=traffic, confidence=0.9999, log_weights=log_w)
    u = np.ones(60) if log_w is None else np.exp(log_w)
    p = pass_given_bin(draws.theta, draws.confusion)
    for m, r, j in itertools.product(range(3), range(2), range(3)):
        expected = _brute_force_score(draws, traffic, u, m, r, j)
        np.testing.assert_allclose(table[m, r, j], expected, rtol=1e-8, atol=1e-15)
        # The default: the same drop per unit of the cell's Bernoulli variance, ×¼.
        p_bar = float(u @ p[:, m, r, j]) / u.sum()
        np.testing.assert_allclose(
            standardised[m, r, j], expected / (4 * p_bar * (1 - p_bar)), rtol=1e-8, atol=1e-15
        )


def _conjugate_draws(passes: np.ndarray, labelled: np.ndarray, s: int = 200_000) -> DimensionDraws:
    """Exact Beta(1, 1) posterior draws of two models × two judge bins (one region)."""
    rng = np.random.default_rng(11)
    cells = rng.beta(1 + passes, 1 + labelled - passes, size=(s, 2, 2))
    w = np.array([0.6, 0.4])
    theta = (cells * w).sum(axis=2)[:, :, None]
    return DimensionDraws(theta=theta, cells=cells[:, :, None, :], margin=0.02)


def test_the_default_score_does_not_read_a_cells_own_grades():
    """Two cells alike in labels but not in grades: the plain variance drop favours the one
    nearer ½ (the adaptive sampling that biases estimates); the default scores them alike,
    within Monte Carlo error."""
    labelled = np.array([[40, 40], [40, 40]])
    near_half = np.array([[20, 20], [20, 20]])
    near_one = np.array([[36, 36], [36, 36]])
    kw = {"traffic": np.array([1.0]), "confidence": 0.9999}
    for criterion, alike in (("standardised", True), ("variance", False)):
        a = dimension_scores(_conjugate_draws(near_half, labelled), criterion=criterion, **kw)
        b = dimension_scores(_conjugate_draws(near_one, labelled), criterion=criterion, **kw)
        ratio = b / a
        if alike:
            np.testing.assert_allclose(ratio, 1.0, rtol=0.08)
        else:
            assert (ratio < 0.5).all()  # 0.9·0.1 / (0.5·0.5) = 0.36 in theory
    # And what it does read is the design: w² / (4 (n + 3)²) for Beta(1, 1) and n labels.
    labelled = np.array([[40, 20], [40, 10]])
    got = dimension_scores(_conjugate_draws(np.array([[36, 18], [36, 1]]), labelled), **kw)
    w = np.array([0.6, 0.4])
    np.testing.assert_allclose(got[:, 0, :], w**2 / (4 * (labelled + 3) ** 2), rtol=0.08)


@pytest.mark.slow
def test_the_default_score_leaves_no_adaptive_bias_where_the_plain_one_does():
    """``bench/adaptive_bias.py`` in small: the app's selector on a conjugate model, the
    judge flattering the candidate; ``z = (mean − Δ) / sd`` over the looks at 100–300
    labels, 300 studies each (s.e. of the mean ≈ 0.03 after pooling the looks)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import adaptive_bias as ab

    w, p = ab.cells_of("flatter_50")
    z = {}
    for criterion in ("standardised", "variance"):
        rng = np.random.default_rng(4)
        rows = np.array(
            [ab.run_study(w, p, criterion, 0.15, 300, 50, 200, rng) for _ in range(300)]
        )
        z[criterion] = float((rows[:, 1:, 0] / rows[:, 1:, 1]).mean())
    assert abs(z["standardised"]) < 0.07, z
    assert z["variance"] > 0.1, z  # the bias the default removes is really there to remove


def _brute_force_wrong_verdict(
    draws: DimensionDraws, traffic: np.ndarray, u: np.ndarray, m: int, r: int, j: int
) -> float:
    """min(P, 1 − P) − Σ_y P(y|j) min(P_y, 1 − P_y), P = P(Δ > −δ), with loops."""
    delta = delta_draws(draws.theta, traffic)
    p = pass_given_bin(draws.theta, draws.confusion)[:, m, r, j]
    total = 0.0
    for c in range(delta.shape[1]):
        if m not in (0, c + 1):
            continue
        ok = (delta[:, c] > -draws.margin).astype(float)
        p_ok = float(u @ ok) / u.sum()
        after = 0.0
        for lik in (p, 1.0 - p):
            p_y = float(u @ lik) / u.sum()
            p_ok_y = float((u * lik) @ ok) / float(u @ lik)
            after += p_y * min(p_ok_y, 1.0 - p_ok_y)
        total += max(min(p_ok, 1.0 - p_ok) - after, 0.0)
    return total


@pytest.mark.parametrize("weighted", [False, True])
def test_wrong_verdict_criterion_matches_brute_force_on_every_cell(weighted):
    draws = _random_draws(s=80, m=3, r=2, j=3, seed=5)
    traffic = np.array([0.4, 0.6])
    log_w = np.random.default_rng(2).normal(size=80) if weighted else None
    table = dimension_scores(
        draws, traffic=traffic, confidence=0.9999, log_weights=log_w, criterion="wrong_verdict"
    )
    u = np.ones(80) if log_w is None else np.exp(log_w)
    assert table.max() > 0
    for m, r, j in itertools.product(range(3), range(2), range(3)):
        expected = _brute_force_wrong_verdict(draws, traffic, u, m, r, j)
        np.testing.assert_allclose(table[m, r, j], expected, rtol=1e-8, atol=1e-15)


def test_selector_keeps_a_stored_fits_share_of_a_fresh_fits_draws():
    """A replay hands the selector a fresh fit (thousands of draws), the app a stored one
    (thinned to 1,000): both select from the same evenly spaced draws."""
    draws = _random_draws(s=4000, m=2, r=2, j=3, seed=7)
    fit = DimensionFit(
        arms=("inc", "cand"),
        regions=("eu", "us"),
        n_bins=3,
        theta=draws.theta,
        confusion=draws.confusion,
        diagnostics={},
        ok=True,
        seed=0,
        counts_digest="x",
    )
    kept = DimensionDraws.from_fit(fit, margin=0.02)
    assert kept.n_draws == SELECTION_DRAWS
    thinned = fit.thinned(SELECTION_DRAWS)
    np.testing.assert_array_equal(kept.theta, thinned.theta)
    np.testing.assert_allclose(
        kept.pass_by_cell, pass_given_bin(thinned.theta, thinned.confusion).reshape(1000, -1)
    )
    assert DimensionDraws.from_fit(fit, margin=0.02, max_draws=None).n_draws == 4000


def test_settled_verdicts_attract_no_labels():
    draws = _random_draws(m=2, r=1)
    theta = draws.theta.copy()
    theta[:, 1, 0] = theta[:, 0, 0] + 0.2  # candidate clearly better: go
    settled = DimensionDraws(theta=theta, confusion=draws.confusion, margin=0.02)
    assert verdicts(delta_draws(theta, [1.0]), margin=0.02, confidence=0.95)[0] == "go"
    table = dimension_scores(settled, traffic=np.array([1.0]), confidence=0.95)
    np.testing.assert_array_equal(table, 0.0)
    for criterion in ("variance", "wrong_verdict"):
        open_table = dimension_scores(
            draws, traffic=np.array([1.0]), confidence=0.9999, criterion=criterion
        )
        assert open_table.max() > 0


def test_caller_can_hold_a_verdict_closed_from_the_fit_summary():
    draws = _random_draws(m=3, r=1)
    table = dimension_scores(
        draws, traffic=np.array([1.0]), confidence=0.9999, undecided=np.array([False, True])
    )
    np.testing.assert_array_equal(table[1], 0.0)  # candidate 1's only Δ is held closed
    assert table[2].max() > 0 and table[0].max() > 0


def test_cell_scores_sum_the_dimensions_a_grade_covers():
    tables = [np.arange(12.0).reshape(2, 2, 3), 100 * np.arange(8.0).reshape(2, 2, 2)]
    scores = score_cells(tables, arm=[0, 1, 1], region=[1, 0, 1], bins=[[2, 1], [0, 0], [1, -1]])
    np.testing.assert_allclose(scores, [5 + 300, 6 + 400, 10])


def test_reweighting_multiplies_by_the_label_likelihood():
    draws = _random_draws(s=50, m=2, r=2, j=2, seed=4)
    lw = reweight(None, draws, arm=[1, 0], region=[0, 1], bin=[1, 0], y=[1, 0])
    th, cf = draws.theta, draws.confusion
    lik1 = (
        th[:, 1, 0]
        * cf[:, 1, 1, 1]
        / (th[:, 1, 0] * cf[:, 1, 1, 1] + (1 - th[:, 1, 0]) * cf[:, 1, 0, 1])
    )
    lik2 = (
        (1 - th[:, 0, 1])
        * cf[:, 0, 0, 0]
        / (th[:, 0, 1] * cf[:, 0, 1, 0] + (1 - th[:, 0, 1]) * cf[:, 0, 0, 0])
    )
    expected = np.log(lik1 * lik2)
    np.testing.assert_allclose(lw, expected - expected.max(), rtol=1e-10)
    # y = -1 (dimension not graded) changes nothing.
    np.testing.assert_allclose(reweight(lw, draws, arm=[0], region=[0], bin=[0], y=[-1]), lw)


def test_a_label_in_a_bin_no_class_reaches_leaves_the_weights_finite_and_unchanged():
    draws = _random_draws(s=40, m=2, r=1, j=3, seed=5)
    conf = draws.confusion.copy()
    conf[:, :, :, 2] = 0.0
    conf /= conf.sum(axis=-1, keepdims=True)
    unreachable = DimensionDraws(theta=draws.theta, confusion=conf)
    lw = reweight(None, unreachable, arm=[1, 0], region=[0, 0], bin=[2, 2], y=[1, 0])
    np.testing.assert_array_equal(lw, np.zeros(40))


def test_effective_sample_size_is_kish():
    assert effective_sample_size(np.zeros(100)) == pytest.approx(100)
    lw = np.log(np.array([1.0, 1.0, 2.0]))
    assert effective_sample_size(lw) == pytest.approx(16 / 6)


def test_a_cell_just_labelled_no_longer_looks_equally_valuable():
    draws = _random_draws(s=2000, m=2, r=1, j=2, seed=7)
    sel = Selector(dimensions=[draws], traffic=np.array([1.0]), confidence=0.9999)
    before = sel.scores(arm=[1], region=[0], bins=[[0]])[0]
    rng = np.random.default_rng(0)
    ys = (rng.random(30) < 0.7).astype(int)
    sel.observe(
        arm=np.ones(30, int), region=np.zeros(30, int), bins=np.zeros((30, 1), int), y=ys[:, None]
    )
    after = sel.scores(arm=[1], region=[0], bins=[[0]])[0]
    assert after < 0.8 * before
    assert sel.effective_sample_sizes()[0] < 2000


def test_selector_asks_for_a_refit_when_the_weights_collapse():
    draws = _random_draws(s=500, m=2, r=1, j=2, seed=8)
    sel = Selector(dimensions=[draws], traffic=np.array([1.0]), confidence=0.99)
    assert not sel.needs_refit
    n = 400
    sel.observe(
        arm=np.ones(n, int),
        region=np.zeros(n, int),
        bins=np.zeros((n, 1), int),
        y=np.ones((n, 1), int),
    )
    assert sel.needs_refit


def _response_probabilities(scores, n_avail, eps, *, tries=4000):
    """The probability choose_cell reports for a response of each cell, and cell frequencies."""
    rng = np.random.default_rng(0)
    probs = {}
    freq = np.zeros(len(scores))
    for _ in range(tries):
        pick = choose_cell(scores, n_avail, eps, rng)
        probs.setdefault(pick.cell, pick.probability)
        assert probs[pick.cell] == pytest.approx(pick.probability)
        freq[pick.cell] += 1
    return probs, freq / tries


def test_response_probabilities_sum_to_one_and_match_the_draws():
    scores = np.array([0.1, 0.5, 0.5, 0.0, 0.2])
    n_avail = np.array([10, 3, 5, 40, 0])
    probs, freq = _response_probabilities(scores, n_avail, 0.15)
    assert 4 not in probs  # nothing available there
    assert set(probs) == {0, 1, 2, 3}
    total = sum(probs[c] * n_avail[c] for c in probs)
    assert total == pytest.approx(1.0)
    for c, p in probs.items():
        assert p > 0
        assert freq[c] == pytest.approx(p * n_avail[c], abs=0.03)
    # The greedy part splits between the two tied cells.
    assert probs[1] == pytest.approx(0.15 / 58 + 0.85 / (2 * 3))


def test_without_open_verdicts_the_pick_is_uniform_over_responses():
    rng = np.random.default_rng(0)
    pick = choose_cell(np.zeros(3), np.array([1, 2, 7]), 0.15, rng)
    assert pick.policy == "explore"
    assert pick.probability == pytest.approx(0.1)


def test_thousands_of_cells_from_a_thousand_draws_all_get_a_usable_score():
    """1,800 cells (3 arms × 6 regions × judge bins 2·5·10), 1,000 draws per dimension.

    Every score is finite and non-negative and the greedy pick is one of the best cells. How
    long this takes is measured by ``bench/selection_scores.py``, not here.
    """
    dims = [_random_draws(s=1000, m=3, r=6, j=j, seed=i) for i, j in enumerate((2, 5, 10))]
    sel = Selector(dimensions=dims, traffic=np.full(6, 1 / 6), confidence=0.9999)
    cells = np.array(list(itertools.product(range(3), range(6), range(2), range(5), range(10))))
    scores = sel.scores(arm=cells[:, 0], region=cells[:, 1], bins=cells[:, 2:])
    assert scores.shape == (1800,)
    assert np.isfinite(scores).all() and (scores >= 0).all() and scores.max() > 0
    pick = choose_cell(scores, np.full(len(cells), 3), 0.0, np.random.default_rng(0))
    assert pick.policy == "active"
    assert scores[pick.cell] >= scores.max() * (1 - 1e-9)


def test_selection_and_replay_import_without_django():
    code = (
        "import sys, calibration.bayes.select, calibration.bayes.replay\n"
        "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, timeout=300)
    assert proc.returncode == 0


def test_the_selectors_settled_verdicts_are_the_summarys_sequential_verdicts():
    """One rule: what the selector holds open is what ``summarise_delta`` shows undecided."""
    from calibration.bayes.decision import required_z_at, summarise_delta

    rng = np.random.default_rng(11)
    s, c = 4000, 6
    # Candidates from far below to far above the margin, so that every fraction below
    # settles some and leaves others open.
    delta = rng.normal(np.linspace(-0.08, 0.06, c), 0.02, size=(s, c))
    seen = set()
    for confidence in (0.9, 0.95, 0.99):
        for t in (0.05, 0.1, 0.25, 0.5, 0.9, 1.0, 1.5):
            b = required_z_at(t, confidence)
            got = verdicts(delta, margin=0.02, confidence=confidence, required_z=b)
            want = [
                summarise_delta(delta[:, k], margin=0.02, confidence=confidence, fraction=t)
                for k in range(c)
            ]
            # Clear of the boundary, so that the two z's rounding cannot decide.
            assert all(abs(abs(w.z) - b) > 1e-6 for w in want)
            assert got.tolist() == [w.verdict for w in want]
            seen.update(got.tolist())
    assert seen == {"go", "no-go", "undecided"}


def test_the_selectors_delta_is_the_summarys_delta_to_the_last_bit():
    from calibration.bayes import decision

    rng = np.random.default_rng(5)
    theta = rng.beta(20, 8, size=(500, 4, 5))
    traffic = rng.dirichlet(np.ones(5)) * 3  # not normalised: both normalise the same way
    got = delta_draws(theta, traffic)
    want = np.stack([decision.delta_draws(theta, traffic, c) for c in (1, 2, 3)], axis=1)
    np.testing.assert_array_equal(got, want)
    assert delta_draws(theta[:, :1], traffic).shape == (500, 0)


def test_the_selectors_one_look_verdicts_are_the_summarys():
    from calibration.bayes.decision import summarise_delta

    rng = np.random.default_rng(12)
    delta = rng.normal(np.linspace(-0.08, 0.06, 6), 0.02, size=(4000, 6))
    for confidence in (0.9, 0.95, 0.99):
        got = verdicts(delta, margin=0.02, confidence=confidence)
        want = [
            summarise_delta(delta[:, k], margin=0.02, confidence=confidence).verdict
            for k in range(6)
        ]
        assert got.tolist() == want
    assert set(got.tolist()) == {"go", "no-go", "undecided"}
