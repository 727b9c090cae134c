"""Does the J > 2 (ordered-logit) judge model mix and cover, at 10k and at 5M responses?

Simulated studies, 3 arms × 6 regions, one dimension, known truth. The judge emits a
latent score ``s ~ N(1.6·y, 1)`` (a probit judge, so the model's ordered *logit* is
slightly misspecified, as it is with a real judge) cut into ``J`` bins at the quantiles
of the population's scores. 300 uniformly chosen human labels per arm. Counts are drawn
directly (multinomial per cell, hypergeometric split of each cell's passes between the
labelled and the judge-only responses), so 5M responses cost no more to simulate than 10k.

For each size (judge-only responses in total) and each ``J`` the script fits ``--studies``
studies with the app's :class:`~calibration.bayes.fit.Fitter` and FIT_SETTINGS
(2 chains × 2000 draws, 1000 tuning steps, ESS top-ups as ``Fitter.fit`` does by default)
and reports R-hat, bulk ESS, divergences, sampling time, the share of fits that pass the
app's diagnostics, and the coverage and width of the 95% interval of Δ (both candidates).
Per run it also reports the ESS top-ups (``top_ups``, total ``chains``,
``top_up_seconds``, included in ``sample_seconds``) and ``max_rhat_first``,
``min_ess_bulk_first``, ``divergences_first``, the diagnostics of the first run alone:
the first run does not depend on the top-up, so ``ok`` with
``top_ups == 0`` is what the fit was without top-ups (``ok_fraction_without_top_up``).
``--ess-top-ups 0`` runs without them. The JSON is rewritten after every (size, J) block,
so a run stopped early keeps what it finished.

Run (nice: it is CPU-heavy)::

    nice -n 10 .venv/bin/python bench/bayes_ordinal.py --studies 20
    nice -n 10 .venv/bin/python bench/bayes_ordinal.py --quick      # 3 studies
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bayes_common import machine_info, write_result  # noqa: E402

from calibration.bayes.data import CellCounts  # noqa: E402
from calibration.bayes.decision import delta_draws  # noqa: E402
from calibration.bayes.fit import Fitter, adaptation_for  # noqa: E402

WEIGHTS = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
LABELS = 300
SEPARATION = 1.6
FIT: dict[str, Any] = {"draws": 2000, "tune": 1000, "chains": 2, "target_accept": 0.95}


def simulate(total: int, n_bins: int, seed: int) -> tuple[CellCounts, np.ndarray]:
    """Counts of one simulated study and its true Δ per arm (Δ[0] = 0)."""
    rng = np.random.default_rng(seed)
    mu0 = rng.normal(0.8, 0.5)
    mu = np.concatenate([[mu0], mu0 + rng.normal(0, 0.25, size=2)])
    theta = 1 / (1 + np.exp(-(mu[:, None] + rng.normal(0, 0.4, size=(3, WEIGHTS.size)))))
    m, r = theta.shape
    sizes = np.stack([rng.multinomial(total // m, WEIGHTS) for _ in range(m)])
    # Cut points at the quantiles of the population's score mixture.
    pass_share = float((sizes * theta).sum() / sizes.sum())
    grid = np.linspace(-6.0, 6.0 + SEPARATION, 40_001)
    mix_cdf = (1 - pass_share) * stats.norm.cdf(grid) + pass_share * stats.norm.cdf(
        grid - SEPARATION
    )
    cuts = np.interp(np.arange(1, n_bins) / n_bins, mix_cdf, grid)
    edges = np.concatenate([[0.0], stats.norm.cdf(cuts), [1.0]])
    pi0 = np.diff(edges)
    pi1 = np.diff(np.concatenate([[0.0], stats.norm.cdf(cuts - SEPARATION), [1.0]]))
    judge_only = np.zeros((m, r, n_bins), dtype=np.int64)
    labelled = np.zeros((m, r, 2, n_bins), dtype=np.int64)
    for a in range(m):
        per_region = rng.multivariate_hypergeometric(sizes[a], LABELS)
        for g in range(r):
            n, k = int(sizes[a, g]), int(per_region[g])
            passes = rng.binomial(n, theta[a, g])
            k_pass = rng.hypergeometric(passes, n - passes, k) if k else 0
            labelled[a, g, 1] = rng.multinomial(k_pass, pi1)
            labelled[a, g, 0] = rng.multinomial(k - k_pass, pi0)
            judge_only[a, g] = rng.multinomial(passes - k_pass, pi1) + rng.multinomial(
                n - passes - (k - k_pass), pi0
            )
    counts = CellCounts(
        arms=("a0", "a1", "a2"),
        regions=tuple(f"r{i}" for i in range(r)),
        n_bins=n_bins,
        judge_only=judge_only,
        labelled=labelled,
    )
    truth = theta @ WEIGHTS
    return counts, truth - truth[0]


def fit_one(fitter: Fitter, counts: CellCounts, delta: np.ndarray, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    fit = fitter.fit(counts, seed=seed, **FIT)
    secs = time.perf_counter() - t0
    cover, width = [], []
    for c in (1, 2):
        lo, hi = np.quantile(delta_draws(fit.theta, WEIGHTS, c), [0.025, 0.975])
        cover.append(bool(lo <= delta[c] <= hi))
        width.append(float(hi - lo))
    d = fit.diagnostics
    return {
        "seconds": secs,
        "compile_seconds": d["compile_seconds"],
        "sample_seconds": d["sample_seconds"],
        "max_rhat": d["max_rhat"],
        "min_ess_bulk": d["min_ess_bulk"],
        "min_ess_tail": d["min_ess_tail"],
        "divergences": d["divergences"],
        "ok": fit.ok,
        "top_ups": d["top_ups"],
        "chains": d["chains"],
        "max_rhat_first": d["max_rhat_first"],
        "min_ess_bulk_first": d["min_ess_bulk_first"],
        "divergences_first": d["divergences_first"],
        "top_up_seconds": d["top_up_seconds"],
        "covered": cover,
        "width": width,
    }


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="3 studies per block")
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 5_000_000])
    ap.add_argument("--bins", type=int, nargs="*", default=[3, 5])
    ap.add_argument("--out", default="bayes_ordinal")
    ap.add_argument("--ess-top-ups", type=int, default=2, help="Fitter.fit's ess_top_ups (0: none)")
    args = ap.parse_args()
    FIT["ess_top_ups"] = args.ess_top_ups
    n_studies = 3 if args.quick else args.studies
    info = machine_info()
    fitter = Fitter()
    out: dict[str, Any] = {}
    for n_bins in args.bins:
        for total in args.sizes:
            runs = []
            cpu0, wall0 = _cpu(), time.perf_counter()
            for i in range(n_studies):
                counts, delta = simulate(total, n_bins, seed=500 + i)
                runs.append(fit_one(fitter, counts, delta, seed=i))
                keys = [*list(runs[-1])[:9], "top_ups", "chains", "max_rhat_first"]
                keys += ["min_ess_bulk_first"]
                print(total, n_bins, {k: runs[-1][k] for k in keys}, flush=True)
            cov = [c for r in runs for c in r["covered"]]
            warm = [r["sample_seconds"] for r in runs if r["compile_seconds"] == 0.0]
            out[f"{total}_J{n_bins}"] = {
                "total_responses": total,
                "n_bins": n_bins,
                "adaptation": adaptation_for(counts),
                "studies": n_studies,
                "coverage": float(np.mean(cov)),
                "intervals": len(cov),
                "mean_width": float(np.mean([w for r in runs for w in r["width"]])),
                "max_rhat_max": float(max(r["max_rhat"] for r in runs)),
                "min_ess_bulk_min": float(min(r["min_ess_bulk"] for r in runs)),
                "min_ess_bulk_median": float(np.median([r["min_ess_bulk"] for r in runs])),
                "divergences_total": float(sum(r["divergences"] for r in runs)),
                "divergences_max": float(max(r["divergences"] for r in runs)),
                "ok_fraction": float(np.mean([r["ok"] for r in runs])),
                "ok_fraction_without_top_up": float(
                    np.mean([r["ok"] and r["top_ups"] == 0 for r in runs])
                ),
                "topped_up": int(sum(r["top_ups"] > 0 for r in runs)),
                "top_ups_total": int(sum(r["top_ups"] for r in runs)),
                "chains_max": int(max(r["chains"] for r in runs)),
                "max_rhat_first_max": float(max(r["max_rhat_first"] for r in runs)),
                "min_ess_bulk_first_median": float(
                    np.median([r["min_ess_bulk_first"] for r in runs])
                ),
                "sample_seconds_median": float(np.median(warm)) if warm else None,
                "sample_seconds_max": float(max(warm)) if warm else None,
                "first_run_seconds_median": float(
                    np.median(
                        [
                            r["sample_seconds"] - r["top_up_seconds"]
                            for r in runs
                            if r["compile_seconds"] == 0.0
                        ]
                    )
                )
                if warm
                else None,
                "cpu_seconds": _cpu() - cpu0,
                "wall_seconds": time.perf_counter() - wall0,
                "loadavg_1min_at_end": round(__import__("os").getloadavg()[0], 2),
                "runs": runs,
            }
            write_result(
                args.out,
                {
                    "command": "python " + " ".join(sys.argv),
                    "parameters": {
                        "arms": 3,
                        "regions": WEIGHTS.size,
                        "labels_per_arm": LABELS,
                        "judge": f"latent score N({SEPARATION}·y, 1), population-quantile bins",
                        "bins": args.bins,
                        "sizes": args.sizes,
                        "fit": FIT,
                    },
                    "machine": info,
                    "results": out,
                },
            )


if __name__ == "__main__":
    main()
