"""The replay loop behaves as the app: audit picks and the hold, re-plans, grades past the
budget, per-candidate information fractions. No sampler: scripted or conjugate fits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from calibration.bayes.audit import AuditEstimate, Stratum, audit_delta
from calibration.bayes.decision import audited_verdict, information_fraction
from calibration.bayes.posterior import DimensionFit
from calibration.bayes.replay import Population, audit_sample_estimates, run_loop
from tests.calibration.test_replay import ConjugateFitter


def _pop(
    theta: tuple[float, ...] = (0.85, 0.83),
    *,
    n: int = 400,
    regions: tuple[float, ...] = (0.6, 0.4),
    se: float = 0.9,
    sp: float = 0.85,
    seed: int = 0,
) -> Population:
    """``len(theta)`` arms of ``n`` responses, a binary judge, pass rates set exactly."""
    rng = np.random.default_rng(seed)
    m = len(theta)
    arm = np.repeat(np.arange(m), n)
    split = np.floor(np.asarray(regions) * n).astype(int)
    split[0] += n - split.sum()
    region = np.concatenate([np.repeat(np.arange(len(regions)), split) for _ in range(m)])
    y = np.zeros(m * n, dtype=np.int64)
    for a in range(m):
        idx = rng.permutation(np.flatnonzero(arm == a))
        y[idx[: round(theta[a] * n)]] = 1
    u = rng.random(m * n)
    j = np.where(y == 1, u < se, u < 1 - sp).astype(np.int64)
    return Population(
        arms=tuple(f"a{i}" for i in range(m)),
        regions=tuple(f"r{i}" for i in range(len(regions))),
        traffic=np.asarray(regions) / sum(regions),
        dimensions=("correct",),
        margins=(0.02,),
        n_bins=(2,),
        arm=arm,
        region=region.astype(np.int64),
        bins=j[:, None],
        truth=y[:, None],
        score=j[:, None].astype(float),
    )


class ScriptedFitter:
    """Posterior draws of each arm's pass rate from ``script(labels) -> (means, sd)``."""

    def __init__(self, script: Callable[[int], tuple[list[float], float]]) -> None:
        self.script = script
        self.calls: list[int] = []

    def fit(self, cells: Any, dimension: int = 0, **kw: Any) -> DimensionFit:
        counts = cells.dimension_counts(dimension)
        n = int(counts.labelled.sum())
        self.calls.append(n)
        means, sd = self.script(n)
        rng = np.random.default_rng(kw["seed"])
        m, r = len(counts.arms), len(counts.regions)
        s = kw["draws"] * kw["chains"]
        theta = np.asarray(means)[None, :, None] + sd * rng.standard_normal((s, m, 1))
        theta = np.repeat(theta, r, axis=2)
        conf = np.full((s, m, 2, counts.n_bins), 1.0 / counts.n_bins)
        return DimensionFit(
            arms=counts.arms,
            regions=counts.regions,
            n_bins=counts.n_bins,
            theta=theta,
            confusion=conf,
            diagnostics={},
            ok=True,
            seed=kw["seed"],
            counts_digest="",
        )


def _run(pop: Population, fitter: Any, **kw: Any):
    args: dict[str, Any] = {
        "policy": "uniform",
        "budget": 120,
        "batch": 20,
        "seed": 3,
        "fitter": fitter,
        "draws": 200,
        "chains": 2,
        "with_ppi": False,
        "refit_on_collapse": False,
    }
    args.update(kw)
    return run_loop(pop, **args)


def test_audit_picks_are_uniform_over_all_responses_at_the_share():
    pop = _pop(n=2000)
    res = _run(pop, ConjugateFitter(), budget=600, batch=200, stop_when_settled=False)
    audit = [i for i, p in zip(res.picks, res.policies, strict=True) if p == "audit"]
    share = len(audit) / res.labels
    assert 0.06 < share < 0.14  # 10% by default (binomial sd 1.2 points at 600 picks)
    assert all(
        p == pytest.approx(0.10 / pop.size)
        for p, pol in zip(res.probabilities, res.policies, strict=True)
        if pol == "audit"
    )
    # Every audit pick is in the audit sample, and so is a draw that landed on a response
    # graded before (its grade is already there): the sample is uniform over everything.
    assert set(audit) <= set(res.audited)
    assert set(res.audited) <= set(res.picks)
    none = _run(pop, ConjugateFitter(), budget=200, audit_share=0.0, stop_when_settled=False)
    assert "audit" not in none.policies and none.audited == []
    for rec in none.batches:
        for row in rec.deltas:  # no audit, no hold: as the app with audit_share 0
            assert row["audit_sample"] is None and row["audited_verdict"] == row["verdict"]


def test_the_audit_estimate_is_the_apps_ppi_on_the_audit_sample():
    pop = _pop(n=300)
    rng = np.random.default_rng(1)
    sample = rng.choice(pop.size, 80, replace=False)
    got = audit_sample_estimates(pop, sample)[(1, 0)]
    strata = []
    for a in (1, 0):
        per_region = []
        for r in range(2):
            all_ = (pop.arm == a) & (pop.region == r)
            mine = sample[(pop.arm[sample] == a) & (pop.region[sample] == r)]
            f_all = pop.bins[all_, 0].astype(float)
            per_region.append(
                Stratum(
                    y=pop.truth[mine, 0].astype(float),
                    f=pop.bins[mine, 0].astype(float),
                    f_sum=float(f_all.sum()),
                    f_sq_sum=float((f_all**2).sum()),
                    n_all=int(all_.sum()),
                )
            )
        strata.append(per_region)
    want = audit_delta(strata[0], strata[1], pop.traffic)
    assert isinstance(got, AuditEstimate) and want is not None
    assert got.mean == pytest.approx(want.mean) and got.se == pytest.approx(want.se)
    # Under two audit grades in an arm: no estimate (then a go is held).
    inc_only = sample[pop.arm[sample] == 0]
    one_cand = sample[pop.arm[sample] == 1][:1]
    assert audit_sample_estimates(pop, np.concatenate([inc_only, one_cand]))[(1, 0)] is None


def test_a_go_the_audit_contradicts_is_held_and_the_loop_keeps_asking():
    # The truth: the candidate 50 points worse. The model (scripted) is sure it is as good.
    # (A handful of audit grades cannot contradict anything: the first look comes after
    # ~30 of them, enough to see a gap this size.)
    pop = _pop((0.90, 0.40), n=1500)
    fitter = ScriptedFitter(lambda n: ([0.85, 0.85], 0.002))
    res = _run(pop, fitter, budget=400, batch=100, audit_share=0.3)
    rows = [rec.deltas[0] for rec in res.batches]
    assert all(r["verdict"] == "go" for r in rows)  # z is huge at every look
    assert any(r["held"] for r in rows)
    for r in rows:
        # The rule is the app's function, applied to what the row records.
        audit = None if r["audit_sample"] is None else AuditEstimate(**r["audit_sample"])
        want = audited_verdict(r["verdict"], mean=r["mean"], sd=r["sd"], audit=audit)
        assert (r["audited_verdict"], r["audit_agrees"]) == want
        assert r["held"] == (r["audited_verdict"] == "held")
    # A held go is open: the study does not stop on it.
    assert res.stopped == "budget" and res.labels == 400
    assert rows[-1]["audited_verdict"] == "held" and rows[-1]["audit_agrees"] is False


def test_an_agreeing_audit_lets_the_go_stand_and_the_loop_stops():
    pop = _pop((0.85, 0.85), n=1500)
    fitter = ScriptedFitter(lambda n: ([0.85, 0.85], 0.002))
    res = _run(pop, fitter, budget=600, batch=50, audit_share=0.3)
    last = res.batches[-1].deltas[0]
    assert last["audited_verdict"] == "go" and last["audit_agrees"] is True
    assert res.stopped == "settled" and res.labels < 600


def test_grades_past_the_budget_never_change_the_verdict():
    # At the budget the posterior is undecided; past it, it would say no-go.
    def script(n: int) -> tuple[list[float], float]:
        return ([0.85, 0.84], 0.02) if n <= 100 else ([0.85, 0.70], 0.005)

    pop = _pop(n=800)
    res = _run(
        pop, ScriptedFitter(script), budget=100, batch=20, grade_to=200, stop_when_settled=False
    )
    assert res.labels == 200
    at_budget = next(rec for rec in res.batches if rec.labels >= 100)
    assert at_budget.deltas[0]["verdict"] == "undecided"
    past = [rec.deltas[0] for rec in res.batches if rec.labels > 100]
    assert past and all(r["raw_verdict"] == "no-go" for r in past)
    assert all(r["verdict"] == "undecided" and r["final"] for r in past)


def test_lowering_the_budget_to_the_count_freezes_the_verdict():
    # z = 2.5 at the first look (below the boundary at a small fraction), then overwhelming.
    def script(n: int) -> tuple[list[float], float]:
        return ([0.85, 0.85], 0.00566) if n <= 40 else ([0.85, 0.90], 0.002)

    pop = _pop(n=800)
    plain = _run(pop, ScriptedFitter(script), budget=300, batch=40)
    assert plain.batches[0].deltas[0]["z"] == pytest.approx(2.5, abs=0.3)
    assert plain.batches[0].deltas[0]["verdict"] == "undecided"
    assert plain.batches[1].deltas[0]["verdict"] == "go"  # the next look would go

    seen: list[int] = []

    def lower(rec) -> int | None:
        row = rec.deltas[0]
        if not seen and row["z"] >= 1.96 and row["verdict"] == "undecided":
            seen.append(rec.labels)
            return rec.labels
        return None

    gamed = _run(pop, ScriptedFitter(script), budget=300, batch=40, replan=lower)
    assert seen == [40]
    assert [rec.reason for rec in gamed.batches] == ["batch", "replan"]
    assert gamed.budget == 40 and gamed.labels == 40
    row = gamed.batches[-1].deltas[0]
    # The refit on the same grades is final (at the new budget) and cannot go: the new
    # boundary keeps the conditional error, and there is (next to) no information left.
    assert row["final"] is True
    assert row["verdict"] == "undecided" and row["required_z"] > row["z"]
    # Raising it instead keeps the conditional error: the next looks can still go.
    raised = _run(
        pop,
        ScriptedFitter(script),
        budget=300,
        batch=40,
        replan=lambda rec: 600 if rec.labels == 40 else None,
    )
    assert raised.budget == 600
    assert raised.batches[1].reason == "replan"
    assert raised.batches[-1].deltas[0]["verdict"] == "go"


def test_diverted_grades_advance_each_candidate_by_its_own_fraction():
    pop = _pop((0.85, 0.83, 0.83), n=600)

    def arm_of_pick(k: int) -> int:
        return (0, 1)[k % 2] if k < 100 else (0, 2)[k % 2]

    res = _run(
        pop,
        ConjugateFitter(),
        budget=200,
        batch=50,
        arm_of_pick=arm_of_pick,
        audit_share=0.0,
        stop_when_settled=False,
    )
    arms = pop.arm[np.asarray(res.picks)]
    assert set(arms[:100]) == {0, 1} and set(arms[100:]) == {0, 2}
    for rec in res.batches:
        n = np.bincount(arms[: rec.labels], minlength=3)
        got = {r["candidate"]: r["fraction"] for r in rec.deltas}
        assert got["a1"] == pytest.approx(information_fraction(n[0], n[1], 200))
        assert got["a2"] == pytest.approx(information_fraction(n[0], n[2], 200))
    assert res.batches[1].deltas[1]["fraction"] == 0.0  # candidate 2 had no grade yet
