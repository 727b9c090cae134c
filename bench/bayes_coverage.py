"""Coverage and width of the 95% interval for Δ on simulated studies, vs PPI++ and humans only.

Each study: 3 arms (arm 0 the incumbent) × 6 regions with fixed traffic shares, one
dimension, ``--n-per-arm`` responses per arm (split over regions by traffic share), a binary
judge, and ``--labels`` human labels per arm chosen uniformly at random.
True prevalences: ``logit θ[m, r] = μ_m + u_r + v_{m,r}`` with ``μ_0 ~ N(0.8, 0.5²)``,
``μ_c = μ_0 + N(0, 0.25²)``, shared region effects ``u_r ~ N(0, 0.4²)`` and arm-specific
ones ``v ~ N(0, 0.15²)`` (so the model's independent region effects are a little
misspecified, on purpose). Truth ``Δ_c = Σ_r w_r (θ[c, r] − θ[0, r])``.

Methods on the same data and labels:

* **bayes** — :class:`calibration.bayes.fit.Fitter` (one Fitter, compiled once), 95%
  equal-tailed posterior interval of Δ.
* **ppi++** — ``ppi_py.ppi_mean_ci(Y, Yhat, Yhat_unlabeled, alpha=0.05)`` per arm on all
  the arm's responses (labels uniform within the arm, and each arm's responses are spread
  over regions in traffic proportions, so the arm mean estimates the traffic-weighted pass
  rate); Δ = difference of the two arms' estimates, se = √(se_c² + se_inc²), normal 95%.
* **human** — Wald interval of the difference of the labelled pass rates.

Label efficiency at equal width: an interval's width scales as 1/√n, so the labels a
method needs for the Bayesian model's width are ≈ (w_bayes / w_method)² × its own labels.
``bench/bayes_ppi_equal_width.py`` checks that conversion against PPI++ run with more
labels on the same studies (no MCMC): the conversion says PPI++ needs
300 × (0.0994/0.0918)² ≈ 352 labels per arm for the model's width, and run with more labels
it needed 353 (14.8% and 14.9% fewer labels for the model).

Files: the summaries go to ``bench/results/bayes_coverage.json`` (``--out``); every study
(its truth, the three methods' intervals, the fit's diagnostics) is one line of
``bench/raw/bayes_coverage/<scenario>.jsonl`` (``bench/raw/bayes_coverage_<variant>/`` for a
variant; ``--raw DIR`` for another root; git does not keep ``bench/raw/``), rewritten as
studies complete. The results' ``raw`` names those files and the command that wrote them;
``bench/bayes_ppi_equal_width.py`` reads the ``strong_judge`` lines.

Run: ``/work/main/.venv/bin/python bench/bayes_coverage.py`` (``--quick`` for 20 studies).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bayes_common import machine_info, ppi_diff, wald_diff  # noqa: E402
from results_io import (  # noqa: E402
    RAW,
    add_variant_argument,
    header,
    path_of,
    raw_path,
    raw_record,
    shown,
    write_lines,
    write_results,
)

from calibration.bayes.decision import delta_draws, naive_judge_delta  # noqa: E402
from calibration.bayes.fit import Fitter  # noqa: E402
from calibration.bayes.simulate import reveal_uniform, simulate_study  # noqa: E402

WEIGHTS = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
SCENARIOS: dict[str, dict[str, Any]] = {
    "strong_judge": {"se": [0.90, 0.90, 0.90], "sp": [0.85, 0.85, 0.85]},
    "weak_judge": {"se": [0.65, 0.65, 0.65], "sp": [0.60, 0.60, 0.60]},
    # The judge is harsher on candidate 1 (it treats that model's style differently).
    "judge_differs": {"se": [0.90, 0.80, 0.90], "sp": [0.85, 0.75, 0.85]},
}


def study_lines(raw: Path, variant: str | None, scenario: str) -> Path:
    """The raw file of a scenario's studies, one line each (module docstring)."""
    return raw_path(raw, "bayes_coverage" + (f"_{variant}" if variant else ""), scenario)


def true_theta(rng: np.random.Generator) -> np.ndarray:
    mu0 = rng.normal(0.8, 0.5)
    mu = np.concatenate([[mu0], mu0 + rng.normal(0, 0.25, size=2)])
    u = rng.normal(0, 0.4, size=WEIGHTS.size)
    v = rng.normal(0, 0.15, size=(3, WEIGHTS.size))
    return 1.0 / (1.0 + np.exp(-(mu[:, None] + u[None, :] + v)))


def one_study(fitter: Fitter, scenario: dict[str, Any], i: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(10_000 + i)
    theta = true_theta(rng)
    study = simulate_study(
        theta=theta,
        weights=WEIGHTS,
        sensitivity=scenario["se"],
        specificity=scenario["sp"],
        n_per_arm=args.n_per_arm,
        seed=20_000 + i,
    )
    human = reveal_uniform(study, args.labels, seed=30_000 + i)
    counts = study.counts(human)
    t0 = time.perf_counter()
    fit = fitter.fit(counts, seed=40_000 + i, draws=args.draws, tune=args.tune)
    fit_s = time.perf_counter() - t0
    truth = study.true_delta()
    out: dict[str, Any] = {
        "study": i,
        "theta": theta.round(4).tolist(),
        "diagnostics": fit.diagnostics,
        "ok": fit.ok,
        "fit_seconds": fit_s,
        "candidates": [],
    }
    lab = human >= 0

    def arm_arrays(a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        in_arm = study.arm_idx == a
        return (
            human[in_arm & lab],
            study.judge_bin[in_arm & lab],
            study.judge_bin[in_arm & ~lab],
        )

    for c in (1, 2):
        d = delta_draws(fit.theta, WEIGHTS, c)
        lo, hi = np.quantile(d, [0.025, 0.975])
        p_est, p_lo, p_hi = ppi_diff(arm_arrays(c), arm_arrays(0))
        h_est, h_lo, h_hi = wald_diff(
            human[(study.arm_idx == c) & lab], human[(study.arm_idx == 0) & lab]
        )
        out["candidates"].append(
            {
                "candidate": c,
                "truth": float(truth[c]),
                "bayes": [float(d.mean()), float(lo), float(hi)],
                "ppi": [p_est, p_lo, p_hi],
                "human": [h_est, h_lo, h_hi],
                "naive_judge": naive_judge_delta(counts, WEIGHTS, c),
            }
        )
    return out


def summarise(studies: list[dict], labels: int) -> dict[str, Any]:
    res: dict[str, Any] = {"n_studies": len(studies), "n_intervals": 2 * len(studies)}
    rows = [c for s in studies for c in s["candidates"]]
    truth = np.array([r["truth"] for r in rows])
    widths = {}
    for method in ("bayes", "ppi", "human"):
        est = np.array([r[method] for r in rows])
        cover = (est[:, 1] <= truth) & (truth <= est[:, 2])
        cov = float(cover.mean())
        width = est[:, 2] - est[:, 1]
        widths[method] = float(width.mean())
        res[method] = {
            "coverage": cov,
            "coverage_se": float(np.sqrt(cov * (1 - cov) / cover.size)),
            "mean_width": float(width.mean()),
            "median_width": float(np.median(width)),
            "rmse": float(np.sqrt(np.mean((est[:, 0] - truth) ** 2))),
            "bias": float(np.mean(est[:, 0] - truth)),
        }
    naive = np.array([r["naive_judge"] for r in rows])
    res["naive_judge"] = {
        "rmse": float(np.sqrt(np.mean((naive - truth) ** 2))),
        "bias": float(np.mean(naive - truth)),
    }
    # Labels each method would need for the Bayesian width, relative to its own labels.
    res["labels_for_bayes_width"] = {
        "bayes_over_human": (widths["bayes"] / widths["human"]) ** 2,
        "bayes_over_ppi": (widths["bayes"] / widths["ppi"]) ** 2,
        "labels_per_arm": labels,
    }
    diag = [s["diagnostics"] for s in studies]
    res["fits"] = {
        "ok_fraction": float(np.mean([s["ok"] for s in studies])),
        "max_rhat_max": float(max(d["max_rhat"] for d in diag)),
        "max_rhat_median": float(np.median([d["max_rhat"] for d in diag])),
        "rhat_le_1_01_fraction": float(np.mean([d["max_rhat"] <= 1.01 for d in diag])),
        "min_ess_bulk_min": float(min(d["min_ess_bulk"] for d in diag)),
        "min_ess_tail_min": float(min(d["min_ess_tail"] for d in diag)),
        "divergences_total": float(sum(d["divergences"] for d in diag)),
        "studies_with_divergences": int(sum(d["divergences"] > 0 for d in diag)),
        "sample_seconds_median": float(np.median([d["sample_seconds"] for d in diag])),
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="20 studies per scenario")
    ap.add_argument("--studies", type=int, default=200, help="studies for strong_judge")
    ap.add_argument("--other-studies", type=int, default=100, help="studies per other scenario")
    ap.add_argument("--n-per-arm", type=int, default=20_000)
    ap.add_argument("--labels", type=int, default=300, help="human labels per arm")
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--draws", type=int, default=2000, help="post-warm-up draws per chain")
    ap.add_argument("--tune", type=int, default=1000, help="warm-up iterations per chain")
    ap.add_argument(
        "--raw",
        type=Path,
        default=RAW,
        help="root of the per-study lines, <raw>/bayes_coverage/ (default bench/raw)",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="default bench/results/bayes_coverage.json"
    )
    add_variant_argument(ap)
    args = ap.parse_args()
    if args.quick:
        args.studies = args.other_studies = 20

    args.header = header("bayes_coverage")
    info = machine_info()
    fitter = Fitter()
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    per_study: dict[str, list[dict]] = {}
    for name in args.scenarios:
        n = args.studies if name == "strong_judge" else args.other_studies
        studies = []
        for i in range(n):
            studies.append(one_study(fitter, SCENARIOS[name], i, args))
            if (i + 1) % 20 == 0 or i + 1 == n:
                print(f"{name}: {i + 1}/{n} studies", flush=True)
                # Rewrite the result as studies complete, so a cut-short run still reports.
                results[name] = {"judge": SCENARIOS[name], **summarise(studies, args.labels)}
                per_study[name] = studies
                write_lines(study_lines(args.raw, args.variant, name), studies)
                _write(args, info, results, per_study, time.perf_counter() - t_start)
        print(name, {k: results[name][k] for k in ("bayes", "ppi", "human")}, flush=True)
    print("wrote", _write(args, info, results, per_study, time.perf_counter() - t_start))


def _write(
    args: argparse.Namespace,
    info: dict[str, Any],
    results: dict[str, Any],
    per_study: dict[str, list[dict]],
    secs: float,
) -> Path:
    return write_results(
        args.header,
        {
            "parameters": {
                "arms": 3,
                "regions": WEIGHTS.size,
                "weights": WEIGHTS.tolist(),
                "n_per_arm": args.n_per_arm,
                "labels_per_arm": args.labels,
                "label_selection": "uniform within arm",
                "fit": {"draws": args.draws, "tune": args.tune, "chains": 2, "target_accept": 0.95},
                "truth": "logit θ = μ_m + u_r + v_mr; μ0~N(0.8,0.5²), μc=μ0+N(0,0.25²), "
                "u~N(0,0.4²), v~N(0,0.15²)",
                "ppi": "ppi_mean_ci(alpha=0.05) per arm, difference with se=hypot(se_c, se_0)",
                "human": "Wald interval of the difference of labelled pass rates",
            },
            "machine": info,
            "compile_seconds": max(
                s["diagnostics"]["compile_seconds"] for v in per_study.values() for s in v
            ),
            "total_seconds": secs,
            "results": results,
            # One line per study, in study order; bench/bayes_ppi_equal_width.py reads them.
            "raw": raw_record(
                {name: shown(study_lines(args.raw, args.variant, name)) for name in per_study},
                args.header["command"],
            ),
        },
        variant=args.variant,
        path=args.out or path_of("bayes_coverage"),
    )


if __name__ == "__main__":
    main()
