"""Label efficiency of active selection on simulated studies with a known truth.

Five parts, on simulated studies (``calibration.bayes.simulate``: two arms,
three regions with traffic 0.5/0.3/0.2, 6000 responses per arm, incumbent pass rates drawn
in 0.80–0.92 per region, a binary judge with the same sensitivity/specificity on both arms):

``efficiency`` (judge se 0.90 / sp 0.85) and ``weak`` (se 0.70 / sp 0.65)
    Human labels needed for a 95% interval of half-width ≤ 0.03 on Δ (true Δ drawn in
    ±0.04), by three methods on the same study:

    * **active**: the app's loop (:func:`calibration.bayes.replay.run_loop`: 100 uniform labels,
      then ``choose_cell`` with 15% exploration on the reweighted draws of the real
      Fitter, refitting on a schedule that shrinks as the interval nears the target; not
      when the reweighted draws collapse, see ``REFIT_ON_COLLAPSE``); the model's 95%
      credible interval, read at each fit; the label count of the first fit that meets the target;
    * **human-only**: uniform random labels, traffic-weighted Wald interval on the
      labelled pass rates (``ppi_mean_ci`` with ``lam=0``), checked every 10 labels;
    * **PPI++**: the same uniform labels, ``ppi_mean_ci`` (power-tuned λ, ``alpha=0.05``),
      the judge output as prediction, every response as the unlabelled set.

    Coverage: whether the interval at the stopping point covers the true Δ.

``weak_expected``
    The ``weak`` part's studies again, each method replicated (``ACTIVE_REPLICATES`` runs of
    the active loop with other seeds, ``UNIFORM_ORDERS`` label orders for human-only and
    PPI++): per study the expected labels of each method, their ratio with its standard
    error, and how far single runs scatter around it (:func:`summarise_expected`).

``verdict`` (se 0.90 / sp 0.85, margin 0.02, confidence 0.95)
    True Δ = +0.02 (go is right) or −0.06 (no-go is right), alternating. Labels until the
    first settled verdict under the app's sequential rule (``calibration.bayes.decision``,
    budget 2000, refit every 100), active vs uniform labelling with the same model; median
    labels to a correct verdict and wrong verdicts. The one-look rule read at every fit
    (``P(Δ > −δ) ≥ 0.95``, the rule before the sequential one) is read off the same runs.

``boundary``
    True Δ = −0.02 = −margin exactly; active labelling to the budget (1500, refit every 100)
    without stopping, keeping every fit's ``P(Δ > −δ)`` and ``z``. At the margin a go is a
    wrong verdict (non-inferiority claimed at the margin). Each rule of :data:`RULES` is read
    off the same trajectories (a rule stops at its first settled verdict, which depends on
    the fits before it only): the sequential rule, the one-look rule at every fit, a single
    look at the budget, the one-look rule from 300 labels on, and the one-look rule held on
    two consecutive fits. Rates with Wilson 95% intervals, and the spread of ``z`` across
    studies at each look (``N(0, 1)`` if the posterior is calibrated at the margin).
    ``brownian_check`` gives the large-sample rates of the same rules with refits every 20
    (the app's default) and every 100 labels (``simulate.sequential_go_rate``).

Each study runs in a worker process (``--workers``, one Fitter each) and is appended to
``--rows`` (JSON lines, default ``bench/raw/label_efficiency.jsonl``, which git does not
keep) as soon as it ends; a rerun skips the studies already there, so a run can be stopped
and resumed, and ``--until HH:MM`` (UTC) stops starting new studies. ``--out`` is rebuilt
from all rows after each study (``--summarise-only``: just that; it stops, naming the
command, when the rows are missing). The results file keeps each part's summary; its
per-study rows are the lines of the rows file with that ``part``, by seed, and ``raw`` says
which file and the command that makes every row of it (:func:`rows_command`). The JSON
records the load average and the CPU seconds of every study. A rerun of some parts at other
code is a variant of the results file (``--variant head``, with its own rows
``bench/raw/label_efficiency_head.jsonl``: the efficiency, verdict and boundary parts at the
model code after the first runs; ``bench/results_io.py``).

    nice -n 10 python bench/label_efficiency.py [--workers 2] [--until 13:45] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results_io import (  # noqa: E402
    add_variant_argument,
    header,
    raw_record,
    section,
    shown,
    write_results,
)

from calibration.bayes.decision import required_z  # noqa: E402
from calibration.bayes.fit import Fitter  # noqa: E402
from calibration.bayes.replay import (  # noqa: E402
    BatchRecord,
    Population,
    human_only_delta,
    ppi_delta,
    run_loop,
)
from calibration.bayes.simulate import sequential_go_rate, simulate_study  # noqa: E402

TARGET_HALF_WIDTH = 0.03
MARGIN = 0.02
WEIGHTS = np.array([0.5, 0.3, 0.2])
N_PER_ARM = 6000
MAX_LABELS = 6000
#: Refit early when the reweighted draws collapse (the app's "refit needed"). Off by default
#: here to bound compute: fits only on the schedule, reweighting in between. Selection then
#: works from fewer effective draws late in a batch, which can only make active *less*
#: efficient; the intervals (read at fits) are unaffected.
REFIT_ON_COLLAPSE = False


def make_population(
    seed: int, *, se: float, sp: float, delta: float | None
) -> tuple[Population, float]:
    rng = np.random.default_rng(10_000 + seed)
    inc = rng.uniform(0.80, 0.92, size=3)
    d = rng.uniform(-0.04, 0.04) if delta is None else delta
    cand = inc + d + rng.normal(0, 0.01, size=3)
    cand += d - (cand - inc) @ WEIGHTS  # exact traffic-weighted Δ = d
    theta = np.clip(np.stack([inc, cand]), 0.01, 0.99)
    study = simulate_study(
        theta=theta,
        weights=WEIGHTS,
        sensitivity=se,
        specificity=sp,
        n_per_arm=N_PER_ARM,
        seed=seed,
    )
    return Population.from_simulated(study, margin=MARGIN), float(study.true_delta()[1])


def half_width(row: dict[str, float]) -> float:
    return (row["upper"] - row["lower"]) / 2.0


def uniform_labels_to_width(
    pop: Population, truth: float, fn: Any, order: np.ndarray
) -> dict[str, Any]:
    """Labels ``fn`` (human-only or PPI++) needs on labels taken in ``order``, and coverage."""
    n_hit, row_hit = None, None
    # Coarse then fine: the half-width shrinks like 1/sqrt(n).
    n = 50
    while n <= MAX_LABELS:
        row = fn(pop, 1, 0, order[:n], np.full(n, 1.0 / pop.size))
        if row is not None and half_width(row) <= TARGET_HALF_WIDTH:
            break
        n += 100
    lo = max(n - 100, 40)
    for m in range(lo, min(n, MAX_LABELS) + 1, 10):
        row = fn(pop, 1, 0, order[:m], np.full(m, 1.0 / pop.size))
        if row is not None and half_width(row) <= TARGET_HALF_WIDTH:
            n_hit, row_hit = m, row
            break
    return {
        "labels": n_hit,
        "covers": None if row_hit is None else bool(row_hit["lower"] <= truth <= row_hit["upper"]),
    }


def uniform_order(pop: Population, seed: int) -> np.ndarray:
    return np.random.default_rng(20_000 + seed).permutation(pop.size)


def uniform_methods(pop: Population, truth: float, seed: int) -> dict[str, Any]:
    """Labels needed by human-only and PPI++ under uniform labelling (same label order)."""
    order = uniform_order(pop, seed)
    return {
        name: uniform_labels_to_width(pop, truth, fn, order)
        for name, fn in (("human_only", human_only_delta), ("ppi", ppi_delta))
    }


def active_labels_to_width(
    pop: Population,
    truth: float,
    seed: int,
    fitter: Fitter,
    draws: int,
    *,
    exploration_share: float = 0.15,
) -> dict[str, Any]:
    """Labels the model's loop needs (``exploration_share`` 1: every pick uniform)."""

    def next_fit(n: int, rec: BatchRecord | None) -> int:
        if rec is None:
            return 100
        hw = half_width(rec.deltas[0])
        want = n * (hw / TARGET_HALF_WIDTH) ** 2
        step = int(np.clip(0.8 * (want - n), 20, 250))
        return n + step

    def stop(rec: BatchRecord) -> bool:
        return half_width(rec.deltas[0]) <= TARGET_HALF_WIDTH

    t0 = time.perf_counter()
    res = run_loop(
        pop,
        policy="active",
        budget=MAX_LABELS,
        batch=100,
        seed=seed,
        fitter=fitter,
        draws=draws,
        tune=draws,
        chains=2,
        exploration_share=exploration_share,
        stop_when_settled=False,
        refit_on_collapse=REFIT_ON_COLLAPSE,
        with_ppi=False,
        next_fit=next_fit,
        stop=stop,
    )
    last = res.batches[-1]
    row = last.deltas[0]
    hit = half_width(row) <= TARGET_HALF_WIDTH
    return {
        "labels": last.labels if hit else None,
        "covers": bool(row["lower"] <= truth <= row["upper"]),
        "fits": len(res.batches),
        "explore_share": res.policies.count("explore") / max(res.labels, 1),
        "fit_ok": bool(row["fit_ok"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def trajectory(
    pop: Population,
    seed: int,
    fitter: Fitter,
    draws: int,
    policy: str,
    budget: int,
    batch: int,
    stop_when_settled: bool,
) -> list[dict[str, Any]]:
    """Run the loop and keep what every fit said (the product's rule decides ``verdict``)."""
    res = run_loop(
        pop,
        policy=policy,
        budget=budget,
        batch=batch,
        seed=seed,
        fitter=fitter,
        draws=draws,
        tune=draws,
        chains=2,
        stop_when_settled=stop_when_settled,
        refit_on_collapse=REFIT_ON_COLLAPSE,
        with_ppi=False,
    )
    out = []
    for rec in res.batches:
        row = rec.deltas[0]
        out.append(
            {
                "labels": rec.labels,
                "mean": round(row["mean"], 5),
                "lower": round(row["lower"], 5),
                "upper": round(row["upper"], 5),
                "p_ok": row["p_noninferior"],
                "z": None if not np.isfinite(row["z"]) else round(row["z"], 4),
                "required_z": round(row["required_z"], 4),
                "verdict": row["verdict"],
                "fit_ok": bool(row["fit_ok"]),
            }
        )
    return out


#: Decision rules read off a trajectory (each fit's P(Δ > −δ), z and label count). Every
#: rule is a function of the fits up to its stopping point only, so evaluating it on a
#: trajectory that went on gives exactly what a run stopping by that rule would have shown
#: (picks do not depend on the rule before it stops, up to the selector's own notion of
#: "settled", which only matters once P crosses 0.95).
RULES = ("sequential", "every_fit_p95", "final_look_p95", "every_fit_p95_from_300", "two_fits_p95")


def _one_look(p_ok: float) -> str:
    return "go" if p_ok >= 0.95 else ("no-go" if 1.0 - p_ok >= 0.95 else "undecided")


def first_verdict(traj: list[dict[str, Any]], rule: str) -> tuple[str, int]:
    """The verdict a rule gives on a trajectory and the label count where it gave it."""
    if rule == "final_look_p95":
        return _one_look(traj[-1]["p_ok"]), traj[-1]["labels"]
    prev = "undecided"
    for step in traj:
        if rule == "sequential":
            v = step["verdict"]
        elif rule == "every_fit_p95":
            v = _one_look(step["p_ok"])
        elif rule == "every_fit_p95_from_300":
            v = _one_look(step["p_ok"]) if step["labels"] >= 300 else "undecided"
        elif rule == "two_fits_p95":
            now = _one_look(step["p_ok"])
            v, prev = (now if now == prev else "undecided"), now
        else:
            raise ValueError(f"unknown rule {rule!r}")
        if v != "undecided":
            return v, step["labels"]
    return "undecided", traj[-1]["labels"]


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def summarise_widths(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def labels(method: str) -> np.ndarray:
        return np.array(
            [r[method]["labels"] for r in rows if r[method]["labels"] is not None], float
        )

    out: dict[str, Any] = {"studies": len(rows)}
    for method in ("active", "human_only", "ppi"):
        lab = labels(method)
        cov = [r[method]["covers"] for r in rows if r[method]["covers"] is not None]
        out[method] = {
            "reached_target": int(lab.size),
            "mean_labels": round(float(lab.mean()), 1) if lab.size else None,
            "median_labels": float(np.median(lab)) if lab.size else None,
            "coverage": round(float(np.mean(cov)), 4) if cov else None,
            "coverage_wilson95": wilson(int(np.sum(cov)), len(cov)),
        }
    both = [
        r for r in rows if all(r[m]["labels"] is not None for m in ("active", "human_only", "ppi"))
    ]
    if both:
        a = np.array([r["active"]["labels"] for r in both], float)
        h = np.array([r["human_only"]["labels"] for r in both], float)
        p = np.array([r["ppi"]["labels"] for r in both], float)
        out["ratio_active_to_human_only"] = round(float(a.sum() / h.sum()), 4)
        out["ratio_active_to_ppi"] = round(float(a.sum() / p.sum()), 4)
        out["ratio_ppi_to_human_only"] = round(float(p.sum() / h.sum()), 4)
        out["median_per_study_ratio_active_to_human_only"] = round(float(np.median(a / h)), 4)
        out["median_per_study_ratio_active_to_ppi"] = round(float(np.median(a / p)), 4)
        out["studies_compared"] = len(both)
    return out


def summarise_verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Labels to the first settled verdict and wrong verdicts, per policy and rule.

    The runs stop at the product's (sequential) rule; the one-look rule at every fit is read
    off the same trajectories (it settles no later, being the weaker rule).
    """
    summary: dict[str, Any] = {"studies": len(rows)}
    for policy in ("active", "uniform"):
        per_rule: dict[str, Any] = {}
        for rule in ("sequential", "every_fit_p95"):
            settled, correct_labels, wrong = 0, [], 0
            for r in rows:
                right = "go" if r["true_delta"] > -MARGIN else "no-go"
                v, n = first_verdict(r[policy], rule)
                if v == "undecided":
                    continue
                settled += 1
                if v == right:
                    correct_labels.append(n)
                else:
                    wrong += 1
            per_rule[rule] = {
                "settled": settled,
                "median_labels_to_correct_verdict": float(np.median(correct_labels))
                if correct_labels
                else None,
                "wrong_verdicts": wrong,
                "wrong_wilson95": wilson(wrong, settled),
            }
        summary[policy] = per_rule
    return summary


def summarise_boundary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """At Δ = −margin a go is the wrong verdict: its rate under each rule, Wilson 95%."""
    n = len(rows)
    out: dict[str, Any] = {"studies": n}
    for rule in RULES:
        got = [first_verdict(r["active"], rule) for r in rows]
        go = sum(v == "go" for v, _ in got)
        nogo = sum(v == "no-go" for v, _ in got)
        go_at = [k for v, k in got if v == "go"]
        out[rule] = {
            "go": go,
            "go_rate": round(go / n, 4) if n else None,
            "go_rate_wilson95": wilson(go, n),
            "no_go": nogo,
            "undecided_at_budget": n - go - nogo,
            "labels_at_go": go_at,
        }
    # Calibration at the margin: if the posterior is right, z at a fixed look is N(0, 1)
    # across studies (sd > 1 means over-confident intervals, which inflate every rule).
    by_look: dict[int, list[float]] = {}
    for r in rows:
        for step in r["active"]:
            if step["z"] is not None:
                by_look.setdefault(step["labels"], []).append(step["z"])
    out["z_across_studies"] = {
        str(n): {
            "studies": len(v),
            "mean": round(float(np.mean(v)), 3),
            "sd": round(float(np.std(v, ddof=1)), 3) if len(v) > 1 else None,
            "share_above_1.645": round(float(np.mean(np.array(v) >= 1.6449)), 4),
        }
        for n, v in sorted(by_look.items())
    }
    return out


#: One-sided 95% normal quantile, for an upper bound on a per-study ratio.
Z95_ONE_SIDED = 1.6448536269514722


def ratio_of_means(num: Any, den: Any) -> dict[str, float]:
    """``mean(num) / mean(den)`` of two sets of replicate label counts, with its standard
    error (delta method, the two sets independent) and one-sided 95% upper bound."""
    a, h = np.asarray(num, float), np.asarray(den, float)
    q = float(a.mean() / h.mean())
    rel = a.var(ddof=1) / a.size / a.mean() ** 2 + h.var(ddof=1) / h.size / h.mean() ** 2
    se = q * float(np.sqrt(rel))
    return {"ratio": round(q, 4), "se": round(se, 4), "upper_95": round(q + Z95_ONE_SIDED * se, 4)}


def summarise_expected(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per study, the *expected* labels of each method (mean over its replicates).

    One run's label count is a random stopping time: human-only's varies with the label
    order (about ±4% here), the model's more (about ±9% with a weak judge: its interval's
    width depends on the labels drawn; with every pick uniform it scatters about as much,
    ``bench/label_scatter.py``). A per-study claim about a method ("never more than 5%
    worse") is a claim about expectations, so it is checked on replicate means;
    ``noise_floor`` shows why single runs cannot carry it: human-only against itself on a
    second label order. A run that never reached the target (``None``, within
    ``MAX_LABELS``) is counted in ``runs_short_of_target`` and left out of the means.
    """
    out: dict[str, Any] = {"studies": len(rows)}
    if not rows:
        return out
    methods = ("active", "human_only", "ppi")
    short = {m: sum(v is None for r in rows for v in r[m]["labels"]) for m in methods}
    if any(short.values()):
        rows = [r for r in rows if all(v is not None for m in methods for v in r[m]["labels"])]
    out["runs_short_of_target"] = short
    out["studies_compared"] = len(rows)
    means = {m: np.array([np.mean(r[m]["labels"]) for r in rows]) for m in methods}
    ratio = means["active"] / means["human_only"]
    per = [ratio_of_means(r["active"]["labels"], r["human_only"]["labels"]) for r in rows]
    upper = np.array([x["upper_95"] for x in per])
    worst = np.argsort(-ratio)[:5]
    cov = [c for r in rows for c in r["active"]["covers"]]
    h_single = np.array([r["human_only"]["labels"][0] for r in rows], float)
    h_other = np.array([r["human_only"]["labels"][1] for r in rows], float)
    a_single = np.array([r["active"]["labels"][0] for r in rows], float)
    out.update(
        active_replicates=int(np.median([len(r["active"]["labels"]) for r in rows])),
        human_orders=int(np.median([len(r["human_only"]["labels"]) for r in rows])),
        ratio_active_to_human_only=round(
            float(means["active"].sum() / means["human_only"].sum()), 4
        ),
        ratio_active_to_ppi=round(float(means["active"].sum() / means["ppi"].sum()), 4),
        per_study_ratio={
            "max": round(float(ratio.max()), 4),
            "quantiles_50_90_99": [
                round(float(x), 4) for x in np.quantile(ratio, [0.5, 0.9, 0.99])
            ],
            "above_1": int((ratio > 1.0).sum()),
            "above_1.05": int((ratio > 1.05).sum()),
            "worst_five": [
                {
                    "seed": rows[i]["seed"],
                    "ratio": round(float(ratio[i]), 4),
                    "se": per[i]["se"],
                    "active_mean": round(float(means["active"][i]), 1),
                    "human_only_mean": round(float(means["human_only"][i]), 1),
                }
                for i in worst
            ],
            # Replicate noise: how many upper bounds pass 1.05, and the studies that come
            # closest (the ones worth more runs, bench/label_scatter.py).
            "upper_95_above_1.05": int((upper > 1.05).sum()),
            "highest_upper_95": [
                {"seed": rows[i]["seed"], **per[i]} for i in np.argsort(-upper)[:10]
            ],
        },
        relative_sd_of_one_run={
            m: round(
                float(
                    np.median(
                        [np.std(r[m]["labels"], ddof=1) / np.mean(r[m]["labels"]) for r in rows]
                    )
                ),
                4,
            )
            for m in ("active", "human_only")
        },
        coverage_active_all_replicates=round(float(np.mean(cov)), 4),
        coverage_active_wilson95=wilson(int(np.sum(cov)), len(cov)),
        noise_floor={
            "human_only_order_1_over_order_2_above_1.05": int((h_single / h_other > 1.05).sum()),
            "active_run_1_over_human_only_order_1_above_1.05": int(
                (a_single / h_single > 1.05).sum()
            ),
        },
    )
    return out


SUMMARIES = {
    "efficiency": summarise_widths,
    "weak": summarise_widths,
    "weak_expected": summarise_expected,
    "verdict": summarise_verdicts,
    "boundary": summarise_boundary,
}
SEED_BASE = {
    "efficiency": 0,
    "weak": 100_000,
    # The weak part's studies again (same populations), with replicates of every method.
    "weak_expected": 100_000,
    "verdict": 200_000,
    "boundary": 300_000,
}
#: ``weak_expected``: runs of the active loop, and label orders of the uniform methods, per
#: study. Replicate 0 is the ``weak`` part's run (its loop seed and label order).
ACTIVE_REPLICATES, UNIFORM_ORDERS = 4, 24
REPLICATE_STRIDE = 1_000_003
VERDICT_BUDGET, BOUNDARY_BUDGET, REFIT_EVERY = 2000, 1500, 100


class _ShortChainFitter(Fitter):
    """The app's Fitter without ESS top-ups (``Fitter.fit(ess_top_ups=...)``).

    The studies here use short chains (``--draws``) on purpose, for speed, so nearly every
    fit is short of ESS; topping them up would multiply the run time, and the rows already
    in ``--rows`` were computed without top-ups. What is measured here is the interval
    and the labels, not the diagnostics.
    """

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("ess_top_ups", 0)
        return super().fit(*args, **kwargs)


_fitter: Fitter | None = None


def run_study(task: tuple[str, int, int]) -> dict[str, Any]:
    """One simulated study of one part (runs in a worker process; one Fitter each)."""
    global _fitter
    part, i, draws = task
    if _fitter is None:
        _fitter = _ShortChainFitter(cores=1)
    t_cpu, t0 = time.process_time(), time.perf_counter()
    seed = SEED_BASE[part] + i
    row: dict[str, Any] = {"part": part, "seed": seed}
    if part in ("efficiency", "weak"):
        se, sp = (0.90, 0.85) if part == "efficiency" else (0.70, 0.65)
        pop, truth = make_population(seed, se=se, sp=sp, delta=None)
        row["true_delta"] = truth
        row.update(uniform_methods(pop, truth, seed))
        row["active"] = active_labels_to_width(pop, truth, seed, _fitter, draws)
    elif part == "weak_expected":
        pop, truth = make_population(seed, se=0.70, sp=0.65, delta=None)
        row["true_delta"] = truth
        for name, fn in (("human_only", human_only_delta), ("ppi", ppi_delta)):
            got = [
                uniform_labels_to_width(
                    pop, truth, fn, uniform_order(pop, seed + REPLICATE_STRIDE * k)
                )
                for k in range(UNIFORM_ORDERS)
            ]
            row[name] = {
                "labels": [g["labels"] for g in got],
                "covers": [g["covers"] for g in got],
            }
        runs = [
            active_labels_to_width(pop, truth, seed + REPLICATE_STRIDE * k, _fitter, draws)
            for k in range(ACTIVE_REPLICATES)
        ]
        row["active"] = {key: [r[key] for r in runs] for key in ("labels", "covers", "fits")}
    elif part == "verdict":
        delta = 0.02 if i % 2 == 0 else -0.06
        pop, truth = make_population(seed, se=0.90, sp=0.85, delta=delta)
        row["true_delta"] = truth
        for policy in ("active", "uniform"):
            row[policy] = trajectory(
                pop, seed, _fitter, draws, policy, VERDICT_BUDGET, REFIT_EVERY, True
            )
    elif part == "boundary":
        pop, truth = make_population(seed, se=0.90, sp=0.85, delta=-MARGIN)
        row["true_delta"] = truth
        row["active"] = trajectory(
            pop, seed, _fitter, draws, "active", BOUNDARY_BUDGET, REFIT_EVERY, False
        )
    else:
        raise ValueError(f"unknown part {part!r}")
    row["cpu_seconds"] = round(time.process_time() - t_cpu, 1)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a killed run
                continue
    return rows


def brownian_check(confidence: float = 0.95) -> dict[str, Any]:
    """Optional stopping in the large-sample limit (``simulate.sequential_go_rate``)."""
    z1 = NormalDist().inv_cdf(confidence)
    out: dict[str, Any] = {"paths": 200_000, "budget": BOUNDARY_BUDGET}
    for step in (20, 100):
        looks = np.arange(100, BOUNDARY_BUDGET + 1, step)
        seq = [required_z(int(n), BOUNDARY_BUDGET, confidence) for n in looks]
        out[f"refit_every_{step}"] = {
            "looks": int(looks.size),
            "every_fit_p95": sequential_go_rate(looks, np.full(looks.size, z1), paths=200_000),
            "sequential": sequential_go_rate(looks, seq, paths=200_000),
        }
    out["final_look_p95"] = sequential_go_rate([BOUNDARY_BUDGET], [z1], paths=200_000)
    return out


def build_results(rows: list[dict[str, Any]], wanted: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part, fn in SUMMARIES.items():
        got = sorted((r for r in rows if r["part"] == part), key=lambda r: r["seed"])
        if not got:
            continue
        entry: dict[str, Any] = {"studies_wanted": wanted.get(part, 0), "studies": len(got)}
        if part in ("weak", "weak_expected"):
            entry["judge"] = {"sensitivity": 0.7, "specificity": 0.65}
        else:
            entry["judge"] = {"sensitivity": 0.9, "specificity": 0.85}
        if part == "verdict":
            entry.update(budget=VERDICT_BUDGET, refit_every=REFIT_EVERY)
        if part == "boundary":
            entry.update(budget=BOUNDARY_BUDGET, refit_every=REFIT_EVERY)
        entry["summary"] = fn(got)  # the rows themselves stay in the rows file (bench/raw/)
        out[part] = entry
    return out


#: The flag that sets each part's number of studies.
STUDIES_FLAG = {
    "efficiency": "--studies",
    "weak": "--weak-studies",
    "weak_expected": "--weak-expected-studies",
    "verdict": "--verdict-studies",
    "boundary": "--boundary-studies",
}


def rows_command(
    rows: list[dict[str, Any]], draws: int, variant: str | None, rows_path: Path
) -> str:
    """The command that makes every row of ``rows`` (a run resumes: it runs only the
    studies missing from the rows file)."""
    count = {
        part: max(r["seed"] for r in rows if r["part"] == part) - SEED_BASE[part] + 1
        for part in SUMMARIES
        if any(r["part"] == part for r in rows)
    }
    words = ["python", "bench/label_efficiency.py"]
    if count:
        words += ["--parts", ",".join(count)]
    for part, n in count.items():
        words += [STUDIES_FLAG[part], str(n)]
    words += ["--draws", str(draws)]
    if variant:
        words += ["--variant", variant]
    if rows_path.resolve() != default_rows(variant).resolve():
        words += ["--rows", shown(rows_path)]
    return " ".join(words)


def default_rows(variant: str | None) -> Path:
    name = "label_efficiency" + (f"_{variant}" if variant else "")
    return Path(__file__).parent / "raw" / f"{name}.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=200, help="efficiency part")
    parser.add_argument("--weak-studies", type=int, default=100)
    parser.add_argument(
        "--weak-expected-studies",
        type=int,
        default=200,
        help="weak-judge studies with replicates (ACTIVE_REPLICATES, UNIFORM_ORDERS)",
    )
    parser.add_argument("--verdict-studies", type=int, default=40)
    parser.add_argument("--boundary-studies", type=int, default=200)
    parser.add_argument("--draws", type=int, default=300, help="draws (and tune) per chain")
    parser.add_argument("--parts", default="efficiency,weak,weak_expected,verdict,boundary")
    parser.add_argument("--workers", type=int, default=2, help="processes (one Fitter each)")
    parser.add_argument(
        "--until",
        help="UTC time HH:MM after which no new study starts (the ones running finish)",
    )
    parser.add_argument("--quick", action="store_true", help="2 studies per part")
    parser.add_argument(
        "--rows",
        help="per-study results, one JSON line each; studies already in it are skipped "
        "(default bench/raw/label_efficiency.jsonl, or label_efficiency_<variant>.jsonl)",
    )
    parser.add_argument(
        "--summarise-only", action="store_true", help="rebuild --out from --rows and exit"
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "label_efficiency.json")
    )
    add_variant_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.studies = args.weak_studies = args.verdict_studies = args.boundary_studies = 2
        args.weak_expected_studies = 2
    parts = args.parts.split(",")
    wanted = {
        "efficiency": args.studies,
        "weak": args.weak_studies,
        "weak_expected": args.weak_expected_studies,
        "verdict": args.verdict_studies,
        "boundary": args.boundary_studies,
    }
    if args.rows is None:
        args.rows = str(default_rows(args.variant))
    rows_path, out = Path(args.rows), Path(args.out)
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["part"], r["seed"]) for r in load_rows(rows_path)}
    # The required parts first (efficiency: 200 studies; boundary: enough to tell 5% from
    # 10%), interleaved in proportion to what is left of each so that a run cut short has
    # both; then weak and verdict, interleaved likewise.
    queues = {
        p: [i for i in range(wanted[p]) if (p, SEED_BASE[p] + i) not in done] for p in SEED_BASE
    }
    tasks: list[tuple[str, int, int]] = []
    for group in (("efficiency", "boundary"), ("weak", "verdict"), ("weak_expected",)):
        left = {p: len(queues[p]) for p in group if p in parts and queues[p]}
        total = sum(left.values())
        for _ in range(total):
            # The part furthest behind its share of the group's progress goes next.
            p = min(left, key=lambda q: (len(queues[q]) == 0, -len(queues[q]) / left[q]))
            if not queues[p]:
                break
            tasks.append((p, queues[p].pop(0), args.draws))
    deadline = None
    if args.until:
        hh, mm = (int(x) for x in args.until.split(":"))
        now = datetime.now(UTC)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if deadline <= now:  # a time already past today means tomorrow's
            deadline += timedelta(days=1)

    started = time.perf_counter()
    load_before = os.getloadavg()
    head = header("label_efficiency")  # the code the studies run, not what is there at the end
    settings = {
        "target_half_width": TARGET_HALF_WIDTH,
        "margin": MARGIN,
        "confidence": 0.95,
        "decision_rule": "sequential (calibration/bayes/decision.py): go when "
        "z = (E[Δ]+δ)/sd(Δ) >= 1.96·sqrt(max(budget/labels, 1)), no-go when z <= -that",
        "exploration_share": 0.15,
        "regions_traffic": WEIGHTS.tolist(),
        "responses_per_arm": N_PER_ARM,
        "draws_per_chain": args.draws,
        "tune_per_chain": args.draws,
        "chains": 2,
        "fitter_cores": 1,
        "workers": args.workers,
        "refit_on_collapse": REFIT_ON_COLLAPSE,
        "quick": args.quick,
    }

    # The note on how the rows were produced (written by hand, across invocations) stays;
    # so does what the last run recorded of itself when this one only summarises.
    previous = section(out, args.variant)
    note = previous["results"].get("note") if previous else None
    run_keys = ("settings", "machine")

    def write() -> None:
        rows = load_rows(rows_path)
        kept = previous["results"] if args.summarise_only and previous else {}
        draws = kept.get("settings", settings)["draws_per_chain"]
        doc = {
            "settings": settings,
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_now": [round(x, 2) for x in os.getloadavg()],
                "elapsed_seconds_this_invocation": round(time.perf_counter() - started, 1),
                "cpu_seconds_all_studies": round(sum(r.get("cpu_seconds", 0) for r in rows), 1),
            },
            "brownian_check": brownian,
            "raw": raw_record(
                shown(rows_path),
                rows_command(rows, draws, args.variant, rows_path) if rows else None,
                lines=len(rows),
                per_study="a part's studies: the lines with that part, by seed",
            ),
            **build_results(rows, wanted),
        }
        run = head
        if kept:
            doc.update((key, kept[key]) for key in run_keys if key in kept)
            run = previous["header"]
        if note:
            doc["note"] = note
        write_results(run, doc, variant=args.variant, path=out)

    if args.summarise_only:
        # Without the rows there is nothing to summarise: say how to make them.
        made_by = (previous or {}).get("results", {}).get("raw", {}).get("command")
        if not load_rows(rows_path):
            made_by = made_by or rows_command([], args.draws, args.variant, rows_path)
            raise SystemExit(
                f"no rows in {shown(rows_path)} (git does not keep bench/raw/); "
                f"regenerate them with: {made_by}"
            )
    brownian = brownian_check()
    if args.summarise_only:
        write()
        return
    print(f"{len(tasks)} studies to run, {len(done)} already in {rows_path}", flush=True)
    ctx = mp.get_context("forkserver")
    with ctx.Pool(args.workers, maxtasksperchild=None) as pool:
        pending = iter(tasks)
        running: list[Any] = []

        def submit() -> bool:
            if deadline is not None and datetime.now(UTC) >= deadline:
                return False
            task = next(pending, None)
            if task is None:
                return False
            running.append(pool.apply_async(run_study, (task,)))
            return True

        for _ in range(args.workers):
            submit()
        while running:
            time.sleep(1.0)
            for res in [r for r in running if r.ready()]:
                running.remove(res)
                try:
                    row = res.get()
                except Exception as exc:  # noqa: BLE001 - report the crash, keep going
                    print(f"study failed: {exc!r}", flush=True)
                else:
                    with rows_path.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(row["part"], row["seed"], row["seconds"], "s", flush=True)
                    write()
                submit()
    write()
    doc = section(out, args.variant)["results"]  # type: ignore[index]
    print(
        json.dumps(
            {k: v["summary"] for k, v in doc.items() if isinstance(v, dict) and "summary" in v},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
