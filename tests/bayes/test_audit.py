"""calibration.bayes.audit: the design-based Δ and the agreement rule. No database."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.bayes.audit import AuditEstimate, Stratum, agree, audit_delta, stratum_estimate
from calibration.bayes.decision import HELD, audited_verdict, combine_verdicts


def _population(rng, n, p_pass, se, sp):
    y = rng.random(n) < p_pass
    f = np.where(y, rng.random(n) < se, rng.random(n) >= sp).astype(float)
    return y.astype(float), f


def _stratum(rng, y, f, k):
    idx = rng.choice(y.size, size=k, replace=False)  # uniform audit draws
    return Stratum(y=y[idx], f=f[idx], f_sum=f.sum(), f_sq_sum=(f**2).sum(), n_all=y.size)


def test_unbiased_and_covers_under_a_judge_that_flatters_the_candidate():
    """The judge passes the candidate's failures far more often (sp .55 vs .90): the model
    can be fooled by that; a uniform sample cannot."""
    rng = np.random.default_rng(0)
    w = np.array([0.7, 0.3])
    pops = {
        "inc": [_population(rng, 4000, p, 0.9, 0.9) for p in (0.80, 0.70)],
        "cand": [_population(rng, 4000, p, 0.9, 0.55) for p in (0.77, 0.66)],
    }
    truth = sum(
        wr * (pops["cand"][r][0].mean() - pops["inc"][r][0].mean()) for r, wr in enumerate(w)
    )
    est, cover = [], 0
    for _ in range(400):
        a = audit_delta(
            [_stratum(rng, *pops["cand"][r], 60) for r in range(2)],
            [_stratum(rng, *pops["inc"][r], 60) for r in range(2)],
            w,
        )
        est.append(a.mean)
        cover += a.lower <= truth <= a.upper
    assert np.mean(est) == pytest.approx(truth, abs=0.006)
    assert 0.91 <= cover / 400 <= 0.98


def test_an_informative_judge_narrows_the_stratum_and_a_useless_one_costs_little():
    rng = np.random.default_rng(1)
    y, f_good = _population(rng, 5000, 0.7, 0.95, 0.95)
    f_bad = rng.random(5000).round()
    idx = rng.choice(5000, 200, replace=False)

    def var(f):
        s = Stratum(y=y[idx], f=f[idx], f_sum=f.sum(), f_sq_sum=(f**2).sum(), n_all=5000)
        return stratum_estimate(s)[1]

    plain = y[idx].var(ddof=1) / 200
    assert var(f_good) < 0.5 * plain
    assert var(f_bad) < 1.1 * plain


def test_too_few_audit_grades_in_a_stratum_with_traffic_give_no_estimate():
    s_ok = Stratum(y=[1, 0, 1], f=[1, 0, 1], f_sum=5, f_sq_sum=5, n_all=8)
    s_thin = Stratum(y=[1], f=[1], f_sum=5, f_sq_sum=5, n_all=8)
    assert audit_delta([s_ok, s_thin], [s_ok, s_ok], [0.5, 0.5]) is None
    assert audit_delta([s_ok, s_thin], [s_ok, s_ok], [1.0, 0.0]) is not None


def test_agreement_within_joint_uncertainty_and_the_held_verdict():
    audit = AuditEstimate(mean=-0.05, se=0.02, lower=-0.089, upper=-0.011, n=100)
    # |0.00 − (−0.05)| = 0.05 vs 1.96·√(0.01² + 0.02²) = 0.0438: they disagree.
    assert not agree(0.0, 0.01, audit)
    assert agree(-0.02, 0.01, audit)
    assert audited_verdict("go", mean=0.0, sd=0.01, audit=audit) == (HELD, False)
    assert audited_verdict("go", mean=-0.02, sd=0.01, audit=audit) == ("go", True)
    assert audited_verdict("go", mean=0.0, sd=0.01, audit=None) == (HELD, None)
    assert audited_verdict("no-go", mean=0.0, sd=0.01, audit=audit)[0] == "no-go"
    assert combine_verdicts(["go", HELD], True) == HELD
    assert combine_verdicts(["go", HELD, "no-go"], True) == "no-go"
    assert combine_verdicts(["go", HELD, "undecided"], True) == "undecided"
