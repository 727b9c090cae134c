"""Replay: reading a flat table, the loop with hidden labels answering, PPI++, the command."""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from ppi_py import ppi_mean_ci

from calibration.bayes.posterior import DimensionFit
from calibration.bayes.replay import (
    Population,
    all_labels_delta,
    human_only_delta,
    load_table,
    population_from_table,
    ppi_delta,
    replay_report,
    run_loop,
)


def _write_table(path, *, n_items: int = 60, seed: int = 0, regions: bool = True) -> None:
    """Two systems (A incumbent, B), two dimensions, a good and a noisy judge, Likert labels."""
    rng = np.random.default_rng(seed)
    lines = ["item_id,prompt_id,system,dimension,human_label,judge,judge_score,note"]
    if regions:
        lines[0] += ",region"
    for system, level in (("A", 3.4), ("B", 3.1), ("C", 2.0)):
        for i in range(n_items):
            region = "eu" if i % 3 else "us"
            for dim in ("fluency", "relevance"):
                human = float(np.clip(round(rng.normal(level, 1.0)), 1, 5))
                good = human + rng.normal(0, 0.5)
                for judge, score in (("good", good), ("noise", rng.normal())):
                    row = f"{system}|{i},{i},{system},{dim},{human},{judge},{score:.4f},x"
                    lines.append(row + (f",{region}" if regions else ""))
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.fixture
def table_path(tmp_path):
    path = tmp_path / "table.csv.gz"
    _write_table(path)
    return path


def _pop(path, **kw) -> Population:
    args = {
        "incumbent": "A",
        "candidates": ["B"],
        "judge": "good",
        "pass_threshold": 3,
        "judge_threshold": 3.0,
    }
    args.update(kw)
    return population_from_table(load_table(path), **args)


def test_a_flat_table_becomes_one_response_per_item(table_path):
    pop = _pop(table_path)
    assert pop.arms == ("A", "B")
    assert pop.dimensions == ("fluency", "relevance")
    assert pop.size == 120
    assert pop.regions == ("eu", "us")
    np.testing.assert_allclose(pop.traffic, [40 / 60, 20 / 60])
    assert pop.n_bins == (2, 2)
    table = load_table(table_path)
    rows = table[(table.item_id == "B|7") & (table.judge == "good")].set_index("dimension")
    i = pop.items.index("B|7")
    assert pop.arm[i] == 1
    for d, dim in enumerate(pop.dimensions):
        assert pop.truth[i, d] == int(rows.loc[dim, "human_label"] >= 3)
        assert pop.bins[i, d] == int(rows.loc[dim, "judge_score"] >= 3.0)


def test_quantile_bins_and_given_traffic(table_path):
    pop = _pop(table_path, judge_threshold=None, judge_bins=3, traffic={"eu": 1, "us": 3})
    assert pop.n_bins == (3, 3)
    np.testing.assert_allclose(pop.traffic, [0.25, 0.75])
    assert set(np.unique(pop.bins)) == {0, 1, 2}


def test_a_table_without_regions_has_one(tmp_path):
    path = tmp_path / "t.csv.gz"
    _write_table(path, regions=False)
    pop = _pop(path)
    assert pop.regions == ("all",)
    np.testing.assert_allclose(pop.traffic, [1.0])


def test_bad_tables_are_refused(table_path, tmp_path):
    with pytest.raises(ValueError, match="system 'Z'"):
        _pop(table_path, candidates=["Z"])
    with pytest.raises(ValueError, match="no rows for judge"):
        _pop(table_path, judge="nobody")
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,system\nx,A\n")
    with pytest.raises(ValueError, match="lacks column"):
        _pop(bad)


def test_all_labels_delta_is_the_traffic_weighted_difference(table_path):
    pop = _pop(table_path)
    got = all_labels_delta(pop)
    for d in range(2):
        level = []
        for a in range(2):
            rates = [
                pop.truth[(pop.arm == a) & (pop.region == r), d].mean()
                for r in range(len(pop.regions))
            ]
            level.append(float(np.dot(rates, pop.traffic)))
        assert got[0, d] == pytest.approx(level[1] - level[0])


def test_ppi_with_one_region_and_uniform_picks_is_plain_ppi_plus_plus(tmp_path):
    path = tmp_path / "t.csv.gz"
    _write_table(path, regions=False)
    pop = _pop(path)
    rng = np.random.default_rng(0)
    picks = rng.choice(pop.size, size=50, replace=False)
    got = ppi_delta(pop, 1, 0, picks, np.full(50, 1 / pop.size))
    se = []
    mean = []
    for a in (1, 0):
        lab = picks[pop.arm[picks] == a]
        lo, hi = ppi_mean_ci(
            pop.truth[lab, 0].astype(float),
            pop.score[lab, 0],
            pop.score[pop.arm == a, 0],
            alpha=0.05,
        )
        mean.append((lo[0] + hi[0]) / 2)
        se.append((hi[0] - lo[0]) / (2 * 1.959963984540054))
    assert got["mean"] == pytest.approx(mean[0] - mean[1])
    half = 1.959963984540054 * np.hypot(*se)
    assert got["upper"] - got["mean"] == pytest.approx(half)
    classical = human_only_delta(pop, 1, 0, picks, np.full(50, 1 / pop.size))
    assert classical["upper"] - classical["lower"] > 0


def test_inverse_probability_weights_undo_an_oversampled_stratum(tmp_path):
    path = tmp_path / "t.csv.gz"
    _write_table(path, n_items=300, regions=False, seed=3)
    pop = _pop(path)
    rng = np.random.default_rng(1)
    # Judge-positive responses of both arms are picked four times as often.
    p = np.where(pop.bins[:, 0] == 1, 4.0, 1.0)
    p /= p.sum()
    estimates_ipw, estimates_naive = [], []
    truth = all_labels_delta(pop)[0, 0]
    for _ in range(40):
        picks = rng.choice(pop.size, size=150, replace=False, p=p)
        estimates_ipw.append(human_only_delta(pop, 1, 0, picks, p[picks])["mean"] - truth)
        estimates_naive.append(
            human_only_delta(pop, 1, 0, picks, np.full(150, 1 / pop.size))["mean"] - truth
        )
    assert abs(np.mean(estimates_ipw)) < abs(np.mean(estimates_naive))


class ConjugateFitter:
    """Beta/Dirichlet posteriors of the labelled counts only: no sampling, for loop tests."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def fit(
        self, cells: Any, dimension: int = 0, *, seed: int, draws: int, tune: int, chains: int
    ) -> DimensionFit:
        counts = cells.dimension_counts(dimension)
        rng = np.random.default_rng(seed)
        s = draws * chains
        lab = counts.labelled  # (M, R, 2, J)
        self.calls.append(int(lab.sum()))
        pos, neg = lab[:, :, 1].sum(-1), lab[:, :, 0].sum(-1)
        theta = rng.beta(1 + pos, 1 + neg, size=(s, *pos.shape))
        rows = lab.sum(axis=1)  # (M, 2, J)
        conf = np.stack(
            [
                np.stack([rng.dirichlet(1 + rows[m, y], size=s) for y in (0, 1)], axis=1)
                for m in range(rows.shape[0])
            ],
            axis=1,
        )
        # A fit in the older format (a confusion per arm, no curve): the loop reads both.
        return DimensionFit(
            arms=counts.arms,
            regions=counts.regions,
            n_bins=counts.n_bins,
            theta=theta,
            confusion=conf,
            diagnostics={},
            ok=True,
            seed=seed,
            counts_digest="",
        )


@pytest.mark.parametrize("policy", ["active", "uniform"])
def test_the_loop_asks_for_hidden_labels_and_refits_every_batch(table_path, policy):
    pop = _pop(table_path)
    fitter = ConjugateFitter()
    res = run_loop(
        pop,
        policy=policy,
        budget=45,
        batch=10,
        seed=2,
        fitter=fitter,
        draws=100,
        chains=2,
        stop_when_settled=False,
        refit_on_collapse=False,
    )
    assert res.labels == 45 and len(set(res.picks)) == 45
    assert [b.labels for b in res.batches] == [10, 20, 30, 40, 45]
    assert res.batches[-1].reason == "final"
    # The fitter saw exactly the labels asked for so far (two dimensions per fit).
    assert fitter.calls[:2] == [10, 10]
    assert all(0 < p <= 1 for p in res.probabilities)
    # Before the first fit uniform picks, and audit picks (10% by default) throughout.
    assert set(res.policies[:10]) <= {"uniform", "audit"}
    assert "audit" not in res.policies or res.audited
    if policy == "active":
        assert set(res.policies[10:]) <= {"active", "explore", "audit"}
        assert "active" in res.policies[10:]
    else:
        assert set(res.policies) <= {"uniform", "audit"}
        first = res.policies.index("uniform")
        assert res.probabilities[first] == pytest.approx(1 / (pop.size - first))
    report = replay_report(pop, res, settings={"policy": policy})
    json.dumps(report)
    assert report["labels_used"] == 45
    row = report["final"][0]
    assert {"all_labels_delta", "model", "audit", "human_only", "model_covers"} <= set(row)
    assert "ppi" not in row  # no inverse-weighted PPI++ on active picks presented as a check
    # The audit is PPI++ on the uniformly drawn picks alone, with equal weights.
    uniform = [i for i, p in zip(res.picks, res.policies, strict=True) if p != "active"]
    expected = ppi_delta(pop, 1, 0, uniform, [1.0] * len(uniform))
    assert row["audit"] == pytest.approx(expected)
    assert len(report["batches"]) == 5 and len(report["batches"][0]["deltas"]) == 2


def test_the_loop_stops_when_every_verdict_is_settled(tmp_path):
    path = tmp_path / "t.csv.gz"
    _write_table(path, n_items=100)
    pop = _pop(path, candidates=["C"])  # C is far worse: a clear no-go
    res = run_loop(
        pop, policy="active", budget=200, batch=20, seed=0, fitter=ConjugateFitter(), draws=100
    )
    assert res.stopped == "settled"
    assert res.labels < 200
    assert all(r["verdict"] == "no-go" for r in res.batches[-1].deltas)


@pytest.mark.slow
def test_replay_command_runs_the_real_fitter(table_path, tmp_path):
    out = tmp_path / "out.json"
    call_command(
        "replay",
        str(table_path),
        "--incumbent=A",
        "--candidate=B",
        "--dimension=fluency",
        "--judge=good",
        "--pass-threshold=3",
        "--judge-threshold=3",
        "--budget=24",
        "--batch=12",
        "--draws=150",
        "--no-stop",
        f"--out={out}",
        verbosity=0,
    )
    report = json.loads(out.read_text())
    assert report["labels_used"] == 24
    batches = report["batches"]
    # A fit every 12 labels, and an early one wherever the reweighted draws collapsed
    # (few labels move a wide posterior a lot): never more, never out of order.
    assert batches[0]["labels"] == 12 and batches[-1]["labels"] == 24
    assert [b["labels"] for b in batches] == sorted({b["labels"] for b in batches})
    assert all(b["reason"] == "ess" for b in batches[1:-1])
    final = report["final"][0]
    assert final["model"]["lower"] < final["model"]["upper"]
    assert final["audit"] is not None


def test_the_replay_selector_takes_the_boundary_the_app_gives_it() -> None:
    """A candidate graded less than its incumbent has a smaller information fraction than
    the study-wide n/N: its verdict must not look settled to the selector before the
    dashboard shows it settled (as ``selection.selector_for`` does in the app)."""
    from calibration.bayes.decision import (
        information_fraction,
        required_z,
        required_z_at,
        selector_boundary,
    )
    from calibration.bayes.replay import BatchRecord

    t = information_fraction(120, 30, 300)  # 0.32, against n/N = 0.5
    row = {"verdict": "undecided", "fraction": t, "required_z": required_z_at(t, 0.95)}
    record = BatchRecord(labels=150, deltas=[row], fit_seconds=0.0, ess_before=None, reason="batch")
    kw = {"labels": 150, "budget": 300, "confidence": 0.95}
    bound = selector_boundary(record.deltas, **kw)
    assert bound == pytest.approx(required_z_at(t, 0.95))
    assert bound > required_z(150, 300, 0.95)
    settled = BatchRecord(
        labels=150,
        deltas=[{**row, "verdict": "go"}],
        fit_seconds=0.0,
        ess_before=None,
        reason="batch",
    )
    assert selector_boundary(settled.deltas, **kw) == required_z(150, 300, 0.95)


def test_the_replays_delta_is_the_summarys_delta(table_path) -> None:
    from types import SimpleNamespace

    from calibration.bayes.decision import delta_draws, summarise_delta
    from calibration.bayes.replay import _summaries

    pop = _pop(table_path, candidates=["B", "C"])
    rng = np.random.default_rng(2)
    m, r = len(pop.arms), len(pop.regions)
    fits = {
        name: SimpleNamespace(
            theta=rng.beta(20, 8, size=(300, m, r)),
            confusion=rng.dirichlet(np.ones(2), size=(300, m, 2)),
        )
        for name in pop.dimensions
    }
    rows = _summaries(pop, fits, confidence=0.95, picks=[0, 1, 2], policies=[], with_ppi=False,
                      budget=100)  # fmt: skip
    assert len(rows) == (m - 1) * len(pop.dimensions)
    for row in rows:
        c, name = pop.arms.index(row["candidate"]), row["dimension"]
        d = pop.dimensions.index(name)
        s = summarise_delta(
            delta_draws(fits[name].theta, pop.traffic, c),
            margin=pop.margins[d],
            confidence=0.95,
            fraction=row["fraction"],
        )
        assert (row["mean"], row["lower"], row["upper"], row["sd"], row["verdict"]) == (
            s.mean,
            s.lower,
            s.upper,
            s.sd,
            s.verdict,
        )
