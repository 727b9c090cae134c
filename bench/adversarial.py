r"""Honest verdicts where the model's assumptions are false: simulated studies through the loop.

Every study goes through the project's own loop (:func:`calibration.bayes.replay.run_loop`: the
real :class:`~calibration.bayes.fit.Fitter`, the selector with its exploration share and
reweighting between fits, and the sequential rule with the study's budget). The judge is
what we do not trust, so the scenarios break what a calibration model is tempted to assume:

* ``identical``: the control, the judge alike for both models;
* ``flatter_50`` / ``flatter_demo``: the judge passes 50% (62%: the demo's) of the
  candidate's failures and 15% of the incumbent's; ``flatter_50_2m`` the same at
  ``Δ = −2·margin``; ``flatter_50_b1500`` at a budget of 1,500;
* ``region`` / ``region_mirror``: the judge is near chance in a rare region (10% of
  traffic) where one model is 30 points worse;
* ``correlated``: two dimensions, a wrong answer also tends to fail on style, so the style
  judge's bin predicts correctness inside a cell (the selector conditions on both);
* ``binned_5M``: a continuous judge, not logistic in anything, cut into 5 bins, 5 million
  responses;
* ``few_labels``: 50 labels, the flattering judge;
* ``weak``: a weak judge (se .70, sp .65) alike for both models, where the curve has little
  to lean on and must not cost labels.

Each study runs to its budget. Its verdict is the first one the sequential rule settles
(what the app shows, and where it stops asking); coverage and bias are read at the budget,
a fixed look, not at a stopping time the data chose. Truth is the pass rate of the study's
own responses (the estimand of the model's post-stratification), set exactly: each
(arm, region) gets ``round(θ·N)`` passes. A **wrong go** is a go for a candidate whose true
``Δ`` is at or below ``−margin``. Intervals on rates are Wilson 95%.

The audit (every scenario; ``audit_share`` 10% as the app's default)
--------------------------------------------------------------------
The loop draws the app's audit picks and applies the app's hold
(:func:`calibration.bayes.decision.audited_verdict`). Each study records the first verdict the
model alone settles and the first one the app *shows* (a go the audit does not confirm is
held and the study goes on). ``audit`` in a summary: wrong go by the model alone and after
the hold (Wilson 95%), how often a model go was held, and, where the model is right
(``audit_identical_go``, Δ = 0), the cost: the share of right gos that never stood by the
budget and the extra labels from the model's go to the go the app shows. (Scenarios run
before the audit was in the loop have no ``audit`` block.)

Plan gaming (``game``)
----------------------
* ``game_lower_budget``: at the first look where some verdict is undecided with
  ``z ≥ 1.96``, the lead lowers the budget to the current count: a re-plan through
  :func:`calibration.bayes.decision.replan_cell` exactly as :func:`calibration.replans.replan`
  applies it, then the refit the app makes on a plan change, which is final (at the budget);
* ``game_past_budget``: grading goes on to twice the budget with a fit every ``batch``; the
  verdicts shown past the budget are those of the first fit at or past it (the app's rule),
  and the summary counts the fits whose own draws say otherwise;
* ``game_divert``: three arms, both candidates at ``Δ = −margin``; the non-audit picks go
  45/45/10 to incumbent/candidate 1/candidate 2 until half the budget, then 50/50 to the
  incumbent and candidate 2 (each candidate's boundary uses its own information fraction).

Forecast calibration (``--forecast``)
-------------------------------------
At every look where the dashboard would show a forecast (the shown verdict undecided, not
final), :func:`calibration.dashboards.settle_forecast` is called as the dashboard calls it;
its probability of settling within the grades left (``p_within``), and for close calls the
chance with Δ on the margin (``p_at_margin``), are set against whether the model's verdict
did settle by the budget. The reliability table is by decile of the
forecast (looks, not studies: looks of one study are correlated, so the Wilson intervals
are too narrow by an unknown factor), over all looks and within bands of the truth
(``table_by_truth``). ``forecast_spread`` draws each study's Δ from ±4·margin: the
population over which a posterior predictive probability is meant to come true. The looks
go to ``bench/raw/forecast/<scenario>.jsonl``; ``bench/forecast_calibration.py`` makes the
tables of ``bench/results/forecast_calibration.json`` from them.

Files
-----
**Raw rows** (git ignores ``bench/raw/``; ``--raw DIR`` for another root):

* ``bench/raw/adversarial/<scenario>.jsonl``: one line per study, what :func:`run_study`
  returns (``seed``, ``labels``, ``fits``, …, and ``rows``: one per candidate and dimension,
  with every look's posterior in ``looks``), tagged with ``scenario``, ``seed_set`` (the
  run's ``--seed``: study ``i`` has the seed ``seed_set + 1000·i``), ``commit``,
  ``code_digest`` (:func:`_code_digest`), ``model_version``, ``criterion`` (the selector's),
  ``settings`` (draws, tune, chains, margin) and ``command``;
* ``bench/raw/forecast/<scenario>.jsonl`` (with ``--forecast``): one line per study, the
  same tags, its first dimension's ``candidates``, how many settled by the budget
  (``settled_by_the_budget``) and every forecast ``looks`` (:func:`forecast_line`).

A run writes a scenario's lines once its studies are done: a new seed set adds its lines,
re-running a seed set replaces that set's lines (in place); forecast lines are replaced only
by a run with ``--forecast``. Seed sets of one scenario must share the chain settings and no
study seed (a run that would mix settings or pool a study twice stops before it starts);
seed sets run on different code (another ``code_digest``) are pooled with a warning, the
summary naming every commit and digest, so re-run the older sets when the change matters.

**The results** (``bench/results/adversarial.json``, through ``bench/results_io.py``; the
header is the last run's)::

    "results": {
     "scenarios": {"<scenario>": {…summary…}},  # from ALL the raw lines of the scenario
     "runs": […],          # commands behind the summaries written before the raw lines
     "superseded": {"<scenario>": [{"file_run_commit": …, "summary": {…}}]},  # earlier code
     "extra_runs": {"<label>": {…summary…}},  # other settings, e.g. the app's chain length
     "note": "…"            # what ran when, on which code
    }

A summary (:func:`summary_of`) is :func:`summarise` over every line of the scenario's raw
file, every seed set present, with its provenance: ``seed_sets`` (in file order),
``by_seed_set`` (studies, commit and code digest of each), ``commit`` and ``code_digest``
(one, or a list when the sets ran on different code), ``settings``, ``model_version`` and
``criterion``; ``study_seconds`` sums the studies' own loop times (not a speed figure on a
shared machine). After a run, the summaries of the scenarios it ran are recomputed and the
rest of the file is kept; ``--summarise-only`` recomputes them from the raw lines without
running a study (every scenario with a raw file, or ``--scenarios``). Summaries written
before the raw lines (with ``seed_sets`` as strings and no ``by_seed_set``) are as they were
pooled then; ``runs`` holds their commands.

Usage::

    python bench/adversarial.py --scenarios flatter_50 identical --studies 60 \
        --draws 400 --tune 400                 # seed set 20261207
    python bench/adversarial.py --scenarios flatter_50 --studies 60 --draws 400 \
        --tune 400 --seed 90000000             # a second seed set, pooled with the first
    python bench/adversarial.py --summarise-only --scenarios flatter_50
    python bench/adversarial.py --scenarios game_lower_budget --studies 60 \
        --draws 400 --tune 400 --forecast      # then bench/forecast_calibration.py
    python bench/adversarial.py --scenarios identical --studies 1 --draws 100 \
        --tune 100 --out /tmp/adv/adversarial.json --raw /tmp/adv/raw   # a smoke run
    python bench/adversarial.py --import-legacy OLD.json   # rows of a file in the old layout
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_io  # noqa: E402
from results_io import ROOT, raw_path, read_raw  # noqa: E402

from calibration.bayes.data import bin_scores, quantile_cuts  # noqa: E402
from calibration.bayes.replay import Population, all_labels_delta, run_loop  # noqa: E402
from calibration.bayes.summaries import SETTLED  # noqa: E402

MARGIN = 0.02
RAW = ROOT / "bench" / "raw"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    budget: int = 300
    batch: int = 50
    n_per_arm: int = 6000
    traffic: tuple[float, ...] = (0.5, 0.3, 0.2)
    #: True pass rate per (arm, region) of the first dimension.
    theta: tuple[tuple[float, ...], ...] = ((0.85, 0.85, 0.85), (0.83, 0.83, 0.83))
    #: Judge (sensitivity, specificity) per arm, or per (arm, region) when nested.
    judge: Any = ((0.90, 0.85), (0.90, 0.85))
    correlated: bool = False
    continuous: bool = False
    policy: str = "active"
    #: Share of uniform picks under ``active`` (the app's default, 15%).
    exploration_share: float = 0.15
    extra: dict[str, Any] = field(default_factory=dict)
    #: Share of grades drawn for the audit (the app's default, 10%); 0: no audit, no hold.
    audit_share: float = 0.10
    #: How a lead games the plan: "lower_budget" (to the count at the first look with
    #: z ≥ 1.96), "past_budget" (grading on to ``grade_to``), "divert" (grades to candidate
    #: 1 first, then candidate 2); None: no gaming.
    game: str | None = None
    grade_to: int | None = None
    #: When positive, each study draws the candidate's Δ uniformly from ``±spread`` (one
    #: pass rate for every region; the incumbent's from ``theta``): a population of studies.
    spread: float = 0.0


def _flat(theta_inc: float, delta: float, regions: int = 3) -> tuple[tuple[float, ...], ...]:
    return ((theta_inc,) * regions, (theta_inc + delta,) * regions)


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("identical", "identical judges, Δ = −margin", theta=_flat(0.85, -MARGIN)),
        Scenario(
            "flatter_50",
            "judge passes 50% of the candidate's failures, 15% of the incumbent's; Δ = −margin",
            theta=_flat(0.85, -MARGIN),
            judge=((0.90, 0.85), (0.90, 0.50)),
        ),
        Scenario(
            "flatter_demo",
            "the demo's flattering judge (specificity .62 vs .85); Δ = −margin",
            theta=_flat(0.85, -MARGIN),
            judge=((0.90, 0.85), (0.90, 0.62)),
        ),
        Scenario(
            "flatter_50_2m",
            "as flatter_50 at Δ = −2·margin",
            theta=_flat(0.85, -2 * MARGIN),
            judge=((0.90, 0.85), (0.90, 0.50)),
        ),
        Scenario(
            "flatter_50_b1500",
            "as flatter_50 at a budget of 1,500 (refit every 150)",
            theta=_flat(0.85, -MARGIN),
            judge=((0.90, 0.85), (0.90, 0.50)),
            budget=1500,
            batch=150,
        ),
        Scenario(
            "region",
            "judge near chance (se .60, sp .45) in a rare region (10%) where the candidate is "
            "30 points worse; Δ = −3 points; budget 1,500",
            traffic=(0.6, 0.3, 0.1),
            theta=((0.85, 0.85, 0.85), (0.85, 0.85, 0.55)),
            judge=(
                ((0.90, 0.85), (0.90, 0.85), (0.60, 0.45)),
                ((0.90, 0.85), (0.90, 0.85), (0.60, 0.45)),
            ),
            budget=1500,
            batch=150,
        ),
        Scenario(
            "region_mirror",
            "the mirror: the incumbent 30 points worse in the rare region, the candidate "
            "6.7 points worse elsewhere; Δ = −3 points; budget 1,500",
            traffic=(0.6, 0.3, 0.1),
            theta=((0.85, 0.85, 0.55), (0.7833, 0.7833, 0.85)),
            judge=(
                ((0.90, 0.85), (0.90, 0.85), (0.60, 0.45)),
                ((0.90, 0.85), (0.90, 0.85), (0.60, 0.45)),
            ),
            budget=1500,
            batch=150,
        ),
        Scenario(
            "correlated",
            "two dimensions: correctness Δ = −2·margin; style passes 92% of correct and 35% of "
            "wrong answers; both judges se .90 / sp .85; budget 1,000",
            theta=_flat(0.80, -2 * MARGIN),
            correlated=True,
            budget=1000,
            batch=100,
        ),
        Scenario(
            "binned_5M",
            "a continuous judge (fails ~N(0, 1.6²), passes ~N(2, 0.6²)) in 5 quantile bins, "
            "2.5M responses per arm; Δ = −margin",
            theta=_flat(0.85, -MARGIN),
            continuous=True,
            n_per_arm=2_500_000,
        ),
        Scenario(
            "few_labels",
            "50 labels only, the flattering judge at Δ = −2·margin",
            theta=_flat(0.85, -2 * MARGIN),
            judge=((0.90, 0.85), (0.90, 0.50)),
            budget=50,
            batch=25,
        ),
        Scenario(
            "identical_go",
            "identical judges, the candidate as good (Δ = 0): how often the right go comes",
            theta=_flat(0.85, 0.0),
        ),
        Scenario(
            "weak",
            "a weak judge alike for both models (se .70, sp .65); Δ = −margin",
            theta=_flat(0.85, -MARGIN),
            judge=((0.70, 0.65), (0.70, 0.65)),
        ),
        Scenario(
            "audit_identical",
            "identical judges, Δ = −margin, with the audit (10%) and its hold",
            theta=_flat(0.85, -MARGIN),
        ),
        Scenario(
            "audit_identical_go",
            "identical judges, Δ = 0, with the audit (10%): what the hold costs a right go",
            theta=_flat(0.85, 0.0),
        ),
        Scenario(
            "audit_identical_plus",
            "identical judges, Δ = +margin, with the audit (10%): a clear case",
            theta=_flat(0.85, MARGIN),
        ),
        Scenario(
            "forecast_spread",
            "identical judges, Δ drawn per study uniformly from ±4·margin: a population of "
            "studies for the forecast's calibration",
            theta=_flat(0.85, 0.0),
            spread=4 * MARGIN,
        ),
        Scenario(
            "forecast_spread_wide",
            "as forecast_spread with Δ from ±8·margin: true Δs spread wider than the first "
            "fits' posteriors",
            theta=_flat(0.85, 0.0),
            spread=8 * MARGIN,
        ),
        Scenario(
            "game_lower_budget",
            "identical judges, Δ = −margin; the lead lowers the budget to the current count "
            "at the first look where z ≥ 1.96 (a re-plan, as the app applies it)",
            theta=_flat(0.85, -MARGIN),
            game="lower_budget",
        ),
        Scenario(
            "game_past_budget",
            "identical judges, Δ = −margin, budget 150 (refit every 30); grading goes on to "
            "twice the budget and every fit is looked at",
            theta=_flat(0.85, -MARGIN),
            budget=150,
            batch=30,
            game="past_budget",
            grade_to=300,
        ),
        Scenario(
            "game_divert",
            "three arms, both candidates Δ = −margin, identical judges; grades go 45/45/10 to "
            "incumbent/candidate 1/candidate 2 until half the budget, then 50/50 to the "
            "incumbent and candidate 2 (audit picks stay uniform)",
            theta=((0.85,) * 3, (0.83,) * 3, (0.83,) * 3),
            judge=((0.90, 0.85), (0.90, 0.85), (0.90, 0.85)),
            game="divert",
            n_per_arm=4000,
        ),
    ]
}


def _twins(base: Scenario) -> tuple[Scenario, Scenario]:
    """``base`` without active selection, and with half its picks uniform (the app: 15%)."""
    return (
        replace(
            base,
            name=f"{base.name}_uniform",
            what=f"as {base.name} with every pick uniform: the same model without active selection",
            policy="uniform",
        ),
        replace(
            base,
            name=f"{base.name}_explore50",
            what=f"as {base.name} with half the picks uniform (exploration share .5, the "
            "app's .15)",
            exploration_share=0.5,
        ),
    )


SCENARIOS.update({t.name: t for b in ("flatter_demo", "flatter_50") for t in _twins(SCENARIOS[b])})

#: The review's diversion pattern (tests/calibration/test_information_and_replan.py).
DIVERT_FIRST_HALF = (0, 1, 0, 1, 0, 1, 0, 1, 0, 2, 0, 1, 0, 1, 0, 1, 0, 1, 2, 1)


def _exact(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    y = np.zeros(n, dtype=np.int64)
    y[rng.permutation(n)[: int(round(rate * n))]] = 1
    return y


def _judge_of(sc: Scenario, m: int, r: int) -> tuple[float, float]:
    spec = sc.judge[m]
    return tuple(spec[r]) if isinstance(spec[0], tuple | list) else tuple(spec)  # type: ignore[return-value]


def simulate(sc: Scenario, seed: int) -> Population:
    """One study of a scenario (module docstring)."""
    if sc.spread > 0:
        # Its own stream, so the responses below are drawn as for a fixed Δ.
        drawn = float(np.random.default_rng([seed, 1]).uniform(-sc.spread, sc.spread))
        sc = replace(sc, theta=_flat(sc.theta[0][0], drawn, len(sc.traffic)))
    rng = np.random.default_rng(seed)
    m_arms, n_reg = len(sc.theta), len(sc.traffic)
    arm = np.repeat(np.arange(m_arms), sc.n_per_arm)
    region = np.concatenate(
        [np.repeat(np.arange(n_reg), _split(sc.n_per_arm, sc.traffic)) for _ in range(m_arms)]
    )
    n = arm.size
    y = np.zeros(n, dtype=np.int64)
    for m in range(m_arms):
        for r in range(n_reg):
            idx = np.flatnonzero((arm == m) & (region == r))
            y[idx] = _exact(rng, idx.size, sc.theta[m][r])
    if sc.continuous:
        score = np.where(y == 1, rng.normal(2.0, 0.6, n), rng.normal(0.0, 1.6, n))
        cuts = quantile_cuts(score, 5)
        bins = bin_scores(score, cuts)[:, None]
        return _population(sc, arm, region, bins, y[:, None], score[:, None], (len(cuts) + 1,))
    se = np.empty(n)
    sp = np.empty(n)
    for m in range(m_arms):
        for r in range(n_reg):
            mask = (arm == m) & (region == r)
            se[mask], sp[mask] = _judge_of(sc, m, r)
    u = rng.random(n)
    j = np.where(y == 1, u < se, u < 1.0 - sp).astype(np.int64)
    if not sc.correlated:
        return _population(sc, arm, region, j[:, None], y[:, None], j[:, None].astype(float), (2,))
    # Style: passes 92% of correct answers and 35% of wrong ones; its judge se .90 / sp .85.
    y_b = np.where(y == 1, rng.random(n) < 0.92, rng.random(n) < 0.35).astype(np.int64)
    u = rng.random(n)
    j_b = np.where(y_b == 1, u < 0.90, u < 0.15).astype(np.int64)
    bins = np.column_stack([j, j_b])
    truth = np.column_stack([y, y_b])
    return _population(sc, arm, region, bins, truth, bins.astype(float), (2, 2))


def _split(n: int, shares: tuple[float, ...]) -> np.ndarray:
    counts = np.floor(np.asarray(shares) * n).astype(np.int64)
    counts[0] += n - counts.sum()
    return counts


def _population(sc, arm, region, bins, truth, score, n_bins) -> Population:
    dims = ("correct", "style")[: bins.shape[1]]
    return Population(
        arms=tuple(f"arm{m}" for m in range(len(sc.theta))),
        regions=tuple(f"r{r}" for r in range(len(sc.traffic))),
        traffic=np.asarray(sc.traffic, dtype=np.float64) / sum(sc.traffic),
        dimensions=dims,
        margins=(MARGIN,) * len(dims),
        n_bins=n_bins,
        arm=arm.astype(np.int64),
        region=region.astype(np.int64),
        bins=bins.astype(np.int64),
        truth=truth.astype(np.int64),
        score=score.astype(np.float64),
    )


def wilson(k: int, n: int, z: float = 1.959963984540054) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _hooks(sc: Scenario, gamed: dict[str, Any]) -> dict[str, Any]:
    """The loop's hooks for a scenario's gaming (module docstring, plan gaming)."""
    if sc.game == "lower_budget":

        def lower(rec: Any) -> int | None:
            # At the first look where some verdict is not yet a go but z ≥ 1.96, the lead
            # lowers the budget to the count: a re-plan, as the app applies it.
            if gamed or rec.labels >= rec.budget:
                return None
            row = next(
                (r for r in rec.deltas if r["verdict"] == "undecided" and r["z"] >= 1.96), None
            )
            if row is None:
                return None
            gamed.update(labels=rec.labels, z=row["z"], fraction=row["fraction"])
            return int(rec.labels)

        return {"replan": lower}
    if sc.game == "past_budget":
        return {"grade_to": sc.grade_to}
    if sc.game == "divert":
        half = sc.budget // 2

        def arm_of_pick(k: int) -> int:
            return DIVERT_FIRST_HALF[k % 20] if k < half else (0, 2)[k % 2]

        return {"arm_of_pick": arm_of_pick}
    return {}


def _forecaster(pop: Population, every: int, looks: dict[str, list[dict[str, Any]]]) -> Any:
    """An ``on_fit`` hook: the dashboard's forecast at every look where the page shows one.

    :func:`calibration.dashboards.settle_forecast` (the dashboard's own function, called as
    :func:`calibration.dashboards.pair_data` calls it: the Δ draws, the budget in force, the
    refit cadence, the candidate's fraction, the boundary levels in force, the history of
    earlier fits) wherever the shown verdict is undecided and not final. ``p`` is
    ``p_within``.
    """
    from calibration.bayes.decision import delta_draws
    from calibration.dashboards import boundary_levels, settle_forecast

    history: dict[str, dict[str, list[float]]] = {}

    def on_fit(rec: Any, fits: dict[str, Any]) -> None:
        name = pop.dimensions[0]
        for row in rec.deltas:
            if row["dimension"] != name:
                continue
            cand = row["candidate"]
            h = history.setdefault(cand, {"n": [], "sd": []})
            h["n"].append(rec.labels)
            h["sd"].append((row["upper"] - row["lower"]) / 3.92)
            if row["audited_verdict"] != "undecided" or row.get("final"):
                continue
            c = pop.arms.index(cand)
            f = settle_forecast(
                delta_draws(fits[name].theta, pop.traffic, c),
                margin=pop.margins[0],
                confidence=0.95,
                n_labels=rec.labels,
                budget=rec.budget,
                every=every,
                fraction=row["fraction"],
                levels=boundary_levels(row, 0.95),
                history_n=h["n"],
                history_sd=h["sd"],
                seed=len(h["n"]),
            )
            looks.setdefault(cand, []).append(
                {
                    "labels": rec.labels,
                    "budget": rec.budget,
                    "p": f["p_within"],
                    "close": f["close"],
                    "p_at_margin": f["p_at_margin"],
                }
            )

    return on_fit


def run_study(
    sc: Scenario, seed: int, fitter: Any, *, draws: int, tune: int, forecast: bool = False
) -> dict[str, Any]:
    pop = simulate(sc, seed)
    truth = all_labels_delta(pop)  # (C, D): every response's label is known here
    t0 = time.perf_counter()
    gamed: dict[str, Any] = {}
    looks: dict[str, list[dict[str, Any]]] = {}
    result = run_loop(
        pop,
        policy=sc.policy,
        exploration_share=sc.exploration_share,
        budget=sc.budget,
        batch=sc.batch,
        seed=seed,
        fitter=fitter,
        draws=draws,
        tune=tune,
        with_ppi=False,
        audit_share=sc.audit_share,
        # Run to the budget: the verdict is the first one the sequential rule settles (what
        # the app would show, and stop on), and coverage is read at a fixed look, the
        # budget, rather than at a stopping time chosen by the data.
        stop_when_settled=False,
        on_fit=_forecaster(pop, sc.batch, looks) if forecast else None,
        **_hooks(sc, gamed),
    )
    rows = []
    last = result.batches[-1]
    fits_ok = [all(row["fit_ok"] for row in b.deltas) for b in result.batches]
    for row in last.deltas:
        c = pop.arms.index(row["candidate"])
        d = pop.dimensions.index(row["dimension"])
        t = float(truth[c - 1, d])
        key = (row["candidate"], row["dimension"])
        trail = [
            (rec.labels, rec.budget, r)
            for rec in result.batches
            for r in rec.deltas
            if (r["candidate"], r["dimension"]) == key
        ]
        # The first verdict each rule settles: the model's alone, and the one the app shows
        # (a go the audit does not confirm is held, and the study goes on).
        model = next(((n, r["verdict"]) for n, _, r in trail if r["verdict"] != "undecided"), None)
        shown = next(
            ((n, r["audited_verdict"]) for n, _, r in trail if r["audited_verdict"] in SETTLED),
            None,
        )
        past = [r for n, b, r in trail if n > b]
        settled_at = [n for n, b, r in trail if r["verdict"] != "undecided" and n <= b]
        out_row: dict[str, Any] = {
            "candidate": row["candidate"],
            "dimension": row["dimension"],
            "truth": round(t, 5),
            "mean": round(row["mean"], 5),
            "lower": round(row["lower"], 5),
            "upper": round(row["upper"], 5),
            "verdict": model[1] if model else "undecided",
            "verdict_at_budget": row["verdict"],
            "ever_go": bool(model and model[1] == "go"),
            "go_at": model[0] if model and model[1] == "go" else None,
            "shown_verdict": shown[1] if shown else "undecided",
            "shown_go_at": shown[0] if shown and shown[1] == "go" else None,
            "ever_held": any(r["held"] for _, _, r in trail),
            "held_at_end": row["audited_verdict"] == "held",
            "audit_at_end": row.get("audit_sample"),
            "covers": bool(row["lower"] <= t <= row["upper"]),
            "judge": row.get("judge"),
            # Every look: grades, posterior mean and sd of Δ, the candidate's information
            # fraction (how the interim posteriors behave, not only the last one) and the
            # skewness of Δ's draws.
            "looks": [
                [
                    n,
                    round(r["mean"], 5),
                    round(r["sd"], 5),
                    round(r.get("fraction") or 0.0, 4),
                    round(r.get("skew") or 0.0, 4),
                ]
                for n, _, r in trail
            ],
        }
        if past:
            out_row["past_budget"] = {
                "fits": len(past),
                "raw_verdicts": [r.get("raw_verdict") for r in past],
                "shown": [r["verdict"] for r in past],
                "flips_prevented": sum(r.get("raw_verdict") != r["verdict"] for r in past),
                "raw_go_prevented": any(
                    r.get("raw_verdict") == "go" and r["verdict"] != "go" for r in past
                ),
            }
        if forecast:
            out_row["forecast"] = [
                {
                    **look,
                    "truth": round(t, 5),
                    "settled": any(look["labels"] < n for n in settled_at),
                }
                for look in looks.get(row["candidate"], [])
                if look["p"] is not None
            ]
        rows.append(out_row)
    return {
        "seed": seed,
        "labels": result.labels,
        "stopped": result.stopped,
        "budget_at_end": result.budget,
        "replan": gamed or None,
        "audit_picks": result.policies.count("audit"),
        "audit_sample": len(result.audited),
        "seconds": round(time.perf_counter() - t0, 2),
        "fits": len(result.batches),
        "fits_ok": int(sum(fits_ok)),
        "rows": rows,
    }


def _go_rates(first: list[dict[str, Any]], key: str, wrong: bool) -> dict[str, Any]:
    n = len(first)
    k = sum(1 for row in first if row[key] == "go" and ((row["truth"] <= -MARGIN + 1e-9) == wrong))
    return {"n": k, "rate": round(k / n, 4) if n else None, "wilson": wilson(k, n)}


def _audit_summary(first: list[dict[str, Any]]) -> dict[str, Any]:
    """Model alone against the app's hold (module docstring, the audit)."""
    n = len(first)
    model_go = [row for row in first if row["verdict"] == "go"]
    held = [row for row in model_go if row["ever_held"]]
    still = [row for row in model_go if row["shown_verdict"] != "go"]
    both = [row for row in model_go if row["shown_go_at"] is not None]
    extra = [row["shown_go_at"] - row["go_at"] for row in both]
    return {
        "wrong_go_model": _go_rates(first, "verdict", wrong=True),
        "wrong_go_after_hold": _go_rates(first, "shown_verdict", wrong=True),
        "right_go_model": _go_rates(first, "verdict", wrong=False),
        "right_go_after_hold": _go_rates(first, "shown_verdict", wrong=False),
        "model_go": len(model_go),
        "go_held_at_some_look": len(held),
        "go_held_share": round(len(held) / len(model_go), 4) if model_go else None,
        "go_held_share_wilson": wilson(len(held), len(model_go)),
        "go_never_stood_by_the_end": len(still),
        "go_never_stood_share": round(len(still) / len(model_go), 4) if model_go else None,
        "go_never_stood_wilson": wilson(len(still), len(model_go)),
        "extra_labels_to_the_go": {
            "studies": len(extra),
            "mean": round(float(np.mean(extra)), 1) if extra else None,
            "max": int(max(extra)) if extra else None,
            "mean_relative": round(
                float(np.mean([e / row["go_at"] for e, row in zip(extra, both, strict=True)])),
                4,
            )
            if extra
            else None,
        },
        "held_at_end": sum(row["held_at_end"] for row in first),
        "studies": n,
    }


def summarise(sc: Scenario, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [row for run in runs for row in run["rows"]]
    # Verdicts are judged on the first dimension (the others are context, e.g. style).
    first = [row for row in rows if row["dimension"] == rows[0]["dimension"]]
    n = len(first)
    bad_go = sum(1 for row in first if row["ever_go"] and row["truth"] <= -MARGIN + 1e-9)
    right_go = sum(1 for row in first if row["ever_go"] and row["truth"] > -MARGIN + 1e-9)
    no_go = sum(1 for row in first if row["verdict"] == "no-go")
    wrong_no_go = sum(
        1 for row in first if row["verdict"] == "no-go" and row["truth"] > -MARGIN + 1e-9
    )
    covers = sum(1 for row in first if row["covers"])
    errors = np.array([row["mean"] - row["truth"] for row in first])
    widths = np.array([row["upper"] - row["lower"] for row in first])
    judged = [row for row in first if row.get("judge")]
    said = sum(1 for row in judged if row["judge"]["differs"])
    fits = sum(run["fits"] for run in runs)
    fits_ok = sum(run["fits_ok"] for run in runs)
    return {
        "scenario": sc.name,
        "what": sc.what,
        "budget": sc.budget,
        "refit_every": sc.batch,
        "responses_per_arm": sc.n_per_arm,
        "studies": n,
        "wrong_go": bad_go,
        "wrong_go_rate": round(bad_go / n, 4) if n else None,
        "wrong_go_wilson": wilson(bad_go, n),
        "right_go": right_go,
        "no_go": no_go,
        "wrong_no_go": wrong_no_go,
        "coverage": round(covers / n, 4) if n else None,
        "coverage_wilson": wilson(covers, n),
        "bias_points": round(100 * float(errors.mean()), 3),
        "bias_se_points": round(100 * float(errors.std(ddof=1) / math.sqrt(n)), 3)
        if n > 1
        else None,
        "mean_width_points": round(100 * float(widths.mean()), 3),
        "mean_labels": round(float(np.mean([run["labels"] for run in runs])), 1),
        "fits_passing_diagnostics": f"{fits_ok}/{fits}",
        "judge_differs_said": f"{said}/{len(judged)}",
        "other_dimensions": _others(rows, first),
        "studies_run": len(runs),
        "audit_share": sc.audit_share,
        "mean_audit_sample": round(float(np.mean([r.get("audit_sample", 0) for r in runs])), 1),
        # Rows from before the audit was in the loop have no audit fields, and no block.
        "audit": _audit_summary(first)
        if sc.audit_share > 0 and all("ever_held" in row for row in first)
        else None,
        "game": _game_summary(sc, runs, first),
    }


def _game_summary(
    sc: Scenario, runs: list[dict[str, Any]], first: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """What the gaming did (module docstring, plan gaming)."""
    if sc.game is None:
        return None
    out: dict[str, Any] = {"game": sc.game}
    if sc.game == "lower_budget":
        gamed = [run for run in runs if run.get("replan")]
        rows = [row for run in gamed for row in run["rows"] if row["dimension"] == "correct"]
        out.update(
            {
                "replanned_studies": len(gamed),
                "replanned_at_labels": [run["replan"]["labels"] for run in gamed],
                "go_after_the_replan": sum(1 for row in rows if row["verdict"] == "go"),
                "verdicts_after_the_replan": {
                    v: sum(1 for row in rows if row["verdict_at_budget"] == v)
                    for v in ("go", "no-go", "undecided")
                },
            }
        )
    elif sc.game == "past_budget":
        past = [row["past_budget"] for row in first if row.get("past_budget")]
        raw_go = sum(1 for p in past if p["raw_go_prevented"])
        out.update(
            {
                "studies_graded_past_the_budget": len(past),
                "fits_past_the_budget": sum(p["fits"] for p in past),
                "verdict_changes_past_the_budget_shown": sum(
                    len(set(p["shown"])) > 1 for p in past
                ),
                "fits_whose_own_draws_disagree": sum(p["flips_prevented"] for p in past),
                "studies_where_a_raw_go_past_the_budget_was_kept_out": raw_go,
                "wrong_go_if_looks_past_the_budget_counted": _go_rates(
                    [
                        {
                            **row,
                            "any": "go"
                            if row["verdict"] == "go"
                            or (row.get("past_budget") or {}).get("raw_go_prevented")
                            else "x",
                        }
                        for row in first
                    ],
                    "any",
                    wrong=True,
                ),
            }
        )
    elif sc.game == "divert":
        out["per_candidate"] = {
            cand: {
                "wrong_go_model": _go_rates(
                    [row for row in first if row["candidate"] == cand], "verdict", wrong=True
                ),
                "wrong_go_after_hold": _go_rates(
                    [row for row in first if row["candidate"] == cand],
                    "shown_verdict",
                    wrong=True,
                ),
            }
            for cand in sorted({row["candidate"] for row in first})
        }
    return out


def reliability(looks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Forecast against outcome by decile of the forecast (``p`` in ``[0, 1]``)."""
    out = []
    for k in range(10):
        lo, hi = k / 10, (k + 1) / 10
        sel = [x for x in looks if lo <= x["p"] < hi or (k == 9 and x["p"] == 1.0)]
        n = len(sel)
        hits = sum(1 for x in sel if x["settled"])
        out.append(
            {
                "decile": [lo, hi],
                "n": n,
                "trajectories": len({x["study"] for x in sel}),
                "forecast_mean": round(float(np.mean([x["p"] for x in sel])), 4) if n else None,
                "observed": round(hits / n, 4) if n else None,
                "observed_wilson": wilson(hits, n) if n else None,
                "within_10_points": bool(
                    abs(float(np.mean([x["p"] for x in sel])) - hits / n) <= 0.10
                )
                if n
                else None,
            }
        )
    return out


#: Bands of the truth's distance to the margin, ``(Δ + δ)/δ``, for :func:`by_truth`.
TRUTH_BANDS = {
    "no-go side (Δ < −1.5·margin)": (-np.inf, -0.5),
    "at the margin (Δ within ±0.5·margin of −margin)": (-0.5, 0.5),
    "go side (Δ > −0.5·margin)": (0.5, np.inf),
}


def by_truth(looks: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`reliability` within bands of the truth (:data:`TRUTH_BANDS`).

    A forecast sees the data, not the truth: calibration within a band of the truth is more
    than any forecast can promise, and the bands show how far from it this one is.
    """
    out = {}
    for name, (lo, hi) in TRUTH_BANDS.items():
        sel = [x for x in looks if lo <= (x["truth"] + MARGIN) / MARGIN < hi]
        out[name] = {"looks": len(sel), "table": reliability(sel)}
    return out


def close_tables(looks: list[dict[str, Any]]) -> dict[str, Any]:
    """The close calls' looks (margin inside Δ's 80% interval): the predictive chance the
    page shows first, and the chance at the margin it adds, each against what happened."""
    close = [x for x in looks if x.get("close")]
    return {
        "close_looks": len(close),
        "table_close_predictive": reliability(close),
        "table_close_at_margin": reliability([{**x, "p": x["p_at_margin"]} for x in close]),
    }


def _others(rows: list[dict[str, Any]], first: list[dict[str, Any]]) -> dict[str, Any]:
    other = [row for row in rows if row not in first]
    if not other:
        return {}
    errs = np.array([row["mean"] - row["truth"] for row in other])
    return {
        "coverage": round(sum(row["covers"] for row in other) / len(other), 4),
        "bias_points": round(100 * float(errs.mean()), 3),
    }


def _code_digest() -> str:
    """sha256 of the code that decides a run (the model, the loop, this bench), so a
    result can be matched to its code even when it ran on an uncommitted tree."""
    import hashlib

    h = hashlib.sha256()
    files = sorted((ROOT / "calibration" / "bayes").glob("*.py"))
    for path in [*files, Path(__file__).resolve()]:  # bayes/ holds the loop (replay.py)
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ raw lines (module docstring)


# raw_path(raw, kind, scenario) (kind ``adversarial`` or ``forecast``) and read_raw(path) are
# results_io's, shared with the other benchmarks' raw lines.


def write_raw(path: Path, seed_set: int, lines: list[dict[str, Any]]) -> Path:
    """Put ``lines`` (one seed set's) into ``path``: they replace that set's lines where
    those stood, or follow the other sets' lines. The file is replaced atomically."""
    old = read_raw(path)
    at = next((i for i, line in enumerate(old) if line["seed_set"] == seed_set), len(old))
    kept = [line for line in old if line["seed_set"] != seed_set]
    new = [*kept[:at], *lines, *kept[at:]]  # old[:at] holds none of the set's lines
    return results_io.write_lines(path, new)


#: The tags of a raw line, beside what the study itself recorded.
TAGS = (
    "scenario",
    "seed_set",
    "commit",
    "code_digest",
    "model_version",
    "criterion",
    "settings",
    "command",
)


def forecast_line(run: dict[str, Any]) -> dict[str, Any]:
    """A study's forecast looks (module docstring, forecast) from its :func:`run_study` record:
    the first dimension's candidates, how many settled by the budget, every look."""
    first = [row for row in run["rows"] if row["dimension"] == run["rows"][0]["dimension"]]
    return {
        "seed": run["seed"],
        "candidates": [row["candidate"] for row in first],
        "settled_by_the_budget": sum(1 for row in first if row["verdict"] != "undecided"),
        "looks": [
            {**look, "candidate": row["candidate"]}
            for row in first
            for look in row.get("forecast", [])
        ],
    }


def one_or_list(values: list[Any]) -> Any:
    """The one value, or the distinct values in order of appearance."""
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    return distinct[0] if len(distinct) == 1 else distinct


def provenance(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Which seed sets, code and settings a scenario's raw lines come from (module docstring).

    Lines whose chain settings differ are not pooled: that stops here.
    """
    settings = one_or_list([line["settings"] for line in lines])
    if isinstance(settings, list):
        sets = {json.dumps(line["settings"], sort_keys=True): line["seed_set"] for line in lines}
        raise SystemExit(
            f"{lines[0]['scenario']}: the raw lines' seed sets ran with different settings "
            f"({sorted(sets)}); move the odd seed set's lines away before pooling"
        )
    by_set: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        by_set.setdefault(line["seed_set"], []).append(line)
    return {
        "seed_sets": list(by_set),
        "by_seed_set": [
            {
                "seed_set": s,
                "studies": len(group),
                "commit": one_or_list([x["commit"] for x in group]),
                "code_digest": one_or_list([x["code_digest"] for x in group]),
            }
            for s, group in by_set.items()
        ],
        "commit": one_or_list([line["commit"] for line in lines]),
        "code_digest": one_or_list([line["code_digest"] for line in lines]),
        "settings": settings,
        "model_version": one_or_list([line.get("model_version") for line in lines]),
        "criterion": one_or_list([line.get("criterion") for line in lines]),
    }


def summary_of(sc: Scenario, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`summarise` over every raw line of a scenario, with its provenance."""
    if not lines:
        raise ValueError(f"{sc.name}: no raw lines")
    where = provenance(lines)
    if isinstance(where["code_digest"], list):
        print(
            f"{sc.name}: pooling seed sets run on different code (digests "
            f"{where['code_digest']}); re-run the older sets if the change matters",
            file=sys.stderr,
        )
    return {
        **summarise(sc, lines),
        "study_seconds": round(sum(line.get("seconds") or 0.0 for line in lines), 1),
        **where,
    }


def _seed_set_of(seed: int, seed_sets: list[int]) -> int:
    """The seed set a study's seed belongs to (study ``i``: ``seed_set + 1000·i``)."""
    fits = [s for s in seed_sets if seed >= s and (seed - s) % 1000 == 0]
    if not fits:
        raise ValueError(f"seed {seed} is in none of the seed sets {seed_sets}")
    return max(fits)


def import_legacy(
    doc: dict[str, Any], raw: Path, tags_of: Any = None, *, echo: bool = True
) -> list[Path]:
    """Write the studies of a file in the earlier layout (``scenarios[name]["runs"]``, as
    this script wrote with ``--out`` before the raw lines) as raw lines, with the forecast
    looks its rows hold (if they have each look's ``truth`` and ``p_at_margin``, which the
    tables read). ``tags_of(name, seed_set)`` gives a set's tags; by default they are the
    file's own (``commit``, ``code_digest``, ``settings``, …, those of one run).
    """

    def own(name: str, seed_set: int) -> dict[str, Any]:
        return {
            "commit": doc.get("commit"),
            "code_digest": doc.get("code_digest"),
            "model_version": doc.get("model_version"),
            "criterion": None,
            "settings": doc.get("settings"),
            "command": doc.get("command"),
        }

    tags_of = tags_of or own
    written = []
    for name, entry in doc["scenarios"].items():
        runs = entry.get("runs") or []
        if not runs:
            continue
        stored = (entry.get("summary") or {}).get("seed_sets")
        sets = [int(s) for s in stored] if stored else [min(run["seed"] for run in runs)]
        groups: dict[int, list[dict[str, Any]]] = {}
        for run in runs:
            groups.setdefault(_seed_set_of(run["seed"], sets), []).append(run)
        for seed_set, group in groups.items():
            tags = {"scenario": name, "seed_set": seed_set, **tags_of(name, seed_set)}
            rows = [_without_forecast(run) for run in group]
            written.append(
                write_raw(raw_path(raw, "adversarial", name), seed_set, _tagged(tags, rows))
            )
            looks = [x for run in group for row in run["rows"] for x in row.get("forecast", [])]
            if looks and all("truth" in x and "p_at_margin" in x for x in looks):
                fc = [forecast_line(run) for run in group]
                written.append(
                    write_raw(raw_path(raw, "forecast", name), seed_set, _tagged(tags, fc))
                )
            elif looks and echo:  # the tables read each look's truth and chance at the margin
                print(f"{name}: its forecast looks are older than the tables, not written")
            if echo:
                print(f"{name}: seed set {seed_set}, {len(group)} studies", flush=True)
    return written


def _tagged(tags: dict[str, Any], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**{k: tags.get(k) for k in TAGS}, **line} for line in lines]


def _without_forecast(run: dict[str, Any]) -> dict[str, Any]:
    """A study's record without its forecast looks (they have their own raw file)."""
    return {
        **run,
        "rows": [{k: v for k, v in row.items() if k != "forecast"} for row in run["rows"]],
    }


# ---------------------------------------------------------------------------------- the run


def _write_summaries(path: Path, head: dict[str, Any], summaries: dict[str, Any]) -> None:
    """Put the scenarios' summaries into the results file, keeping every other entry."""
    got = results_io.section(path)
    results: dict[str, Any] = dict(got["results"]) if got else {}
    scenarios = dict(results.get("scenarios") or {})
    scenarios.update(summaries)
    results_io.write_results(head, {**results, "scenarios": scenarios}, path=path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios",
        nargs="*",
        default=None,
        help="default: every scenario (with --summarise-only: every one with raw lines)",
    )
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20261207, help="the seed set")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument(
        "--out",
        type=Path,
        default=results_io.path_of("adversarial"),
        help="the results file (default bench/results/adversarial.json)",
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=RAW,
        help="root of the raw lines: <raw>/adversarial/ and <raw>/forecast/ (default bench/raw)",
    )
    parser.add_argument(
        "--forecast",
        action="store_true",
        help="also record the dashboard's forecast at every look, into "
        "<raw>/forecast/<scenario>.jsonl (bench/forecast_calibration.py makes the tables)",
    )
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="run no study: recompute the scenarios' summaries from all their raw lines",
    )
    parser.add_argument(
        "--import-legacy",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the studies of a results file in the earlier layout (scenarios[name].runs, "
        "as --out wrote before the raw lines) as raw lines, then stop; --summarise-only next",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.scenarios or [] if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    if args.import_legacy is not None:
        import_legacy(json.loads(args.import_legacy.read_text()), args.raw)
        return 0
    head = results_io.header("adversarial", argv=argv)
    results_io.read(args.out)  # a file in another layout is refused now, not after the runs
    if args.summarise_only:
        names = args.scenarios or [
            n for n in SCENARIOS if raw_path(args.raw, "adversarial", n).exists()
        ]
        summaries = {}
        for name in names:
            lines = read_raw(raw_path(args.raw, "adversarial", name))
            if not lines:
                print(
                    f"{name}: no raw lines in {args.raw / 'adversarial'}, skipped", file=sys.stderr
                )
                continue
            summaries[name] = summary_of(SCENARIOS[name], lines)
            print(json.dumps(summaries[name]), flush=True)
        if summaries:
            _write_summaries(args.out, head, summaries)
        return 0
    if args.forecast:
        _setup_django()

    from calibration.bayes.fit import Fitter
    from calibration.bayes.posterior import MODEL_VERSION
    from calibration.bayes.select import Selector

    settings = {"draws": args.draws, "tune": args.tune, "chains": 2, "margin": MARGIN}
    tags = {
        "seed_set": args.seed,
        "commit": head["commit"],
        "code_digest": _code_digest(),
        "model_version": MODEL_VERSION,
        "criterion": Selector.__dataclass_fields__["criterion"].default,
        "settings": settings,
        "command": head["command"],
    }
    names = args.scenarios or list(SCENARIOS)
    for name in names:  # before any study runs: a set that could not be pooled stops here
        others = [
            line
            for line in read_raw(raw_path(args.raw, "adversarial", name))
            if line["seed_set"] != args.seed
        ]
        shared = {line["seed"] for line in others} & {
            args.seed + 1000 * i for i in range(args.studies)
        }
        if shared:  # a study pooled twice
            raise SystemExit(
                f"{name}: {len(shared)} of these studies' seeds are in other seed sets of "
                f"{raw_path(args.raw, 'adversarial', name)} (seeds step by 1,000); "
                "choose a --seed further away"
            )
        if any(line["settings"] != settings for line in others):
            raise SystemExit(
                f"{name}: {raw_path(args.raw, 'adversarial', name)} holds seed sets run with "
                f"other settings than {settings}; move it away or run with theirs"
            )
        if any(line["code_digest"] != tags["code_digest"] for line in others):
            print(f"{name}: its other seed sets ran on other code", file=sys.stderr)
    fitter = Fitter()
    for name in names:
        sc = SCENARIOS[name]
        runs = [
            run_study(
                sc,
                args.seed + 1000 * i,
                fitter,
                draws=args.draws,
                tune=args.tune,
                forecast=args.forecast,
            )
            for i in range(args.studies)
        ]
        mine = {"scenario": name, **tags}
        rows = [_without_forecast(run) for run in runs]
        write_raw(raw_path(args.raw, "adversarial", name), args.seed, _tagged(mine, rows))
        if args.forecast:
            fc = [forecast_line(run) for run in runs]
            write_raw(raw_path(args.raw, "forecast", name), args.seed, _tagged(mine, fc))
        summary = summary_of(sc, read_raw(raw_path(args.raw, "adversarial", name)))
        _write_summaries(args.out, head, {name: summary})
        print(json.dumps(summary), flush=True)
    return 0


def _setup_django() -> None:
    """The forecast is the dashboard's own function, in a module that imports Django models."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-adversarial-forecast")
    os.environ.setdefault("DEBUG", "0")
    import django

    django.setup()


if __name__ == "__main__":
    raise SystemExit(main())
