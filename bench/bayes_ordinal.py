"""Does the J > 2 (ordered-logit, not reparameterised) model mix and cover?

Simulated studies, 3 arms × 6 regions, one dimension. The judge emits a latent score
``s ~ N(1.6·y, 1)`` (a probit-like judge, so the ordered-logit confusion is slightly
misspecified, as real judges are) cut into ``J = 4`` quantile bins with
:func:`calibration.bayes.data.quantile_cuts`. 300 uniform labels per arm. For each size
(judge-only responses in total) we fit ``--studies`` studies and report R-hat, ESS,
divergences, sampling time and the coverage/width of the 95% interval of Δ; and, on the
same data collapsed to J = 2 at the middle cut, the binary (reparameterised) model.

Run: ``/work/main/.venv/bin/python bench/bayes_ordinal.py`` (``--quick``: 3 studies).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bayes_common import machine_info, write_result  # noqa: E402

from calibration.bayes.data import bin_scores, counts_from_arrays, quantile_cuts  # noqa: E402
from calibration.bayes.decision import delta_draws  # noqa: E402
from calibration.bayes.fit import Fitter  # noqa: E402

WEIGHTS = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
J = 4
LABELS = 300


def study(total: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    mu0 = rng.normal(0.8, 0.5)
    mu = np.concatenate([[mu0], mu0 + rng.normal(0, 0.25, size=2)])
    theta = 1 / (1 + np.exp(-(mu[:, None] + rng.normal(0, 0.4, size=(3, WEIGHTS.size)))))
    m, r = theta.shape
    sizes = np.stack([rng.multinomial(total // m, WEIGHTS) for _ in range(m)])
    cell = np.repeat(np.arange(m * r), sizes.ravel())
    y = (rng.random(cell.size) < theta.ravel()[cell]).astype(np.int64)
    score = rng.normal(1.6 * y, 1.0)
    arm = cell // r
    human = np.full(cell.size, -1, dtype=np.int64)
    for a in range(m):
        idx = np.flatnonzero(arm == a)
        pick = rng.choice(idx, size=LABELS, replace=False)
        human[pick] = y[pick]
    truth = theta @ WEIGHTS
    return {
        "arm": arm,
        "region": cell % r,
        "score": score,
        "human": human,
        "delta": truth - truth[0],
    }


def fit_one(fitter: Fitter, s: dict[str, Any], n_bins: int, seed: int) -> dict[str, Any]:
    cuts = quantile_cuts(s["score"], n_bins)
    counts = counts_from_arrays(
        arms=("a0", "a1", "a2"),
        regions=tuple(f"r{i}" for i in range(WEIGHTS.size)),
        n_bins=cuts.size + 1,
        arm_idx=s["arm"],
        region_idx=s["region"],
        judge_bin=bin_scores(s["score"], cuts),
        human=s["human"],
    )
    t0 = time.perf_counter()
    fit = fitter.fit(counts, seed=seed)
    secs = time.perf_counter() - t0
    cover, width = [], []
    for c in (1, 2):
        lo, hi = np.quantile(delta_draws(fit.theta, WEIGHTS, c), [0.025, 0.975])
        cover.append(bool(lo <= s["delta"][c] <= hi))
        width.append(float(hi - lo))
    d = fit.diagnostics
    return {
        "n_bins": counts.n_bins,
        "seconds": secs,
        "compile_seconds": d["compile_seconds"],
        "sample_seconds": d["sample_seconds"],
        "max_rhat": d["max_rhat"],
        "min_ess_bulk": d["min_ess_bulk"],
        "divergences": d["divergences"],
        "ok": fit.ok,
        "covered": cover,
        "width": width,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 1_000_000])
    args = ap.parse_args()
    n_studies = 3 if args.quick else args.studies
    info = machine_info()
    fitter = Fitter()
    out: dict[str, Any] = {}
    for total in args.sizes:
        for n_bins in (J, 2):
            runs = []
            for i in range(n_studies):
                s = study(total, seed=500 + i)
                runs.append(fit_one(fitter, s, n_bins, seed=i))
                print(total, n_bins, runs[-1], flush=True)
            cov = [c for r in runs for c in r["covered"]]
            out[f"{total}_J{n_bins}"] = {
                "total_responses": total,
                "n_bins": n_bins,
                "studies": n_studies,
                "coverage": float(np.mean(cov)),
                "mean_width": float(np.mean([w for r in runs for w in r["width"]])),
                "max_rhat_max": float(max(r["max_rhat"] for r in runs)),
                "min_ess_bulk_min": float(min(r["min_ess_bulk"] for r in runs)),
                "divergences_total": float(sum(r["divergences"] for r in runs)),
                "ok_fraction": float(np.mean([r["ok"] for r in runs])),
                "sample_seconds_median": float(np.median([r["sample_seconds"] for r in runs])),
                "runs": runs,
            }
    write_result(
        "bayes_ordinal",
        {
            "command": "python " + " ".join(sys.argv),
            "parameters": {
                "arms": 3,
                "regions": WEIGHTS.size,
                "labels_per_arm": LABELS,
                "judge": "latent score N(1.6·y, 1), quantile bins",
                "J": J,
                "sizes": args.sizes,
                "fit": {"draws": 2000, "tune": 1000, "chains": 2, "target_accept": 0.95},
            },
            "machine": info,
            "results": out,
        },
    )


if __name__ == "__main__":
    main()
