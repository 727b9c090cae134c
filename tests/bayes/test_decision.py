from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.bayes.data import CellCounts
from calibration.bayes.decision import (
    delta_draws,
    delta_draws_by_region,
    judge_summary,
    naive_judge_delta,
    summarise,
    summarise_delta,
    verdict,
)
from calibration.bayes.fit import DimensionFit

ARMS = ("inc", "cand")
REGIONS = ("eu", "us")
W = np.array([0.75, 0.25])


def _fit(theta: np.ndarray, confusion: np.ndarray | None = None, ok: bool = True) -> DimensionFit:
    s = theta.shape[0]
    if confusion is None:
        confusion = np.tile(np.array([[0.85, 0.15], [0.1, 0.9]]), (s, 2, 1, 1))
    return DimensionFit(
        arms=ARMS,
        regions=REGIONS,
        n_bins=confusion.shape[-1],
        theta=theta,
        confusion=confusion,
        diagnostics={"max_rhat": 1.0, "min_ess_bulk": 1000.0, "divergences": 0.0},
        ok=ok,
        seed=1,
        counts_digest="x",
    )


def _theta(inc: tuple[float, float], cand: tuple[float, float], s: int = 4000, sd: float = 0.0):
    rng = np.random.default_rng(0)
    th = np.empty((s, 2, 2))
    th[:, 0] = inc
    th[:, 1] = cand
    return th + rng.normal(0, sd, size=th.shape) if sd else th


def test_delta_is_the_traffic_weighted_difference() -> None:
    th = _theta((0.8, 0.6), (0.7, 0.9), s=3)
    np.testing.assert_allclose(delta_draws(th, W, 1), 0.75 * -0.1 + 0.25 * 0.3, atol=1e-12)
    np.testing.assert_allclose(delta_draws(th, [3, 1], 1), 0.75 * -0.1 + 0.25 * 0.3, atol=1e-12)
    np.testing.assert_allclose(delta_draws_by_region(th, 1), [[-0.1, 0.3]] * 3)


def test_verdict_rule() -> None:
    assert verdict(0.96, 0.01, 0.95) == "go"
    assert verdict(0.02, 0.97, 0.95) == "no-go"
    assert verdict(0.6, 0.4, 0.95) == "undecided"


def test_summarise_delta_probabilities_and_interval() -> None:
    draws = np.linspace(-0.1, 0.1, 2001)
    s = summarise_delta(draws, margin=0.05, confidence=0.7)
    assert s.mean == pytest.approx(0.0, abs=1e-12)
    assert s.lower == pytest.approx(-0.095, abs=1e-3)
    assert s.upper == pytest.approx(0.095, abs=1e-3)
    assert s.p_noninferior == pytest.approx(0.75, abs=1e-3)
    assert s.p_inferior == pytest.approx(0.25, abs=1e-3)
    assert s.verdict == "go"


def test_candidate_is_go_only_when_every_dimension_is_go() -> None:
    good = _fit(_theta((0.8, 0.8), (0.8, 0.8), sd=0.005))
    bad = _fit(_theta((0.8, 0.8), (0.6, 0.6), sd=0.005))
    vague = _fit(_theta((0.8, 0.8), (0.78, 0.78), sd=0.05))
    assert (
        summarise({"a": good, "b": good}, weights=W, margins=0.02).candidates["cand"].verdict
        == "go"
    )
    mixed = summarise({"a": good, "b": vague}, weights=W, margins={"a": 0.02, "b": 0.02})
    assert mixed.candidates["cand"].dimensions["b"].overall.verdict == "undecided"
    assert mixed.candidates["cand"].verdict == "undecided"
    assert (
        summarise({"a": good, "b": bad, "c": vague}, weights=W, margins=0.02)
        .candidates["cand"]
        .verdict
        == "no-go"
    )


def test_go_needs_converged_fits() -> None:
    good = _fit(_theta((0.8, 0.8), (0.8, 0.8), sd=0.005), ok=False)
    summary = summarise({"a": good}, weights=W, margins=0.02)
    assert summary.candidates["cand"].dimensions["a"].overall.verdict == "go"
    assert summary.candidates["cand"].verdict == "undecided"


def test_region_verdicts_use_the_same_rule() -> None:
    fit = _fit(_theta((0.8, 0.8), (0.8, 0.5), sd=0.005))
    dim = summarise({"a": fit}, weights=W, margins=0.02).candidates["cand"].dimensions["a"]
    assert dim.regions["eu"].verdict == "go"
    assert dim.regions["us"].verdict == "no-go"


def test_summary_serialises_to_json() -> None:
    fit = _fit(_theta((0.8, 0.7), (0.75, 0.7), sd=0.01))
    summary = summarise({"a": fit}, weights=W, margins=0.05, confidence=0.9)
    payload = json.loads(json.dumps(summary.to_dict()))
    dim = payload["candidates"]["cand"]["dimensions"]["a"]
    assert set(dim["overall"]) == {
        "mean",
        "lower",
        "upper",
        "p_noninferior",
        "p_inferior",
        "verdict",
        "z",
        "required_z",
        "required_p",
        "fraction",
        "sd",
        "required_z_nogo",
        "skew",
    }
    assert payload["confidence"] == 0.9


def test_judge_difference_probability_for_a_binary_judge() -> None:
    s = 1000
    conf = np.tile(np.array([[0.85, 0.15], [0.1, 0.9]]), (s, 2, 1, 1))
    same = judge_summary(_fit(_theta((0.8, 0.8), (0.8, 0.8), s=s), conf), 1)
    assert same.p_differs == 0.0
    assert same.sensitivity is not None and same.specificity is not None
    np.testing.assert_allclose(same.sensitivity["cand"], [0.9, 0.9, 0.9])
    np.testing.assert_allclose(same.specificity["inc"], [0.85, 0.85, 0.85])
    shifted = conf.copy()
    shifted[: s // 4, 1, 1] = [0.2, 0.8]  # sensitivity drops by 0.1 in a quarter of draws
    diff = judge_summary(_fit(_theta((0.8, 0.8), (0.8, 0.8), s=s), shifted), 1)
    assert diff.p_differs == pytest.approx(0.25)


def test_naive_judge_delta_trusts_the_judge() -> None:
    judge_only = np.array([[[20, 80], [50, 50]], [[40, 60], [10, 90]]])
    labelled = np.zeros((2, 2, 2, 2), dtype=np.int64)
    labelled[1, 0, 1, 1] = 100  # 100 more judge-positives for cand in eu
    counts = CellCounts(
        arms=ARMS, regions=REGIONS, n_bins=2, judge_only=judge_only, labelled=labelled
    )
    expected = 0.75 * (160 / 200 - 0.8) + 0.25 * (0.9 - 0.5)
    assert naive_judge_delta(counts, W, 1) == pytest.approx(expected)


def test_the_strictest_open_boundary_ignores_settled_verdicts_and_counts_both_sides() -> None:
    from calibration.bayes.decision import strictest_open_boundary

    cells = [
        {"verdict": "go", "fraction": 0.2, "required_z": 9.0},  # settled: not counted
        {"verdict": "undecided", "fraction": 0.5, "required_z": 2.8},
        {"verdict": "held", "fraction": 0.4, "required_z": 3.1, "required_z_nogo": 3.3},
    ]
    assert strictest_open_boundary(cells) == 3.3
    # An open verdict with no boundary yet (no grade on one arm) settles nothing.
    assert strictest_open_boundary(
        [*cells, {"verdict": "undecided", "fraction": 0.0, "required_z": None}]
    ) == float("inf")
    assert strictest_open_boundary(cells[:1]) is None
    # Rows from before per-candidate boundaries (no fraction) say nothing.
    assert strictest_open_boundary([{"verdict": "undecided", "required_z": 2.0}]) is None


def test_the_selectors_boundary_is_the_strictest_open_one_else_the_study_wide_one():
    from calibration.bayes.decision import required_z, required_z_at, selector_boundary

    open_ = {"verdict": "undecided", "fraction": 0.2, "required_z": required_z_at(0.2, 0.95)}
    laxer = {"verdict": "undecided", "fraction": 0.5, "required_z": required_z_at(0.5, 0.95)}
    settled = {"verdict": "go", "fraction": 0.1, "required_z": required_z_at(0.1, 0.95)}
    kw = {"labels": 150, "budget": 300, "confidence": 0.95}
    assert selector_boundary([open_, laxer, settled], **kw) == required_z_at(0.2, 0.95)
    assert selector_boundary([settled], **kw) == required_z(150, 300, 0.95)
    assert selector_boundary([{**open_, "required_z": None}], **kw) == float("inf")
