r"""Honest verdicts where the model's assumptions are false: simulated studies through the loop.

Every study goes through the project's own loop (:func:`calibration.replay.run_loop`: the
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

Usage::

    python bench/adversarial.py --studies 60 --out bench/results/adversarial.json
    python bench/adversarial.py --scenarios flatter_50 identical --studies 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibration.bayes.data import bin_scores, quantile_cuts  # noqa: E402
from calibration.replay import Population, all_labels_delta, run_loop  # noqa: E402

MARGIN = 0.02


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
    extra: dict[str, Any] = field(default_factory=dict)


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
    ]
}


def _exact(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    y = np.zeros(n, dtype=np.int64)
    y[rng.permutation(n)[: int(round(rate * n))]] = 1
    return y


def _judge_of(sc: Scenario, m: int, r: int) -> tuple[float, float]:
    spec = sc.judge[m]
    return tuple(spec[r]) if isinstance(spec[0], tuple | list) else tuple(spec)  # type: ignore[return-value]


def simulate(sc: Scenario, seed: int) -> Population:
    """One study of a scenario (module docstring)."""
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


def run_study(sc: Scenario, seed: int, fitter: Any, *, draws: int, tune: int) -> dict[str, Any]:
    pop = simulate(sc, seed)
    truth = all_labels_delta(pop)  # (C, D): every response's label is known here
    t0 = time.perf_counter()
    result = run_loop(
        pop,
        policy=sc.policy,
        budget=sc.budget,
        batch=sc.batch,
        seed=seed,
        fitter=fitter,
        draws=draws,
        tune=tune,
        with_ppi=False,
        # Run to the budget: the verdict is the first one the sequential rule settles (what
        # the app would show, and stop on), and coverage is read at a fixed look, the
        # budget, rather than at a stopping time chosen by the data.
        stop_when_settled=False,
    )
    rows = []
    went: dict[tuple[str, str], int] = {}
    settled: dict[tuple[str, str], str] = {}
    for rec in result.batches:
        for row in rec.deltas:
            key = (row["candidate"], row["dimension"])
            if row["verdict"] != "undecided" and key not in settled:
                settled[key] = row["verdict"]
                if row["verdict"] == "go":
                    went[key] = rec.labels
    last = result.batches[-1]
    fits_ok = [all(row["fit_ok"] for row in b.deltas) for b in result.batches]
    for row in last.deltas:
        c = pop.arms.index(row["candidate"])
        d = pop.dimensions.index(row["dimension"])
        t = float(truth[c - 1, d])
        key = (row["candidate"], row["dimension"])
        rows.append(
            {
                "candidate": row["candidate"],
                "dimension": row["dimension"],
                "truth": round(t, 5),
                "mean": round(row["mean"], 5),
                "lower": round(row["lower"], 5),
                "upper": round(row["upper"], 5),
                "verdict": settled.get(key, "undecided"),
                "verdict_at_budget": row["verdict"],
                "ever_go": key in went,
                "go_at": went.get(key),
                "covers": bool(row["lower"] <= t <= row["upper"]),
                "judge": row.get("judge"),
            }
        )
    return {
        "seed": seed,
        "labels": result.labels,
        "stopped": result.stopped,
        "seconds": round(time.perf_counter() - t0, 2),
        "fits": len(result.batches),
        "fits_ok": int(sum(fits_ok)),
        "rows": rows,
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

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    files = sorted((root / "calibration" / "bayes").glob("*.py"))
    for path in [*files, root / "calibration" / "replay.py", Path(__file__).resolve()]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from bayes_common import git_head

    from calibration.bayes.fit import Fitter
    from calibration.bayes.posterior import MODEL_VERSION

    commit = git_head()
    code = _code_digest()
    fitter = Fitter()
    out: dict[str, Any] = {}
    if args.out and args.out.exists():
        out = json.loads(args.out.read_text())
    out.setdefault("scenarios", {})
    out.update(
        {
            "command": "python bench/adversarial.py " + " ".join(argv or sys.argv[1:]),
            "commit": commit,
            "code_digest": code,
            "model_version": MODEL_VERSION,
            "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()[0]},
            "settings": {"draws": args.draws, "tune": args.tune, "chains": 2, "margin": MARGIN},
        }
    )
    for name in args.scenarios:
        sc = SCENARIOS[name]
        runs = []
        t0 = time.time()
        for i in range(args.studies):
            runs.append(
                run_study(sc, args.seed + 1000 * i, fitter, draws=args.draws, tune=args.tune)
            )
        summary = summarise(sc, runs)
        summary["seconds"] = round(time.time() - t0, 1)
        summary["commit"] = commit
        summary["code_digest"] = code
        print(json.dumps(summary), flush=True)
        out["scenarios"][name] = {"summary": summary, "runs": runs}
        if args.out:
            args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
