"""Per-candidate information fraction and re-plans (calibration.bayes.decision docstring).

No database: closed forms and Monte Carlo on Gaussian label streams, where the z statistic
of ``Δ_c`` at ``Δ = −δ`` is exactly the standardised difference of two arm means.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from calibration.bayes.decision import (
    Design,
    information_fraction,
    replan_design,
    required_probability_at,
    required_z,
    required_z_at,
    summarise_delta,
)

Z975 = NormalDist().inv_cdf(0.975)


def test_two_arms_graded_evenly_give_the_study_wide_fraction():
    for n in (10, 100, 700, 1000):
        assert information_fraction(n // 2, n // 2, 1000) == pytest.approx(n / 1000)
        assert required_z_at(n / 1000, 0.95) == pytest.approx(required_z(n, 1000, 0.95))


def test_labels_on_another_candidate_do_not_advance_this_one():
    # 600 grades on the incumbent and candidate 1, 10 on candidate 2.
    assert information_fraction(300, 10, 1000) < 0.04
    assert information_fraction(0, 500, 1000) == 0.0
    assert information_fraction(600, 600, 1000) == 1.0  # capped past the budget


def test_the_bar_is_phi_of_the_boundary():
    # "needs 99.6% at 3% of the budget"... of the two-arm fraction.
    assert required_probability_at(1.0, 0.95) == pytest.approx(0.975)
    assert required_probability_at(0.25, 0.95) == pytest.approx(NormalDist().cdf(2 * Z975))
    assert required_probability_at(0.0, 0.95) == 1.0
    d = np.random.default_rng(0).normal(0.0, 0.01, 4000)
    s = summarise_delta(d, margin=0.02, confidence=0.95, fraction=0.25)
    assert s.required_p == pytest.approx(NormalDist().cdf(2 * Z975))
    assert s.fraction == 0.25


def _streams(rng, paths: int, budget: int, alloc) -> tuple[np.ndarray, ...]:
    """Label counts per arm after each grade and the running sums, under Δ = −δ = 0 shift.

    ``alloc(k)`` gives the arm of grade k (0 incumbent, 1 candidate 1, 2 candidate 2).
    Per-label noise sd 1; the z statistic at the margin is the standardised mean difference.
    """
    arms = np.array([alloc(k) for k in range(budget)])
    y = rng.standard_normal((paths, budget))
    n = np.stack([np.cumsum(arms == a) for a in range(3)])  # (3, N)
    s = np.stack([np.cumsum(np.where(arms == a, y, 0.0), axis=1) for a in range(3)])
    return n, s


def _wrong_go_rate(n, s, looks, budget, per_candidate: bool) -> float:
    crossed = np.zeros(s.shape[1], dtype=bool)
    for k in looks:
        n0, n2 = n[0, k - 1], n[2, k - 1]
        if n0 == 0 or n2 == 0:
            continue
        z = (s[2, :, k - 1] / n2 - s[0, :, k - 1] / n0) / np.sqrt(1 / n0 + 1 / n2)
        t = information_fraction(int(n0), int(n2), budget) if per_candidate else k / budget
        crossed |= z >= required_z_at(t, 0.95)
    return float(crossed.mean())


def _diverted(budget: int):
    """Grades go 45/45/10 to incumbent/cand 1/cand 2 until half the budget, then 50/50 to
    the incumbent and candidate 2 (candidate 1 settled): the review's diversion scenario."""

    def alloc(k: int) -> int:
        if k < budget // 2:
            return (0, 1, 0, 1, 0, 1, 0, 1, 0, 2, 0, 1, 0, 1, 0, 1, 0, 1, 2, 1)[k % 20]
        return k % 2 * 2

    return alloc


def test_diverting_labels_between_candidates_keeps_the_wrong_go_rate_at_most_alpha():
    budget, paths = 1000, 8000
    n, s = _streams(np.random.default_rng(7), paths, budget, _diverted(budget))
    looks = range(20, budget + 1, 20)
    per_cand = _wrong_go_rate(n, s, looks, budget, per_candidate=True)
    study_wide = _wrong_go_rate(n, s, looks, budget, per_candidate=False)
    se = (0.05 * 0.95 / paths) ** 0.5
    assert per_cand <= 0.05 + 2 * se
    # The old, study-wide fraction is what the review measured as too permissive.
    assert study_wide > per_cand


def test_a_replan_keeps_the_conditional_error_and_lowering_to_the_count_freezes():
    d0 = Design.initial(0.95)
    assert d0.level == pytest.approx(Z975)
    # Lower the budget to the current count (t=0.5 of 1000 -> 500) with z = 2.1 < b = 2.77:
    d1 = replan_design(
        d0, fraction=0.5, z=2.1, old_budget=1000, new_budget=500,
        old_confidence=0.95, new_confidence=0.95,
    )  # fmt: skip
    assert d1.required_z(1.0) == float("inf")  # no information left: no go can follow
    # Raise it instead: the chance of a go from here to the new budget equals the old one.
    t0, z0 = 0.5, 2.1
    a = d0.conditional_error(fraction=t0, z=z0)
    d2 = replan_design(
        d0, fraction=t0, z=z0, old_budget=1000, new_budget=2000,
        old_confidence=0.95, new_confidence=0.95,
    )  # fmt: skip
    assert d2.conditional_error(fraction=0.25, z=z0) == pytest.approx(a)
    # A go that had been reached stays a go; a stricter confidence spends less.
    d3 = replan_design(
        d0, fraction=0.5, z=4.0, old_budget=1000, new_budget=2000,
        old_confidence=0.95, new_confidence=0.95,
    )  # fmt: skip
    assert d3.required_z(0.25) <= 4.0
    d4 = replan_design(
        d0, fraction=t0, z=z0, old_budget=1000, new_budget=2000,
        old_confidence=0.95, new_confidence=0.99,
    )  # fmt: skip
    assert d4.conditional_error(fraction=0.25, z=z0) == pytest.approx(a / 5)
    assert Design.from_list(d2.to_list()) == d2


def test_gaming_the_budget_by_replanning_keeps_the_wrong_go_rate_at_most_alpha():
    """The review's attack: once z ≥ 1.96, lower the budget to the current count; else
    raise it from N to 2N at the budget. Through re-plans, neither lifts the rate."""
    budget, paths = 600, 8000
    rng = np.random.default_rng(11)
    n, s = _streams(rng, paths, 2 * budget, lambda k: k % 2 * 2)
    go = np.zeros(paths, dtype=bool)
    for p in range(paths):
        design, plan_budget, stop = Design.initial(0.95), budget, False
        for k in range(20, 2 * budget + 1, 20):
            n0, n2 = int(n[0, k - 1]), int(n[2, k - 1])
            z = (s[2, p, k - 1] / n2 - s[0, p, k - 1] / n0) / np.sqrt(1 / n0 + 1 / n2)
            t = information_fraction(n0, n2, plan_budget)
            if z >= design.required_z(t):
                go[p] = True
                break
            if k >= plan_budget:  # the verdict at the budget is final, unless re-planned
                if plan_budget == budget:
                    design = replan_design(
                        design, fraction=t, z=z, old_budget=plan_budget,
                        new_budget=2 * budget, old_confidence=0.95, new_confidence=0.95,
                    )  # fmt: skip
                    plan_budget = 2 * budget
                    continue
                break
            if z >= Z975 and not stop:  # lower the budget to the count
                design = replan_design(
                    design, fraction=t, z=z, old_budget=plan_budget, new_budget=k,
                    old_confidence=0.95, new_confidence=0.95,
                )  # fmt: skip
                plan_budget, stop = k, True
        if p >= 1500 and go[: p + 1].mean() < 0.03:
            break  # clearly under: spare the CPU
    rate = go[: p + 1].mean()
    assert rate <= 0.05 + 2 * (0.05 * 0.95 / (p + 1)) ** 0.5


def test_lowering_the_budget_to_the_count_freezes_even_with_unevenly_graded_arms():
    # 70 grades on the incumbent and 56 on the candidate of a 300-grade budget: the
    # candidate's fraction 4·e/N (0.415) rescaled to the new budget 126 stays below 1 (0.99).
    t = information_fraction(70, 56, 300)
    assert t * 300 / 126 < 1
    for z in (2.19, -2.19, 0.3):
        for side, sign in ((Design.initial(0.95), 1.0), (Design.initial(0.95), -1.0)):
            loose = replan_design(
                side, fraction=t, z=sign * z, old_budget=300, new_budget=126,
                old_confidence=0.95, new_confidence=0.95,
            )  # fmt: skip
            # Without the count, a boundary within Monte Carlo noise of z: the refit on the
            # same grades could settle either way.
            assert abs(loose.required_z(t * 300 / 126) - sign * z) < 0.5
            frozen = replan_design(
                side, fraction=t, z=sign * z, old_budget=300, new_budget=126,
                old_confidence=0.95, new_confidence=0.95, labels=126,
            )  # fmt: skip
            assert frozen.required_z(t * 300 / 126) == float("inf")
    # A go already reached still stands.
    kept = replan_design(
        Design.initial(0.95), fraction=t, z=4.0, old_budget=300, new_budget=126,
        old_confidence=0.95, new_confidence=0.95, labels=126,
    )  # fmt: skip
    assert kept.required_z(t * 300 / 126) <= 4.0
